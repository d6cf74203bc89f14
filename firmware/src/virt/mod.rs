//! Virtualization backends. Each implements the VMM core's `Vcpu` trait
//! (`numavisor_policy::vmm::vcpu`) and decodes its exits into the core's `VmExit`, so the
//! partition manager handles them the same way whatever the backend; [`Backend`] is what the
//! partition builder asks of the architecture besides (control blocks, permission bitmaps,
//! SLAT format, tagged TLB). SVM is the backend today ([`Active`]); VMX will be a second.

pub mod pages;
pub mod svm;

use alloc::vec::Vec;

use numavisor_policy::memory::BlockSize;
use numavisor_policy::partition::pool::{PartitionPool, PoolError};
use numavisor_policy::slat::SlatFormat;
use numavisor_policy::vmm::vcpu::Vcpu;

use pages::PoolPages;

/// The backend this image runs partitions with.
pub type Active = svm::backend::SvmBackend;

/// The pages a partition's vCPUs run on: the partition-wide permission bitmaps and one
/// control block per vCPU (VMCB, VMCS), all paid for by the partition's pool.
#[derive(Debug)]
pub struct ControlPages {
    /// Partition-wide pages (I/O and MSR permission bitmaps), in the backend's order.
    pub shared: Vec<PoolPages>,
    /// One control block per vCPU, by vCPU index.
    pub per_vcpu: Vec<PoolPages>,
}

/// Why the CPU cannot give a partition its tagged-TLB id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoTlbTag {
    pub wanted: u32,
    pub available: u32,
}

/// What a virtualization backend does for the partition builder.
pub trait Backend {
    /// Its vCPUs.
    type Vcpu: Vcpu;
    /// The format of its second-level page tables (NPT, EPT).
    type Slat: SlatFormat;
    /// The SLAT format's name in the boot report (`"npt"`, `"ept"`).
    const SLAT_NAME: &'static str;

    /// The largest SLAT leaf the CPU supports when the layout allows `wanted`.
    fn clamp_page(wanted: BlockSize) -> BlockSize;
    /// The tagged-TLB id (ASID, VPID) of partition `index`.
    fn tlb_tag(index: usize) -> Result<u32, NoTlbTag>;
    /// Withdraws the control pages of a partition with `vcpus` vCPUs from its pool, with the
    /// bitmaps filled (everything intercepted but what the backend lets through).
    fn control_pages(pool: &mut PartitionPool, vcpus: usize) -> Result<ControlPages, PoolError>;
    /// Sets up every control block for a (re)start: intercepts, bitmaps, TLB tag, SLAT root.
    fn prepare(controls: &mut ControlPages, tag: u32, slat_root: u64);
    /// The vCPU running on control block `index`, for the calling CPU (after
    /// [`Backend::enable_this_cpu`] there); one at a time per block: the vCPU loop of that
    /// index is its only user.
    fn vcpu(controls: &ControlPages, index: usize) -> Option<Self::Vcpu>;
    /// Turns virtualization on for the calling CPU; `allocate` gives a page of host memory
    /// if the backend needs one per CPU. False if it cannot.
    fn enable_this_cpu(apic_id: u32, allocate: &mut dyn FnMut() -> Option<u64>) -> bool;
}
