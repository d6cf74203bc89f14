//! Virtualization backends. Each implements the VMM core's `Vcpu` trait
//! (`numavisor_policy::vmm::vcpu`) and decodes its exits into the core's `VmExit`, so the
//! partition manager handles them the same way whatever the backend; [`Backend`] is what the
//! partition builder asks of the architecture besides (control blocks, permission bitmaps,
//! SLAT format, tagged TLB). AMD SVM and Intel VMX are the two; [`select`] picks the one
//! this CPU has at boot and [`Active`] dispatches to it, so one image runs on both vendors.

pub mod host_state;
pub mod pages;
pub mod svm;
pub mod tsc_aux;
pub mod vmx;
pub mod xstate;

use alloc::vec::Vec;
use numavisor_policy::memory::HostPage;

use numavisor_policy::memory::BlockSize;
use numavisor_policy::partition::pool::{PartitionPool, PoolError};
use numavisor_policy::slat::SlatFormat;
use numavisor_policy::vmm::vcpu::Vcpu;

use pages::PoolPages;

use spin::Once;

use svm::backend::SvmBackend;
use vmx::backend::VmxBackend;

/// A virtualization architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Svm,
    Vmx,
}

impl Arch {
    /// Its name in the boot report.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Svm => "svm",
            Arch::Vmx => "vmx",
        }
    }

    /// The name of its tagged-TLB ids.
    pub fn tag_name(self) -> &'static str {
        match self {
            Arch::Svm => "asid",
            Arch::Vmx => "vpid",
        }
    }
}

static SELECTED: Once<Arch> = Once::new();

/// What the boot CPU found, for the log and the report.
#[derive(Clone, Debug)]
pub struct Selection {
    pub arch: Arch,
    /// One line on what the backend offers.
    pub summary: alloc::string::String,
}

/// Why this machine cannot run partitions: each backend's reason.
#[derive(Clone, Debug)]
pub struct Unavailable {
    pub svm: svm::SvmUnavailable,
    pub vmx: vmx::VmxUnavailable,
}

impl core::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "no usable hardware virtualization: SVM: {}; VMX: {}",
            self.svm, self.vmx
        )
    }
}

/// Chooses the backend from what the CPU offers (SVM on AMD, VMX on Intel: a CPU has at most
/// one), once, on the boot CPU before any partition is built.
pub fn select() -> Result<Selection, Unavailable> {
    let svm = match svm::detect() {
        Ok(caps) => {
            SvmBackend::set_next_rip_save(caps.next_rip_save);
            SELECTED.call_once(|| Arch::Svm);
            return Ok(Selection {
                arch: Arch::Svm,
                summary: alloc::format!(
                    "SVM: nested paging, {} ASIDs, next-RIP save {}",
                    caps.asids,
                    caps.next_rip_save
                ),
            });
        }
        Err(why) => why,
    };
    match vmx::detect() {
        Ok(caps) => {
            SELECTED.call_once(|| Arch::Vmx);
            Ok(Selection {
                arch: Arch::Vmx,
                summary: alloc::format!(
                    "VMX: EPT (2 MiB {}, 1 GiB {}), VPID {}, unrestricted guest, VMCS revision {:#x}",
                    caps.ept.pages_2m,
                    caps.ept.pages_1g,
                    caps.controls.vpid(),
                    caps.basic.revision
                ),
            })
        }
        Err(vmx) => Err(Unavailable { svm, vmx }),
    }
}

/// The backend [`select`] chose, dispatched at run time.
pub struct Active;

impl Active {
    /// The architecture in use (SVM if nothing was selected: no partition is built then).
    pub fn arch() -> Arch {
        SELECTED.get().copied().unwrap_or(Arch::Svm)
    }

    pub fn slat_name() -> &'static str {
        match Self::arch() {
            Arch::Svm => SvmBackend::SLAT_NAME,
            Arch::Vmx => VmxBackend::SLAT_NAME,
        }
    }

    pub fn host_pages_per_cpu() -> usize {
        match Self::arch() {
            Arch::Svm => SvmBackend::HOST_PAGES_PER_CPU,
            Arch::Vmx => VmxBackend::HOST_PAGES_PER_CPU,
        }
    }

    pub fn clamp_page(wanted: BlockSize) -> BlockSize {
        match Self::arch() {
            Arch::Svm => SvmBackend::clamp_page(wanted),
            Arch::Vmx => VmxBackend::clamp_page(wanted),
        }
    }

    pub fn tlb_tag(index: usize) -> Result<u32, NoTlbTag> {
        match Self::arch() {
            Arch::Svm => SvmBackend::tlb_tag(index),
            Arch::Vmx => VmxBackend::tlb_tag(index),
        }
    }

    pub fn control_pages(
        pool: &mut PartitionPool,
        vcpus: usize,
    ) -> Result<ControlPages, PoolError> {
        match Self::arch() {
            Arch::Svm => SvmBackend::control_pages(pool, vcpus),
            Arch::Vmx => VmxBackend::control_pages(pool, vcpus),
        }
    }

    pub fn prepare(controls: &mut ControlPages, tag: u32, slat_root: u64) {
        match Self::arch() {
            Arch::Svm => SvmBackend::prepare(controls, tag, slat_root),
            Arch::Vmx => VmxBackend::prepare(controls, tag, slat_root),
        }
    }

    pub fn vcpu(controls: &ControlPages, index: usize) -> Option<ActiveVcpu> {
        match Self::arch() {
            Arch::Svm => SvmBackend::vcpu(controls, index).map(ActiveVcpu::Svm),
            Arch::Vmx => VmxBackend::vcpu(controls, index).map(ActiveVcpu::Vmx),
        }
    }

    pub fn enable_this_cpu(apic_id: u32, allocate: &mut dyn FnMut() -> Option<HostPage>) -> bool {
        match Self::arch() {
            Arch::Svm => SvmBackend::enable_this_cpu(apic_id, allocate),
            Arch::Vmx => VmxBackend::enable_this_cpu(apic_id, allocate),
        }
    }
}

/// A vCPU of whichever backend runs.
pub enum ActiveVcpu {
    Svm(svm::vcpu::SvmVcpu),
    Vmx(vmx::vcpu::VmxVcpu),
}

/// The pages a partition's vCPUs run on: the partition-wide permission bitmaps and one
/// control block per vCPU (VMCB, VMCS), all paid for by the partition's pool.
#[derive(Debug)]
pub struct ControlPages {
    /// Partition-wide pages (I/O and MSR permission bitmaps), in the backend's order.
    pub shared: Vec<PoolPages>,
    /// One control block per vCPU, by vCPU index.
    pub per_vcpu: Vec<PoolPages>,
    /// The tagged-TLB id and SLAT root the last [`Backend::prepare`] was given (VMX writes
    /// them when a vCPU loads its VMCS on its own CPU).
    pub tag: u32,
    pub slat_root: u64,
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
    /// Pages of host memory [`Backend::enable_this_cpu`] takes per CPU.
    const HOST_PAGES_PER_CPU: usize;

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
    fn enable_this_cpu(apic_id: u32, allocate: &mut dyn FnMut() -> Option<HostPage>) -> bool;
}
