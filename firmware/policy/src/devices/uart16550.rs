//! A transmit-only 16550 UART model (National Semiconductor PC16550D data sheet): enough for
//! a guest console. Bytes written to THR become lines; reads report an empty receiver and an
//! always-ready transmitter so guests that poll LSR never wait.

use alloc::string::String;
use alloc::vec::Vec;

/// Register offsets from the base port.
const THR_RBR_DLL: u16 = 0;
const IER_DLM: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;
const LCR_DLAB: u8 = 0x80;
/// THR empty and transmitter idle.
const LSR_TX_READY: u8 = 0x60;
/// Longest line kept; longer output is split.
pub const MAX_LINE: usize = 4096;

/// One UART's registers and its partial output line.
#[derive(Clone, Debug, Default)]
pub struct Uart16550 {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    line: Vec<u8>,
}

impl Uart16550 {
    /// A UART in its reset state.
    pub fn new() -> Uart16550 {
        Uart16550 {
            divisor: 1,
            ..Default::default()
        }
    }

    /// A guest write to register `offset` (0..8); returns a finished line, if any.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<String> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            THR_RBR_DLL if dlab => self.divisor = (self.divisor & 0xFF00) | value as u16,
            THR_RBR_DLL => return self.transmit(value),
            IER_DLM if dlab => self.divisor = (self.divisor & 0x00FF) | (value as u16) << 8,
            IER_DLM => self.ier = value & 0x0F,
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1F,
            SCR => self.scr = value,
            _ => {} // FCR and read-only registers
        }
        None
    }

    /// A guest read of register `offset`.
    pub fn read(&self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            THR_RBR_DLL if dlab => self.divisor as u8,
            THR_RBR_DLL => 0,
            IER_DLM if dlab => (self.divisor >> 8) as u8,
            IER_DLM => self.ier,
            IIR_FCR => 0x01, // no interrupt pending
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => LSR_TX_READY,
            MSR => 0xB0, // DCD, DSR, CTS
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    /// Output left without a newline (at partition stop).
    pub fn flush(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take_line())
    }

    fn transmit(&mut self, byte: u8) -> Option<String> {
        match byte {
            b'\n' => Some(self.take_line()),
            b'\r' => None,
            byte => {
                self.line.push(byte);
                (self.line.len() >= MAX_LINE).then(|| self.take_line())
            }
        }
    }

    fn take_line(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_lines() {
        let mut uart = Uart16550::new();
        for b in b"hi\r" {
            assert_eq!(uart.write(0, *b), None);
        }
        assert_eq!(uart.write(0, b'\n').as_deref(), Some("hi"));
        assert_eq!(uart.read(LSR) & LSR_TX_READY, LSR_TX_READY);
        uart.write(0, b'x');
        assert_eq!(uart.flush().as_deref(), Some("x"));
        assert_eq!(uart.flush(), None);
    }

    #[test]
    fn divisor_latch_does_not_transmit() {
        let mut uart = Uart16550::new();
        uart.write(LCR, 0x83);
        assert_eq!(uart.write(0, 0x01), None);
        uart.write(IER_DLM, 0x00);
        assert_eq!(uart.read(0), 1);
        uart.write(LCR, 0x03);
        assert_eq!(uart.write(0, b'\n').as_deref(), Some(""));
    }

    #[test]
    fn long_output_is_split() {
        let mut uart = Uart16550::new();
        let lines: Vec<String> = (0..MAX_LINE + 1)
            .filter_map(|_| uart.write(0, b'a'))
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
    }
}
