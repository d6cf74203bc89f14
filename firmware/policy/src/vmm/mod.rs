//! The backend-neutral VMM core: what a vCPU exit needs that is neither SVM nor VMX.
//!
//! Exit handlers shared by both backends live here as pure logic over plain data: the guest's
//! general-purpose registers ([`guest_regs`]), decoding the instruction that touched an MMIO page
//! ([`mmio_decode`], Intel SDM vol. 2 ch. 2), walking the guest's own page tables to fetch that
//! instruction ([`guest_walk`], SDM vol. 3A ch. 4), and the CPUID and MSR policy a partition's
//! vCPUs see ([`cpuid`], [`msr`]). Nothing here touches hardware; the backend reads the guest
//! state, calls in, and applies the answer. The partition's virtual platform ([`platform`],
//! devices on a port and an MMIO [`bus`]), the exit handler shared by every backend
//! ([`exit`]) over the backend's [`vcpu::Vcpu`], and the console input switch
//! ([`console_input`]) complete it.

pub mod bus;
pub mod console_input;
pub mod console_output;
pub mod cpuid;
pub mod entry_state;
pub mod exit;
pub mod exit_profile;
pub mod guest_regs;
pub mod guest_walk;
pub mod mmio_cache;
pub mod mmio_decode;
pub mod monitor;
pub mod msr;
pub mod nmi;
pub mod platform;
pub mod skip;
pub mod vcpu;
pub mod xcr0;
