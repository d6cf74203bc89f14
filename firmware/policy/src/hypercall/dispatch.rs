//! Answering a decoded [`Call`] from what the partitions hold: the calls that read state
//! (partition ID, the partition list, balances, memory per vnode and node) are answered here
//! in full; the calls that move memory are handed to the edge ([`Partitions::move_memory`]),
//! which plans them with the [`Bank`](super::Bank), changes the SLAT and commits.

use super::abi::{Call, NodeFilter, PartitionId, Status, LIST_ENTRY_BYTES};

/// What the calls need to know about the partitions, from the caller's point of view.
pub trait Partitions {
    /// The caller's index (its partition ID is the index plus one).
    fn caller(&self) -> usize;
    /// How many partitions exist (indices `0..count`), stopped ones included.
    fn count(&self) -> usize;
    /// Whether partition `index` is running (a stopped one is no target).
    fn is_live(&self, index: usize) -> bool;
    /// The parent of partition `index`, from the layout.
    fn parent_of(&self, index: usize) -> Option<usize>;
    /// Pages in partition `index`'s pool (its balance) on `node`, and of those, pages its
    /// parent deposited.
    fn balance(&self, index: usize, node: NodeFilter) -> (u64, u64);
    /// Guest RAM pages of partition `index`'s `vnode` on `node`, and the vnode's pages given
    /// up by deposits; `None` if it has no such vnode.
    fn memory(&self, index: usize, vnode: usize, node: NodeFilter) -> Option<(u64, u64)>;
    /// Copies `bytes` into the caller's RAM at `gpa`; false if any byte is outside it.
    fn write_guest(&self, gpa: u64, bytes: &[u8]) -> bool;
    /// Carries out a deposit or withdrawal: the status and the pages moved.
    fn move_memory(&self, call: &Call) -> (Status, u64);
    /// Sets (or with `None` clears) the memory target of partition `index`'s `vnode`, asked
    /// by its parent: the target set, within bounds. Refused with invalid-parameter when the
    /// partition has no Dynamic Memory or no such vnode.
    fn set_memory_target(
        &self,
        index: usize,
        vnode: usize,
        bytes: Option<u64>,
    ) -> Result<u64, Status>;
}

/// What the caller gets back: `RAX` = status, then `RBX`, `RCX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub rbx: u64,
    pub rcx: u64,
}

impl Reply {
    /// Success with results `rbx`, `rcx`.
    pub fn ok(rbx: u64, rcx: u64) -> Reply {
        Reply {
            status: Status::Success,
            rbx,
            rcx,
        }
    }

    /// A refusal: `status`, no results.
    pub fn error(status: Status) -> Reply {
        Reply {
            status,
            rbx: 0,
            rcx: 0,
        }
    }
}

/// Answers `call` made by `partitions.caller()`.
pub fn handle(call: &Call, partitions: &impl Partitions) -> Reply {
    let caller = partitions.caller();
    let id = |index: usize| PartitionId::of_index(index);
    match *call {
        Call::GetPartitionId => Reply::ok(id(caller), 0),
        Call::ListPartitions { buffer, capacity } => {
            let count = partitions.count() as u64;
            let written = count.min(capacity);
            for index in 0..written as usize {
                let parent = partitions.parent_of(index).map_or(0, id);
                let mut entry = [0u8; LIST_ENTRY_BYTES as usize];
                entry[..8].copy_from_slice(&id(index).to_le_bytes());
                entry[8..].copy_from_slice(&parent.to_le_bytes());
                let Some(at) = (index as u64)
                    .checked_mul(LIST_ENTRY_BYTES)
                    .and_then(|offset| buffer.checked_add(offset))
                else {
                    return Reply::error(Status::InvalidParameter);
                };
                if !partitions.write_guest(at, &entry) {
                    return Reply::error(Status::InvalidParameter);
                }
            }
            Reply::ok(count, written)
        }
        Call::GetBalance { target, node } => match readable(partitions, target) {
            Ok(index) => {
                let (pages, deposited) = partitions.balance(index, node);
                Reply::ok(pages, deposited)
            }
            Err(status) => Reply::error(status),
        },
        Call::GetMemoryInfo {
            target,
            vnode,
            node,
        } => match readable(partitions, target) {
            Ok(index) => match partitions.memory(index, vnode, node) {
                Some((pages, given_up)) => Reply::ok(pages, given_up),
                None => Reply::error(Status::InvalidParameter),
            },
            Err(status) => Reply::error(status),
        },
        Call::SetMemoryTarget {
            target,
            vnode,
            bytes,
        } => {
            let index = target.resolve(caller);
            if index >= partitions.count() || !partitions.is_live(index) {
                return Reply::error(Status::InvalidPartitionId);
            }
            if partitions.parent_of(index) != Some(caller) {
                return Reply::error(Status::AccessDenied);
            }
            match partitions.set_memory_target(index, vnode, bytes) {
                Ok(set) => Reply::ok(set, 0),
                Err(status) => Reply::error(status),
            }
        }
        Call::DepositMemory { .. } | Call::WithdrawMemory { .. } => {
            let (status, pages) = partitions.move_memory(call);
            Reply {
                status,
                rbx: pages,
                rcx: 0,
            }
        }
    }
}

