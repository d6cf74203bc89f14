//! Virtual devices as register models: pure state machines the port bus drives.

pub mod uart16550;
pub mod pit8254;
pub mod cmos_rtc;
pub mod ioapic;
