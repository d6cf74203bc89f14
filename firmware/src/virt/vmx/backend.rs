//! [`Backend`] for Intel VMX (SDM vol. 3C): a VMCS per vCPU, the I/O bitmaps A and B
//! (§24.6.4) and the MSR bitmap (§24.6.9), EPT tables in the builder's EPT format with a
//! write-back, 4-level EPT pointer (§24.6.11), and a VPID per partition (§28.1).

use alloc::collections::BTreeSet;
use numavisor_policy::memory::HostPage;

use numavisor_policy::memory::BlockSize;
use numavisor_policy::partition::pool::{PartitionPool, PoolError};
use numavisor_policy::slat::{Ept, SlatFormat};
use numavisor_policy::vmexit::vmx::{vmx_msr_bitmap_bits, VMX_PASSTHROUGH_MSRS};
use spin::Mutex;

use super::vcpu::{VmcsSetup, VmxVcpu};
use crate::virt::pages::PoolPages;
use crate::virt::{Backend, ControlPages, NoTlbTag};

/// Intel VMX with EPT.
pub struct VmxBackend;

/// The CPUs (by APIC ID) in VMX operation.
static ENABLED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Indices in `ControlPages::shared`.
const IO_BITMAP_A: usize = 0;
const IO_BITMAP_B: usize = 1;
const MSR_BITMAP: usize = 2;

/// VPIDs are 16 bits, and 0 is the host's.
const MAX_VPID: u32 = 0xFFFF;

impl Backend for VmxBackend {
    type Vcpu = VmxVcpu;
    type Slat = Ept;
    const SLAT_NAME: &'static str = "ept";
    /// The VMXON region.
    const HOST_PAGES_PER_CPU: usize = 1;

    fn clamp_page(wanted: BlockSize) -> BlockSize {
        super::capabilities().ept.clamp_page(wanted)
    }

    fn tlb_tag(index: usize) -> Result<u32, NoTlbTag> {
        if !super::capabilities().controls.vpid() {
            return Ok(0); // no VPIDs: entries and exits flush the guest's translations
        }
        let wanted = index as u32 + 1;
        if wanted > MAX_VPID {
            return Err(NoTlbTag {
                wanted,
                available: MAX_VPID,
            });
        }
        Ok(wanted)
    }

    fn control_pages(pool: &mut PartitionPool, vcpus: usize) -> Result<ControlPages, PoolError> {
        let mut io = PoolPages::withdraw_each(pool, 2)?;
        let mut msr = PoolPages::withdraw(pool, 1)?;
        io.iter_mut().for_each(|page| page.fill(0xFF)); // every port exits ...
        msr.fill(0xFF); // ... and every MSR,
        for number in VMX_PASSTHROUGH_MSRS {
            // but those the VMCS switches or the guest holds (see `vcpu.rs`)
            if let Some((read, write)) = vmx_msr_bitmap_bits(number) {
                msr.clear_bits(read, 1);
                msr.clear_bits(write, 1);
            }
        }
        let vmcs = PoolPages::withdraw_each(pool, vcpus)?;
        let mut shared = io;
        shared.push(msr);
        Ok(ControlPages {
            shared,
            per_vcpu: vmcs,
            tag: 0,
            slat_root: 0,
        })
    }

    fn prepare(controls: &mut ControlPages, tag: u32, slat_root: u64) {
        let revision = super::capabilities().basic.revision;
        for page in &mut controls.per_vcpu {
            page.fill(0);
            page.write_u32(0, revision);
        }
        controls.tag = tag;
        controls.slat_root = slat_root;
    }

    fn vcpu(controls: &ControlPages, index: usize) -> Option<VmxVcpu> {
        let page = controls.per_vcpu.get(index)?;
        VmxVcpu::new(VmcsSetup {
            vmcs: page.address(),
            io_bitmap_a: controls.shared.get(IO_BITMAP_A)?.address(),
            io_bitmap_b: controls.shared.get(IO_BITMAP_B)?.address(),
            msr_bitmap: controls.shared.get(MSR_BITMAP)?.address(),
            vpid: controls.tag as u16,
            eptp: Ept::root_pointer(controls.slat_root),
        })
    }

    fn enable_this_cpu(apic_id: u32, allocate: &mut dyn FnMut() -> Option<HostPage>) -> bool {
        let mut enabled = ENABLED.lock();
        if enabled.contains(&apic_id) {
            return true;
        }
        let Some(region) = allocate() else {
            return false;
        };
        if !super::enable_on_this_cpu(region) {
            log::error!("VMXON failed on CPU {apic_id}");
            return false;
        }
        enabled.insert(apic_id);
        true
    }
}
