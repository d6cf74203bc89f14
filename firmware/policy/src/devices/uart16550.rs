//! A 16550A UART register model after the National Semiconductor PC16550D data sheet, as
//! Linux's 8250 driver probes and drives it.
//!
//! Transmission is instantaneous: a byte written to THR leaves at once, so LSR always reports
//! THRE and TEMT, and the THRE interrupt is raised after every THR write. Transmitted bytes
//! become output lines (split at `\n` and at [`MAX_LINE`], `\r` dropped), except in loopback
//! mode (MCR bit 4), where they go to the receiver instead.
//!
//! Received bytes come from [`Uart16550::push_input`] into a pending queue of
//! [`INPUT_QUEUE`] bytes, which feeds the receiver FIFO (16 bytes with FIFOs enabled, else the
//! single RBR) whenever it has room, so typed input is never overrun. Only loopback bytes can
//! overrun the receiver (LSR.OE). There is no timing: the character-timeout interrupt is
//! reported (IIR 0x0C) whenever the FIFO holds data below the trigger level, RDA (0x04) at or
//! above it.
//!
//! Modem status: outside loopback the lines DCD, DSR and CTS are asserted and RI is not;
//! in loopback CTS, DSR, RI and DCD follow MCR's RTS, DTR, OUT1 and OUT2, with delta bits.
//! Parity, framing and break errors never occur.

use alloc::collections::VecDeque;
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

const IER_ERBFI: u8 = 0x01;
const IER_ETBEI: u8 = 0x02;
const IER_ELSI: u8 = 0x04;
const IER_EDSSI: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_RLS: u8 = 0x06;
const IIR_RDA: u8 = 0x04;
const IIR_TIMEOUT: u8 = 0x0C;
const IIR_THRE: u8 = 0x02;
const IIR_MSR: u8 = 0x00;
const IIR_FIFO_BITS: u8 = 0xC0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
/// THR empty and transmitter idle.
const LSR_TX_READY: u8 = 0x60;

/// MSR status bits outside loopback: DCD, DSR, CTS.
const MSR_LINES_UP: u8 = 0xB0;
const MSR_RI: u8 = 0x40;
const MSR_TERI: u8 = 0x04;

/// Longest line kept; longer output is split.
pub const MAX_LINE: usize = 4096;
/// Bytes of typed input held beyond the receiver FIFO.
pub const INPUT_QUEUE: usize = 4096;
/// Receiver FIFO depth with FIFOs enabled.
const FIFO_DEPTH: usize = 16;

/// One UART's registers, its receiver and its partial output line.
#[derive(Clone, Debug, Default)]
pub struct Uart16550 {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    /// FCR bits kept: enable (bit 0) and the trigger level (bits 6–7).
    fcr: u8,
    divisor: u16,
    /// LSR.OE, cleared by an LSR read.
    overrun: bool,
    /// THRE interrupt source (the data sheet's THRE interrupt flip-flop).
    thre_pending: bool,
    /// MSR delta bits (low nibble).
    msr_delta: u8,
    /// The receiver FIFO (or the single RBR when FIFOs are off).
    rx: VecDeque<u8>,
    /// Typed input waiting for room in the receiver.
    pending: VecDeque<u8>,
    line: Vec<u8>,
}

impl Uart16550 {
    /// A UART in its reset state (FIFOs off, interrupts disabled, divisor 1).
    pub fn new() -> Uart16550 {
        Uart16550 {
            divisor: 1,
            ..Default::default()
        }
    }

