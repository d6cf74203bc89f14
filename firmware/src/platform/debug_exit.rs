//! Ending a test run through QEMU's `isa-debug-exit` device.
//!
//! QEMU exits with status `(value << 1) | 1` when a value is written to the device's port
//! (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`). The port is only written when the
//! command line asks for it (`exit=ready`), because on real hardware port 0xf4 may belong to
//! something else.

use core::sync::atomic::{AtomicU16, Ordering};

use x86_64::instructions::port::Port;

/// Value written after the `ready` event: QEMU exits with status 33.
pub const READY: u32 = 0x10;
/// Value written on a panic or CPU exception: QEMU exits with status 35.
pub const FAILURE: u32 = 0x11;

/// The isa-debug-exit port, or 0 while exiting is not enabled.
static PORT: AtomicU16 = AtomicU16::new(0);

/// Enables exits through the device at `port`.
pub fn enable(port: u16) {
    PORT.store(port, Ordering::SeqCst);
}

/// Writes `value` to the exit device if enabled; returns only if QEMU did not exit.
pub fn exit(value: u32) {
    let port = PORT.load(Ordering::SeqCst);
    if port != 0 {
        // SAFETY: the user named this port as QEMU's isa-debug-exit device on the command
        // line; writing it has no effect on memory safety.
        unsafe { Port::<u32>::new(port).write(value) };
    }
}
