//! COM1 output, JSON reports and the debug-exit port.
//!
//! The UART is written with plain `out 0x3f8, al`: under numavisor the port is intercepted and
//! there is no real 16550, so the line status register (0x3fd) is read at most a few times for
//! "transmitter empty" and then the byte is written anyway — never an unbounded poll.

use core::arch::asm;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3F8;
const COM1_LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 0x20;
const DEBUG_EXIT: u16 = 0xF4;

/// Whether the last byte written ended a line (an exception handler starts a fresh one).
static AT_LINE_START: AtomicBool = AtomicBool::new(true);
/// Held while a report line is written, so the lines of two vCPUs
/// (`probe=concurrent-moves`) do not interleave.
static WRITING: AtomicBool = AtomicBool::new(false);
/// Spins for [`WRITING`] before writing anyway: a CPU that faults while it holds the lock
/// still gets its exception report out.
const WRITING_SPINS: u64 = 100_000_000;

fn outb(port: u16, value: u8) {
    // SAFETY: the guest owns COM1; writing it has no effect on memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: reading the UART's line status register has no effect on memory.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack)) };
    value
}

fn write_byte(byte: u8) {
    for _ in 0..4 {
        if inb(COM1_LSR) & LSR_THR_EMPTY != 0 {
            break;
        }
    }
    outb(COM1, byte);
    AT_LINE_START.store(byte == b'\n', Ordering::Relaxed);
}

/// The console as a `fmt::Write` sink.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(write_byte);
        Ok(())
    }
}

/// Writes `text` to COM1 as it is, control characters and all (a hostile probe).
pub fn write_raw(text: &str) {
    text.bytes().for_each(write_byte);
}

/// Print one report line: `guest: ` + the JSON object + newline.
pub fn write_report(args: fmt::Arguments) {
    let held = (0..WRITING_SPINS).any(|_| {
        let taken = WRITING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if !taken {
            core::hint::spin_loop();
        }
        taken
    });
    if !AT_LINE_START.load(Ordering::Relaxed) {
        write_byte(b'\n');
    }
    let _ = Console.write_fmt(format_args!("guest: {args}\n"));
    if held {
        WRITING.store(false, Ordering::Release);
    }
}

/// `report!("{{\"event\":...}}", ...)`: one JSON report line.
macro_rules! report {
    ($($arg:tt)*) => { $crate::console::write_report(format_args!($($arg)*)) };
}
pub(crate) use report;

/// Write `s` with JSON string escapes (no quotes).
fn escape(out: &mut dyn Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// Any `Display` value as a JSON string literal, quotes included.
pub struct Json<T>(pub T);

impl<T: fmt::Display> fmt::Display for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaper<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                escape(self.0, s)
            }
        }
        f.write_char('"')?;
        write!(Escaper(f), "{}", self.0)?;
        f.write_char('"')
    }
}

/// End the partition (or QEMU) through the debug-exit port with `status`; if nobody listens,
/// stop here.
pub fn exit(status: u32) -> ! {
    // SAFETY: a port write; under numavisor or QEMU's isa-debug-exit it ends the guest.
    unsafe { asm!("out dx, eax", in("dx") DEBUG_EXIT, in("eax") status, options(nomem, nostack)) };
    loop {
        // SAFETY: stopping this CPU for good is what the guest wants here.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