    /// A guest write to register `offset` (0..8; others are ignored); returns a finished
    /// output line, if any.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<String> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            THR_RBR_DLL if dlab => self.divisor = (self.divisor & 0xFF00) | u16::from(value),
            THR_RBR_DLL => return self.transmit(value),
            IER_DLM if dlab => self.divisor = (self.divisor & 0x00FF) | u16::from(value) << 8,
            IER_DLM => {
                let old = self.ier;
                self.ier = value & 0x0F;
                // THR is always empty: enabling ETBEI raises the THRE interrupt.
                if old & IER_ETBEI == 0 && self.ier & IER_ETBEI != 0 {
                    self.thre_pending = true;
                }
            }
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => {
                let before = self.modem_lines();
                self.mcr = value & 0x1F;
                self.note_modem_change(before);
            }
            SCR => self.scr = value,
            _ => {} // LSR, MSR (read-only) and out-of-range offsets
        }
        None
    }

    /// A guest read of register `offset` (0..8; others read 0xFF). Reading RBR, IIR, LSR or
    /// MSR has the data sheet's side effects.
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            THR_RBR_DLL if dlab => self.divisor as u8,
            THR_RBR_DLL => {
                let byte = self.rx.pop_front().unwrap_or(0);
                self.refill();
                byte
            }
            IER_DLM if dlab => (self.divisor >> 8) as u8,
            IER_DLM => self.ier,
            IIR_FCR => {
                let id = self.interrupt_id();
                if id == IIR_THRE {
                    self.thre_pending = false;
                }
                id | self.fifo_bits()
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let mut lsr = LSR_TX_READY;
                if !self.rx.is_empty() {
                    lsr |= LSR_DR;
                }
                if self.overrun {
                    lsr |= LSR_OE;
                }
                self.overrun = false;
                lsr
            }
            MSR => {
                let msr = self.modem_lines() | self.msr_delta;
                self.msr_delta = 0;
                msr
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    /// Typed input for the guest; false only when the pending queue is full (byte dropped).
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.pending.len() >= INPUT_QUEUE {
            return false;
        }
        self.pending.push_back(byte);
        self.refill();
        true
    }

    /// Bytes received but not yet read by the guest (FIFO plus pending queue).
    pub fn input_waiting(&self) -> usize {
        self.rx.len().saturating_add(self.pending.len())
    }

    /// The level of the UART's IRQ line as a PC wires it: an interrupt is pending and MCR.OUT2
    /// is set (in loopback the OUT2 pin is held inactive, so the line is low).
    pub fn interrupt_line(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.mcr & MCR_LOOP == 0 && self.interrupt_id() != IIR_NONE
    }

    /// Output left without a newline (at partition stop).
    pub fn flush(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take_line())
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn fifo_bits(&self) -> u8 {
        if self.fifo_enabled() {
            IIR_FIFO_BITS
        } else {
            0
        }
    }

    fn capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// RDA trigger level in bytes (1 with FIFOs off).
    fn trigger_level(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let was_enabled = self.fifo_enabled();
        // Changing the enable bit clears both FIFOs, as does FCR bit 1 for the receiver.
        if value & FCR_CLEAR_RX != 0 || was_enabled != (value & FCR_ENABLE != 0) {
            self.rx.clear();
        }
        self.fcr = value & (FCR_ENABLE | 0xC0);
        // Leaving FIFO mode keeps one byte at most; the rest waits in the pending queue.
        self.refill();
    }

    /// Moves pending input into the receiver while it has room.
    fn refill(&mut self) {
        while self.rx.len() < self.capacity() {
            match self.pending.pop_front() {
                Some(byte) => self.rx.push_back(byte),
                None => break,
            }
        }
    }

    /// The highest-priority pending interrupt's IIR identification (bits 0–3).
    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_ELSI != 0 && self.overrun {
            IIR_RLS
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            if self.rx.len() >= self.trigger_level() {
                IIR_RDA
            } else {
                IIR_TIMEOUT
            }
        } else if self.ier & IER_ETBEI != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_EDSSI != 0 && self.msr_delta != 0 {
            IIR_MSR
        } else {
            IIR_NONE
        }
    }

    /// MSR bits 4–7 as the modem lines (or loopback) set them.
    fn modem_lines(&self) -> u8 {
        if self.mcr & MCR_LOOP == 0 {
            return MSR_LINES_UP;
        }
        // CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2.
        let m = self.mcr;
        ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
    }

    fn note_modem_change(&mut self, before: u8) {
        let after = self.modem_lines();
        let changed = before ^ after;
        // DCTS, DDSR, DDCD on any change; TERI on RI's trailing edge only.
        self.msr_delta |= (changed >> 4) & 0x0B;
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            self.msr_delta |= MSR_TERI;
        }
    }

    fn transmit(&mut self, byte: u8) -> Option<String> {
        // THR empties at once: the THRE interrupt is re-armed by every write.
        self.thre_pending = true;
        if self.mcr & MCR_LOOP != 0 {
            if self.rx.len() >= self.capacity() {
                self.overrun = true;
                if !self.fifo_enabled() {
                    // The 16450-style RBR is overwritten.
                    self.rx.clear();
                    self.rx.push_back(byte);
                }
            } else {
                self.rx.push_back(byte);
            }
            return None;
        }
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

impl crate::devices::device::Device for Uart16550 {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        u64::from(Uart16550::read(self, at.port_offset()))
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        let offset = at.port_offset();
        match Uart16550::write(self, offset, value as u8) {
            Some(line) => crate::devices::device::Effect::Console(line),
            None => crate::devices::device::Effect::None,
        }
    }

    fn interrupt_line(&self) -> Option<bool> {
        Some(Uart16550::interrupt_line(self))
    }

    fn byte_registers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(uart.read(IER_DLM), 0);
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

    #[test]
    fn reset_state_reads() {
        let mut uart = Uart16550::new();
        assert_eq!(uart.read(IIR_FCR), 0x01, "no FIFO bits before FCR");
        assert_eq!(uart.read(LSR), 0x60);
        assert_eq!(uart.read(MSR), 0xB0);
        assert_eq!(uart.read(8), 0xFF);
        assert_eq!(uart.read(u16::MAX), 0xFF);
        assert_eq!(uart.write(9, 0x55), None);
        assert!(!uart.interrupt_line());
    }

    #[test]
    fn ier_keeps_four_bits_and_scratch_holds() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 0xFF);
        assert_eq!(uart.read(IER_DLM), 0x0F);
        uart.write(SCR, 0xA5);
        assert_eq!(uart.read(SCR), 0xA5);
    }

    #[test]
    fn fifo_enable_reports_16550a() {
        let mut uart = Uart16550::new();
        uart.write(IIR_FCR, 0xC7);
        assert_eq!(uart.read(IIR_FCR), 0xC1);
        // Linux's 16750 test: the 64-byte bit never shows (IIR bit 5 stays clear).
        uart.write(LCR, 0x80);
        uart.write(IIR_FCR, 0x21);
        assert_eq!(uart.read(IIR_FCR) >> 5, 6);
        uart.write(LCR, 0x03);
        uart.write(IIR_FCR, 0x00);
        assert_eq!(uart.read(IIR_FCR) & 0xC0, 0);
    }

    #[test]
    fn thre_interrupt_follows_data_sheet() {
        let mut uart = Uart16550::new();
        uart.write(MCR, 0x0B); // DTR, RTS, OUT2
        uart.write(IER_DLM, IER_ETBEI); // 0 -> 1 with THR empty
        assert!(uart.interrupt_line());
        assert_eq!(uart.read(IIR_FCR), 0x02);
        // Reading IIR cleared it.
        assert_eq!(uart.read(IIR_FCR), 0x01);
        assert!(!uart.interrupt_line());
        // Rewriting IER with ETBEI already set does not re-arm it.
        uart.write(IER_DLM, IER_ETBEI);
        assert_eq!(uart.read(IIR_FCR), 0x01);
        // A THR write does.
        uart.write(THR_RBR_DLL, b'a');
        assert_eq!(uart.read(IIR_FCR), 0x02);
        // Linux's THRE bug test: IER 0 then THRI twice, IIR reports THRI each time.
        uart.write(IER_DLM, 0);
        uart.write(IER_DLM, IER_ETBEI);
        assert_eq!(uart.read(IIR_FCR) & 0x0F, 0x02);
        uart.write(IER_DLM, 0);
        uart.write(IER_DLM, IER_ETBEI);
        assert_eq!(uart.read(IIR_FCR) & 0x0F, 0x02);
        // Without OUT2 the line stays low.
        uart.write(THR_RBR_DLL, b'b');
        uart.write(MCR, 0x03);
        assert!(!uart.interrupt_line());
    }

    #[test]
    fn receive_and_trigger_level() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, IER_ERBFI);
        // FIFOs off: one byte in RBR, the rest waits.
        for b in b"abc" {
            assert!(uart.push_input(*b));
        }
        assert_eq!(uart.input_waiting(), 3);
        assert_eq!(uart.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(uart.read(IIR_FCR), IIR_RDA);
        assert_eq!(uart.read(0), b'a');
        // FIFOs on, trigger 4: three bytes are a timeout, four are RDA.
        uart.write(IIR_FCR, 0x41);
        // Enabling FIFOs clears the receiver (b, in RBR, is gone), not the pending queue.
        assert_eq!(uart.input_waiting(), 1);
        assert_eq!(uart.read(IIR_FCR), 0xC0 | IIR_TIMEOUT);
        for b in b"def" {
            uart.push_input(*b);
        }
        assert_eq!(uart.read(IIR_FCR), 0xC0 | IIR_RDA);
        let got: Vec<u8> = (0..4).map(|_| uart.read(0)).collect();
        assert_eq!(got, b"cdef");
        assert_eq!(uart.read(LSR) & LSR_DR, 0);
        assert_eq!(uart.read(IIR_FCR), 0xC1);
        assert_eq!(uart.read(0), 0, "empty receiver reads 0");
    }

    #[test]
    fn input_queue_never_loses_until_full() {
        let mut uart = Uart16550::new();
        uart.write(IIR_FCR, 0x01);
        let mut accepted = 0;
        while uart.push_input(accepted as u8) {
            accepted += 1;
        }
        assert_eq!(accepted, INPUT_QUEUE + FIFO_DEPTH);
        assert_eq!(uart.read(LSR) & LSR_OE, 0);
        for i in 0..accepted {
            assert_eq!(uart.read(0), i as u8);
        }
        assert_eq!(uart.input_waiting(), 0);
    }

    #[test]
    fn loopback_as_linux_autoconfig_tests_it() {
        let mut uart = Uart16550::new();
        uart.write(MCR, MCR_LOOP | 0x0A);
        assert_eq!(uart.read(MSR) & 0xF0, 0x90);
        uart.write(MCR, MCR_LOOP | 0x05);
        let msr = uart.read(MSR);
        assert_eq!(msr & 0xF0, 0x60);
        assert_eq!(msr & 0x0F, 0x0B, "CTS, DSR and DCD changed");
        uart.write(MCR, MCR_LOOP);
        assert_eq!(
            uart.read(MSR),
            0x04 | 0x02,
            "RI trailing edge and DSR change"
        );
        // Transmitted bytes come back, not out.
        assert_eq!(uart.write(THR_RBR_DLL, b'\n'), None);
        assert_eq!(uart.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(uart.read(0), b'\n');
        // A second byte without FIFOs overruns the RBR.
        uart.write(THR_RBR_DLL, 1);
        uart.write(THR_RBR_DLL, 2);
        assert_eq!(uart.read(LSR), 0x60 | LSR_OE | LSR_DR);
        assert_eq!(uart.read(LSR) & LSR_OE, 0, "LSR read clears OE");
        assert_eq!(uart.read(0), 2);
        assert_eq!(uart.flush(), None);
        uart.write(MCR, 0x0B);
        assert_eq!(uart.read(MSR) & 0xF0, 0xB0);
    }

    #[test]
    fn interrupt_priority() {
        let mut uart = Uart16550::new();
        uart.write(MCR, MCR_LOOP);
        uart.write(IER_DLM, 0x0F);
        uart.write(THR_RBR_DLL, 1);
        uart.write(THR_RBR_DLL, 2); // overrun
        uart.write(MCR, MCR_LOOP | 0x02); // CTS delta
        assert_eq!(uart.read(IIR_FCR), IIR_RLS);
        uart.read(LSR);
        assert_eq!(uart.read(IIR_FCR), IIR_RDA);
        uart.read(0);
        assert_eq!(uart.read(IIR_FCR), IIR_THRE);
        assert_eq!(uart.read(IIR_FCR), IIR_MSR);
        uart.read(MSR);
        assert_eq!(uart.read(IIR_FCR), IIR_NONE);
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec((0u8..4, any::<u16>(), any::<u8>()), 0..300)) {
            let mut uart = Uart16550::new();
            for (kind, offset, value) in ops {
                let offset = if offset & 0x100 == 0 { offset & 7 } else { offset };
                match kind {
                    0 => { uart.write(offset, value); }
                    1 => { uart.read(offset); }
                    2 => { uart.push_input(value); }
                    _ => { uart.flush(); }
                }
                let _ = uart.interrupt_line();
                prop_assert!(uart.rx.len() <= FIFO_DEPTH);
                prop_assert!(uart.input_waiting() <= INPUT_QUEUE + FIFO_DEPTH);
            }
        }
    }
}
