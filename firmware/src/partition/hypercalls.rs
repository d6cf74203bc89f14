//! The firmware's side of the hypercall dispatcher (`numavisor_policy::hypercall`,
//! `docs/hypercalls.md`): the partitions as one caller sees them, over the partition list
//! and each partition's state lock (taken one at a time, never while the caller's own vCPU
//! holds its own; the vCPU loop keeps a copy of its RAM and holds no lock while it handles
//! an exit). Deposits and withdrawals are carried out by `page_moves`.

use numavisor_policy::hypercall::abi::{NodeFilter, Status};
use numavisor_policy::hypercall::{Call, Partitions};
use numavisor_policy::memory::PAGE_SIZE;

use super::guest_memory::GuestMemory;
use numavisor_policy::report::events::TargetSetter;

use super::{dynamic, page_moves, Partition};

/// One calling partition, the vCPU that calls, and its RAM.
pub struct CallerView<'a> {
    pub caller: &'a Partition,
    pub vcpu: usize,
    pub memory: &'a GuestMemory,
}

impl CallerView<'_> {
    fn partition(&self, index: usize) -> Option<&'static Partition> {
        self.caller.hv.partitions().get(index).copied()
    }
}

impl Partitions for CallerView<'_> {
    fn caller(&self) -> usize {
        self.caller.index
    }

    fn count(&self) -> usize {
        self.caller.hv.partitions().len()
    }

    fn is_live(&self, index: usize) -> bool {
        self.partition(index).is_some_and(|p| !p.control.ended())
    }

    fn parent_of(&self, index: usize) -> Option<usize> {
        let parent = self.partition(index)?.spec.parent?;
        self.caller
            .hv
            .partitions()
            .iter()
            .find(|p| p.name() == parent)
            .map(|p| p.index)
    }

    fn balance(&self, index: usize, node: NodeFilter) -> (u64, u64) {
        let Some(partition) = self.partition(index) else {
            return (0, 0);
        };
        let own = {
            let state = partition.state.lock();
            state
                .pool
                .as_ref()
                .filter(|pool| node.accepts(pool.node()))
                .map_or(0, |pool| pool.balance_pages() as u64)
        };
        // The bank is not taken with a state lock held (page_moves' lock order).
        let deposited = page_moves::deposited_pages(self.caller.hv, index, node);
        (own + deposited, deposited)
    }

    fn memory(&self, index: usize, vnode: usize, node: NodeFilter) -> Option<(u64, u64)> {
        let partition = self.partition(index)?;
        if vnode >= partition.spec.memory.len() {
            return None;
        }
        let state = partition.state.lock();
        let node = match node {
            NodeFilter::All => None,
            NodeFilter::Node(n) => Some(n),
        };
        let mapped = state.ram.mapped_bytes(vnode, node) / PAGE_SIZE;
        Some((mapped, state.ram.holes_in(vnode, node)))
    }

    fn write_guest(&self, gpa: u64, bytes: &[u8]) -> bool {
        self.memory.write(gpa, bytes)
    }

    fn set_memory_target(
        &self,
        index: usize,
        vnode: usize,
        bytes: Option<u64>,
    ) -> Result<u64, Status> {
        let partition = self.partition(index).ok_or(Status::InvalidPartitionId)?;
        dynamic::set_fixed(partition, vnode, bytes, TargetSetter::Parent)
            .map_err(|_| Status::InvalidParameter)
    }

    fn move_memory(&self, call: &Call) -> (Status, u64) {
        let (target, list, deposit) = match *call {
            Call::DepositMemory { target, pages } => (target, pages, true),
            Call::WithdrawMemory { target, pages } => (target, pages, false),
            _ => return (Status::InvalidHypercallCode, 0),
        };
        // The list lies within one page (checked at decode); read it once, before anything
        // moves (it may name its own page).
        let mut gpas = alloc::vec::Vec::with_capacity(list.count);
        for entry in 0..list.count as u64 {
            match self.memory.read_u64(list.gpa + entry * 8) {
                Some(gpa) => gpas.push(gpa),
                None => return (Status::InvalidParameter, 0),
            }
        }
        if deposit {
            page_moves::deposit(self.caller, self.vcpu, target, &gpas)
        } else {
            page_moves::withdraw(self.caller, self.vcpu, target, &gpas)
        }
    }
}
