//! The firmware's side of the hypercall dispatcher (`numavisor_policy::hypercall`,
//! `docs/hypercalls.md`): the partitions as one caller sees them, over the partition list
//! and each partition's state lock (taken one at a time, never while the caller's own vCPU
//! holds its own; the vCPU loop keeps a copy of its blocks and holds no lock while it
//! handles an exit).

use numavisor_policy::hypercall::abi::{NodeFilter, Status};
use numavisor_policy::hypercall::{Call, Partitions};
use numavisor_policy::memory::PAGE_SIZE;

use super::guest_memory::GuestMemory;
use super::{partitions, Partition};

/// One calling partition and its RAM.
pub struct CallerView<'a> {
    pub caller: &'a Partition,
    pub memory: &'a GuestMemory<'a>,
}

impl CallerView<'_> {
    fn partition(&self, index: usize) -> Option<&'static Partition> {
        partitions().get(index).copied()
    }
}

impl Partitions for CallerView<'_> {
    fn caller(&self) -> usize {
        self.caller.index
    }

    fn count(&self) -> usize {
        partitions().len()
    }

    fn is_live(&self, index: usize) -> bool {
        // A stopped partition has released its pool (`build::release`).
        self.partition(index)
            .is_some_and(|p| p.state.lock().pool.is_some())
    }

    fn parent_of(&self, index: usize) -> Option<usize> {
        let parent = self.partition(index)?.spec.parent?;
        partitions()
            .iter()
            .find(|p| p.name() == parent)
            .map(|p| p.index)
    }

    fn balance(&self, index: usize, node: NodeFilter) -> (u64, u64) {
        let Some(partition) = self.partition(index) else {
            return (0, 0);
        };
        let state = partition.state.lock();
        let pages = state
            .pool
            .as_ref()
            .filter(|pool| node.accepts(pool.node()))
            .map_or(0, |pool| pool.balance_pages() as u64);
        // No page is deposited by a parent while deposits are not offered (abi::OFFERED).
        (pages, 0)
    }

    fn memory(&self, index: usize, vnode: usize, node: NodeFilter) -> Option<(u64, u64)> {
        let partition = self.partition(index)?;
        if vnode >= partition.spec.memory.len() {
            return None;
        }
        let state = partition.state.lock();
        let bytes: u64 = state
            .blocks
            .iter()
            .filter(|b| b.vnode == vnode && node.accepts(b.node))
            .map(|b| b.size.bytes())
            .sum();
        Some((bytes / PAGE_SIZE, 0))
    }

    fn write_guest(&self, gpa: u64, bytes: &[u8]) -> bool {
        self.memory.write(gpa, bytes)
    }

    fn move_memory(&self, call: &Call) -> (Status, u64) {
        log::debug!(
            "partition \"{}\": {} is not offered by this image",
            self.caller.name(),
            call.code().name()
        );
        (Status::InvalidHypercallCode, 0)
    }
}