/// The target of a reading call: the caller itself, or a running child of it.
fn readable(partitions: &impl Partitions, target: PartitionId) -> Result<usize, Status> {
    let caller = partitions.caller();
    let index = target.resolve(caller);
    if index >= partitions.count() || !partitions.is_live(index) {
        return Err(Status::InvalidPartitionId);
    }
    if index == caller || partitions.parent_of(index) == Some(caller) {
        Ok(index)
    } else {
        Err(Status::AccessDenied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::abi::PageList;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// Three partitions: 0 is the parent of 1; 2 stands alone. The caller's RAM is 64 bytes.
    struct Three {
        caller: usize,
        ram: RefCell<Vec<u8>>,
    }

    impl Partitions for Three {
        fn caller(&self) -> usize {
            self.caller
        }
        fn count(&self) -> usize {
            3
        }
        fn is_live(&self, index: usize) -> bool {
            index < 3
        }
        fn parent_of(&self, index: usize) -> Option<usize> {
            (index == 1).then_some(0)
        }
        fn balance(&self, index: usize, node: NodeFilter) -> (u64, u64) {
            match node {
                NodeFilter::All => (10 + index as u64, 2),
                NodeFilter::Node(n) => (n as u64, 1),
            }
        }
        fn memory(&self, index: usize, vnode: usize, _node: NodeFilter) -> Option<(u64, u64)> {
            (vnode == 0).then_some((100 * (index as u64 + 1), 3))
        }
        fn write_guest(&self, gpa: u64, bytes: &[u8]) -> bool {
            let mut ram = self.ram.borrow_mut();
            let start = gpa as usize;
            let Some(end) = start.checked_add(bytes.len()) else {
                return false;
            };
            match ram.get_mut(start..end) {
                Some(place) => {
                    place.copy_from_slice(bytes);
                    true
                }
                _ => false,
            }
        }
        fn move_memory(&self, _call: &Call) -> (Status, u64) {
            (Status::InsufficientMemory, 0)
        }
        fn set_memory_target(
            &self,
            _index: usize,
            vnode: usize,
            bytes: Option<u64>,
        ) -> Result<u64, Status> {
            match (vnode, bytes) {
                (0, Some(bytes)) => Ok(bytes.min(1 << 30)),
                (0, None) => Ok(0),
                _ => Err(Status::InvalidParameter),
            }
        }
    }

    #[test]
    fn only_the_parent_sets_a_memory_target() {
        let set = |caller, target, vnode, bytes| {
            handle(
                &Call::SetMemoryTarget {
                    target,
                    vnode,
                    bytes,
                },
                &as_caller(caller),
            )
        };
        let child = PartitionId::Index(1);
        assert_eq!(set(0, child, 0, Some(4 << 30)), Reply::ok(1 << 30, 0));
        assert_eq!(set(0, child, 0, None), Reply::ok(0, 0));
        assert_eq!(set(0, child, 1, None).status, Status::InvalidParameter);
        for (caller, target) in [(1, child), (2, child), (0, PartitionId::Caller)] {
            assert_eq!(set(caller, target, 0, None).status, Status::AccessDenied);
        }
        assert_eq!(
            set(0, PartitionId::Index(7), 0, None).status,
            Status::InvalidPartitionId
        );
        assert_eq!(
            Call::decode(7, 2, 0, 4097),
            Err(Status::InvalidAlignment),
            "a target is whole pages"
        );
        assert_eq!(
            Call::decode(7, 2, 0, u64::MAX),
            Ok(Call::SetMemoryTarget {
                target: PartitionId::Index(1),
                vnode: 0,
                bytes: None
            })
        );
    }

    fn as_caller(caller: usize) -> Three {
        Three {
            caller,
            ram: RefCell::new(vec![0; 64]),
        }
    }

    #[test]
    fn ids_are_index_plus_one() {
        assert_eq!(
            handle(&Call::GetPartitionId, &as_caller(2)),
            Reply::ok(3, 0)
        );
    }

    #[test]
    fn the_list_is_bounded_by_the_buffer_and_names_parents() {
        let p = as_caller(1);
        let reply = handle(
            &Call::ListPartitions {
                buffer: 8,
                capacity: 2,
            },
            &p,
        );
        assert_eq!(reply, Reply::ok(3, 2));
        let ram = p.ram.borrow();
        let word = |at: usize| u64::from_le_bytes(ram[at..at + 8].try_into().unwrap());
        assert_eq!([word(8), word(16), word(24), word(32)], [1, 0, 2, 1]);
        assert_eq!(word(40), 0, "nothing past the capacity");
        drop(ram);
        // A buffer running out of RAM is refused.
        let reply = handle(
            &Call::ListPartitions {
                buffer: 40,
                capacity: 3,
            },
            &p,
        );
        assert_eq!(reply.status, Status::InvalidParameter);
        let reply = handle(
            &Call::ListPartitions {
                buffer: u64::MAX - 7,
                capacity: 3,
            },
            &p,
        );
        assert_eq!(reply.status, Status::InvalidParameter);
    }

    #[test]
    fn balances_and_memory_are_for_self_and_children_only() {
        let parent = as_caller(0);
        let child = PartitionId::Index(1);
        let balance = |p: &Three, target, node| handle(&Call::GetBalance { target, node }, p);
        assert_eq!(balance(&parent, child, NodeFilter::All), Reply::ok(11, 2));
        assert_eq!(
            balance(&parent, child, NodeFilter::Node(4)),
            Reply::ok(4, 1)
        );
        assert_eq!(
            balance(&parent, PartitionId::Caller, NodeFilter::All),
            Reply::ok(10, 2)
        );
        assert_eq!(
            balance(&as_caller(2), child, NodeFilter::All).status,
            Status::AccessDenied
        );
        assert_eq!(
            balance(&as_caller(1), PartitionId::Index(0), NodeFilter::All).status,
            Status::AccessDenied,
            "a child may not read its parent"
        );
        assert_eq!(
            balance(&parent, PartitionId::Index(3), NodeFilter::All).status,
            Status::InvalidPartitionId
        );
        let memory = |vnode| {
            handle(
                &Call::GetMemoryInfo {
                    target: child,
                    vnode,
                    node: NodeFilter::All,
                },
                &parent,
            )
        };
        assert_eq!(memory(0), Reply::ok(200, 3));
        assert_eq!(memory(1).status, Status::InvalidParameter);
    }

    #[test]
    fn moving_calls_go_to_the_edge() {
        let call = Call::DepositMemory {
            target: PartitionId::Index(1),
            pages: PageList { gpa: 0, count: 1 },
        };
        assert_eq!(
            handle(&call, &as_caller(0)).status,
            Status::InsufficientMemory
        );
    }
}
