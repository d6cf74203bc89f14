//! The per-node memory ledger (DESIGN.md, "Memory model", Accounting): at every moment
//! `usable = free + hypervisor + guest + pools`, per node, exactly.

use core::fmt;

use super::block::{Bytes, Usage};

/// Where one node's usable RAM is, in bytes. The columns always add up to `usable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeLedger {
    /// The node (dense index).
    pub node: usize,
    /// Usable RAM the node was given, after trimming to whole pages.
    pub usable: u64,
    /// Free, ready to allocate.
    pub free: u64,
    /// Taken with [`Usage::Hypervisor`].
    pub hypervisor: u64,
    /// Taken with [`Usage::Guest`].
    pub guest: u64,
    /// Taken with [`Usage::Pool`].
    pub pools: u64,
}

impl NodeLedger {
    /// A ledger for a node whose `usable` bytes are all free.
    pub(crate) fn new(node: usize, usable: u64) -> Self {
        NodeLedger {
            node,
            usable,
            free: usable,
            ..Default::default()
        }
    }

    /// The bytes taken for `usage`.
    pub fn used_by(&self, usage: Usage) -> u64 {
        match usage {
            Usage::Hypervisor => self.hypervisor,
            Usage::Guest => self.guest,
            Usage::Pool => self.pools,
        }
    }

    /// Whether the columns add up to `usable` (they always should; tests check it).
    pub fn is_balanced(&self) -> bool {
        [self.free, self.hypervisor, self.guest, self.pools]
            .iter()
            .try_fold(0u64, |sum, &v| sum.checked_add(v))
            == Some(self.usable)
    }

    /// Moves `bytes` from the free column to `usage`'s.
    pub(crate) fn take(&mut self, bytes: u64, usage: Usage) {
        self.free -= bytes;
        *self.column(usage) += bytes;
    }

    /// Moves `bytes` from `usage`'s column back to the free one.
    pub(crate) fn give_back(&mut self, bytes: u64, usage: Usage) {
        *self.column(usage) -= bytes;
        self.free += bytes;
    }

    fn column(&mut self, usage: Usage) -> &mut u64 {
        match usage {
            Usage::Hypervisor => &mut self.hypervisor,
            Usage::Guest => &mut self.guest,
            Usage::Pool => &mut self.pools,
        }
    }
}

impl fmt::Display for NodeLedger {
    /// One line: "node 0: usable 2 GiB = free 1.5 GiB + hypervisor 16 MiB + guest 0 bytes + ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {}: usable {} = free {} + hypervisor {} + guest {} + pools {}",
            self.node,
            Bytes(self.usable),
            Bytes(self.free),
            Bytes(self.hypervisor),
            Bytes(self.guest),
            Bytes(self.pools)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn take_and_give_back_keep_the_balance() {
        let mut ledger = NodeLedger::new(1, 1 << 30);
        ledger.take(4096, Usage::Pool);
        ledger.take(2 << 20, Usage::Guest);
        assert!(ledger.is_balanced());
        assert_eq!(ledger.used_by(Usage::Pool), 4096);
        ledger.give_back(4096, Usage::Pool);
        assert_eq!(ledger.pools, 0);
        assert!(ledger.is_balanced());
        assert_eq!(
            ledger.to_string(),
            "node 1: usable 1 GiB = free 1022 MiB + hypervisor 0 bytes + guest 2 MiB + pools 0 bytes"
        );
    }
}
