//! The hypervisor console: a 16550 UART on COM1 (0x3F8), shared by every CPU.
//!
//! Lines are written whole under one lock so the output of CPUs never interleaves inside a
//! line. The fatal path uses [`force_write`] instead, which does not wait forever for a lock a
//! crashed CPU may hold.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3F8;

static CONSOLE: Mutex<Option<SerialPort>> = Mutex::new(None);

/// Whether the last byte written ended a line (a prompt or an echo may leave one open; at
/// boot, the firmware before us may have).
static AT_LINE_START: AtomicBool = AtomicBool::new(false);

/// The port, noting whether what it wrote last ended a line.
struct Tracked<'a>(&'a mut SerialPort);

impl Write for Tracked<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(&last) = s.as_bytes().last() {
            AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
        }
        self.0.write_str(s)
    }
}

/// Programs COM1 (115200 8N1, FIFO on).
pub fn init() {
    // SAFETY: COM1 at 0x3F8 is the PC's first UART; only this module drives it.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *CONSOLE.lock() = Some(port);
}

/// Writes pre-formatted arguments as one unit.
pub fn write_fmt(args: fmt::Arguments) {
    if let Some(port) = CONSOLE.lock().as_mut() {
        let _ = Tracked(port).write_fmt(args);
    }
}

/// Writes pre-formatted arguments as one unit that starts a line of its own: after a newline
/// if the console's last line is still open (the monitor's prompt, a typed echo). Report lines
/// go this way, so that each one starts with `@nv`.
pub fn write_line_fmt(args: fmt::Arguments) {
    if let Some(port) = CONSOLE.lock().as_mut() {
        let mut port = Tracked(port);
        if !AT_LINE_START.load(Ordering::Relaxed) {
            let _ = port.write_str("\n");
        }
        let _ = port.write_fmt(args);
    }
}

/// Writes even if another CPU holds the console lock (after a bounded wait).
pub fn force_write(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if let Some(mut guard) = CONSOLE.try_lock() {
            if let Some(port) = guard.as_mut() {
                let _ = port.write_fmt(args);
            }
            return;
        }
        core::hint::spin_loop();
    }
    // The holder is wedged: write on a fresh handle to the same UART.
    // SAFETY: the machine is stopping; interleaving with a stuck writer is acceptable.
    let mut port = unsafe { SerialPort::new(COM1) };
    let _ = port.write_fmt(args);
}

/// `println!` onto the console.
#[macro_export]
macro_rules! console_println {
    ($($arg:tt)*) => {
        $crate::platform::console::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// A byte typed on the console, if one is waiting (never blocks; `None` also while another
/// CPU is writing).
pub fn try_read_byte() -> Option<u8> {
    let _owner = CONSOLE.try_lock()?;
    let mut status = x86_64::instructions::port::PortReadOnly::<u8>::new(COM1 + 5);
    let mut data = x86_64::instructions::port::PortReadOnly::<u8>::new(COM1);
    // SAFETY: COM1's line status and receive registers; the console lock is held, so no other
    // CPU drives the UART meanwhile. Reading RBR only consumes the byte LSR.DR announced.
    unsafe { (status.read() & 1 != 0).then(|| data.read()) }
}
