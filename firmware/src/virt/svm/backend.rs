//! [`Backend`] for AMD SVM (APM vol. 2 ch. 15): VMCBs, the I/O and MSR permission maps
//! (§15.10.1, §15.11), nested page tables in the NPT format, ASIDs (§15.16).

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicBool, Ordering};
use numavisor_policy::memory::HostPage;

use numavisor_policy::memory::BlockSize;
use numavisor_policy::partition::cost;
use numavisor_policy::partition::pool::{PartitionPool, PoolError};
use numavisor_policy::slat::Npt;
use numavisor_policy::vmexit::{svm_msr_permission_bit, SVM_PASSTHROUGH_MSRS};
use spin::Mutex;

use super::vcpu::SvmVcpu;
use super::vmcb::Vmcb;
use crate::virt::pages::PoolPages;
use crate::virt::{Backend, ControlPages, NoTlbTag};

/// AMD SVM with nested paging.
pub struct SvmBackend;

/// Each CPU's pages, by APIC ID: VMRUN's host save area (VM_HSAVE_PA) and the page VMSAVE
/// keeps the host's FS/GS/TR/LDTR/syscall state in across a guest run.
static HOST_PAGES: Mutex<BTreeMap<u32, HostPages>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy)]
struct HostPages {
    host_state: u64,
}

/// Whether the CPU saves the next RIP on intercepts (NRIPS); QEMU's emulator does not.
static NEXT_RIP_SAVE: AtomicBool = AtomicBool::new(false);

impl SvmBackend {
    /// Records what `svm::detect` found, once at boot.
    pub fn set_next_rip_save(available: bool) {
        NEXT_RIP_SAVE.store(available, Ordering::Relaxed);
    }
}

/// Index of the I/O permission map and of the MSR permission map in `ControlPages::shared`.
const IOPM: usize = 0;
const MSRPM: usize = 1;

impl Backend for SvmBackend {
    type Vcpu = SvmVcpu;
    type Slat = Npt;
    const SLAT_NAME: &'static str = "npt";
    /// VM_HSAVE_PA's save area and the host's VMSAVE page.
    const HOST_PAGES_PER_CPU: usize = 2;

    fn clamp_page(wanted: BlockSize) -> BlockSize {
        match super::detect() {
            Ok(caps) if !caps.gib_pages && wanted == BlockSize::Size1G => BlockSize::Size2M,
            _ => wanted,
        }
    }

    fn tlb_tag(index: usize) -> Result<u32, NoTlbTag> {
        // ASID 0 belongs to the host; each partition gets its own, for tagged TLB entries.
        let wanted = index as u32 + 1;
        match super::detect() {
            Ok(caps) if wanted >= caps.asids => Err(NoTlbTag {
                wanted,
                available: caps.asids,
            }),
            _ => Ok(wanted),
        }
    }

    fn control_pages(pool: &mut PartitionPool, vcpus: usize) -> Result<ControlPages, PoolError> {
        let mut iopm = PoolPages::withdraw(pool, cost::IO_BITMAP_PAGES)?;
        let mut msrpm = PoolPages::withdraw(pool, cost::MSR_BITMAP_PAGES)?;
        iopm.fill(0xFF); // intercept every port ...
        msrpm.fill(0xFF); // ... and every MSR,
        for msr in SVM_PASSTHROUGH_MSRS {
            // but those the VMCB itself holds (read and write bits cleared)
            if let Some(bit) = svm_msr_permission_bit(msr) {
                msrpm.clear_bits(bit, 2);
            }
        }
        let mut vmcbs = PoolPages::withdraw_each(pool, vcpus * cost::VMCB_PAGES_PER_VCPU as usize)?;
        vmcbs.iter_mut().for_each(|page| page.fill(0));
        Ok(ControlPages {
            shared: alloc::vec![iopm, msrpm],
            per_vcpu: vmcbs,
            tag: 0,
            slat_root: 0,
        })
    }

    fn prepare(controls: &mut ControlPages, tag: u32, slat_root: u64) {
        controls.tag = tag;
        controls.slat_root = slat_root;
        let (iopm, msrpm) = (
            controls.shared[IOPM].address(),
            controls.shared[MSRPM].address(),
        );
        for page in &controls.per_vcpu {
            // SAFETY: a zeroed page of the partition's pool that holds this vCPU's VMCB; no
            // vCPU runs on it while the partition is (re)started.
            let mut vmcb = unsafe { Vmcb::new(page.address()) };
            vmcb.set_controls(iopm, msrpm, tag, slat_root);
        }
    }

    fn vcpu(controls: &ControlPages, index: usize) -> Option<SvmVcpu> {
        let page = controls.per_vcpu.get(index)?;
        let host = *HOST_PAGES
            .lock()
            .get(&crate::platform::cpu::apic::current_apic_id())?;
        // SAFETY: the VMCB page of vCPU `index`; only that vCPU's loop asks for it.
        let vmcb = unsafe { Vmcb::new(page.address()) };
        Some(SvmVcpu::new(
            vmcb,
            NEXT_RIP_SAVE.load(Ordering::Relaxed),
            host.host_state,
        ))
    }

    fn enable_this_cpu(apic_id: u32, allocate: &mut dyn FnMut() -> Option<HostPage>) -> bool {
        let mut pages = HOST_PAGES.lock();
        if pages.contains_key(&apic_id) {
            return true;
        }
        let (Some(save_area), Some(host_state)) = (allocate(), allocate()) else {
            return false;
        };
        super::enable_on_this_cpu(save_area);
        pages.insert(
            apic_id,
            HostPages {
                host_state: host_state.into_address(),
            },
        );
        true
    }
}
