//! Ending a test run through QEMU's `isa-debug-exit` device, or Bochs's exits.
//!
//! QEMU exits with status `(value << 1) | 1` when a value is written to the device's port
//! (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`). The port is only written when the
//! command line asks for it (`exit=ready`), because on real hardware port 0xf4 may belong to
//! something else.
//!
//! Bochs (`debug-exit=bochs` beside `exit=`) has no such device. There, `READY` executes its
//! magic breakpoint `xchg bx, bx` (with `magic_break: enabled=1` Bochs stops in its debugger,
//! whose `-rc` script then says `quit`: exit status 0), and `FAILURE` writes "Shutdown" to
//! its shutdown port 0x8900 (Bochs ends with status 1).

use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use x86_64::instructions::port::Port;

/// Value written after the `ready` event: QEMU exits with status 33.
pub const READY: u32 = 0x10;
/// Value written on a panic or CPU exception: QEMU exits with status 35.
pub const FAILURE: u32 = 0x11;

/// The isa-debug-exit port, or 0 while exiting is not enabled.
static PORT: AtomicU16 = AtomicU16::new(0);

/// Whether Bochs's exits are enabled instead of the port.
static BOCHS: AtomicBool = AtomicBool::new(false);

/// Bochs's shutdown port (iodev/unmapped.cc): writing "Shutdown" ends the simulation.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// Enables exits through the device at `port`.
pub fn enable(port: u16) {
    PORT.store(port, Ordering::SeqCst);
}

/// Enables Bochs's exits: the magic breakpoint for `READY`, the shutdown port otherwise.
pub fn enable_bochs() {
    BOCHS.store(true, Ordering::SeqCst);
}

fn bochs_exit(value: u32) {
    if value == READY {
        // SAFETY: `xchg bx, bx` swaps a register with itself: no effect on any state but
        // Bochs's magic breakpoint.
        unsafe { core::arch::asm!("xchg bx, bx", options(nomem, nostack, preserves_flags)) };
        return;
    }
    for byte in b"Shutdown" {
        // SAFETY: the command line said this is Bochs, whose port 0x8900 is its shutdown
        // port; writing it touches no memory.
        unsafe { Port::<u8>::new(BOCHS_SHUTDOWN_PORT).write(*byte) };
    }
}

/// Writes `value` to the exit device if enabled; returns only if the emulator did not exit.
pub fn exit(value: u32) {
    if BOCHS.load(Ordering::SeqCst) {
        bochs_exit(value);
        return;
    }
    let port = PORT.load(Ordering::SeqCst);
    if port != 0 {
        // SAFETY: the user named this port as QEMU's isa-debug-exit device on the command
        // line; writing it has no effect on memory safety.
        unsafe { Port::<u32>::new(port).write(value) };
    }
}
