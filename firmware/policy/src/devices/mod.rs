//! Virtual devices as register models: pure state machines the port bus drives.

pub mod lapic;
pub mod uart16550;
