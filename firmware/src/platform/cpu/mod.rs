//! The CPU layer: descriptor tables, paging, the local APIC, AP start-up and time.

pub mod apic;
pub mod exception;
pub mod gdt;
pub mod idt;
pub mod paging;
pub mod smp;
pub mod stacks;
pub mod trampoline;
pub mod tsc;
