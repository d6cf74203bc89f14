//! Host tests of the passthrough models over a fake NVMe controller.

mod bridge;
mod capabilities;
mod fake;
mod function;
mod interrupts;
mod message;
mod never_escapes;
