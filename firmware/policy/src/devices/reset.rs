//! The PC's reset paths: the 8042 keyboard controller's reset line (ports 0x60/0x64, as the
//! IBM PC/AT Technical Reference describes the 8042 interface) and the reset control register
//! at port 0xCF9 (Intel PIIX4 / ICH datasheets, "Reset Control Register").
//!
//! There is no keyboard: the 8042's status register (0x64) always reads 0 (output buffer empty,
//! input buffer empty, so a guest never waits to write and never finds data), the data port
//! (0x60) reads 0, and every command and data byte is accepted and ignored except command 0xFE
//! (pulse the reset line), which requests a reset.
//!
//! Port 0xCF9: a write with bit 2 (RST_CPU) and bit 1 (SYS_RST, hard reset) both set requests a
//! reset (Linux writes 0x06 or 0x0E); bit 2 alone (a soft reset on real chipsets) is ignored.
//! Bits 1 and 3 (FULL_RST) are stored and read back; bit 2 reads 0. Port 0xCF9 is a byte port;
//! a dword access at 0xCF8 belongs to PCI configuration (see `pci_absent`), which the bus
//! decodes before it gets here. Other ports read 0xFF and ignore writes.

/// What a write asks of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetEffect {
    /// Nothing happens.
    None,
    /// Reset the partition (a cold restart of the guest).
    Reset,
}

/// The device's windows, one byte each: the 8042's data port (0x60 on a PC), its status and
/// command port (0x64), and the reset control register (0xCF9).
pub const KBC_DATA: u8 = 0;
/// The 8042's status and command port.
pub const KBC_STATUS_COMMAND: u8 = 1;
/// The reset control register.
pub const RESET_CONTROL: u8 = 2;
const KBC_PULSE_RESET: u8 = 0xFE;
const RCR_SYS_RST: u8 = 1 << 1;
const RCR_RST_CPU: u8 = 1 << 2;
const RCR_STORED: u8 = 0x0A;

/// The 8042 reset line and the 0xCF9 reset control register.
#[derive(Clone, Debug, Default)]
pub struct ResetControl {
    cf9: u8,
}

impl ResetControl {
    /// Reset control in its power-on state (0xCF9 reads 0).
    pub fn new() -> ResetControl {
        ResetControl::default()
    }

    /// A guest read of byte `offset` of `window`.
    pub fn read(&mut self, window: u8, offset: u64) -> u8 {
        match (window, offset) {
            (KBC_DATA | KBC_STATUS_COMMAND, 0) => 0,
            (RESET_CONTROL, 0) => self.cf9,
            _ => 0xFF,
        }
    }

    /// A guest write to byte `offset` of `window`.
    pub fn write(&mut self, window: u8, offset: u64, value: u8) -> ResetEffect {
        match (window, offset) {
            (KBC_STATUS_COMMAND, 0) if value == KBC_PULSE_RESET => ResetEffect::Reset,
            (RESET_CONTROL, 0) => {
                self.cf9 = value & RCR_STORED;
                let reset = RCR_SYS_RST | RCR_RST_CPU;
                if value & reset == reset {
                    ResetEffect::Reset
                } else {
                    ResetEffect::None
                }
            }
            _ => ResetEffect::None,
        }
    }
}

impl crate::devices::device::Device for ResetControl {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        u64::from(ResetControl::read(self, at.window, at.offset))
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        match ResetControl::write(self, at.window, at.offset, value as u8) {
            ResetEffect::Reset => crate::devices::device::Effect::Reset,
            ResetEffect::None => crate::devices::device::Effect::None,
        }
    }

    fn byte_registers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The device at a PC's ports.
    impl ResetControl {
        fn read_port(&mut self, port: u16) -> u8 {
            let (window, offset) = pc_window(port);
            self.read(window, offset)
        }
        fn write_port(&mut self, port: u16, value: u8) -> ResetEffect {
            let (window, offset) = pc_window(port);
            self.write(window, offset, value)
        }
    }

    fn pc_window(port: u16) -> (u8, u64) {
        match port {
            0x60 => (KBC_DATA, 0),
            0x64 => (KBC_STATUS_COMMAND, 0),
            0xCF9 => (RESET_CONTROL, 0),
            _ => (u8::MAX, 0),
        }
    }

    #[test]
    fn keyboard_controller_reset() {
        let mut r = ResetControl::new();
        assert_eq!(r.read_port(0x64), 0);
        assert_eq!(r.read_port(0x60), 0);
        for cmd in [0xAA, 0xAD, 0xD1, 0xFF, 0xF0, 0x00] {
            assert_eq!(r.write_port(0x64, cmd), ResetEffect::None, "{cmd:#x}");
        }
        assert_eq!(
            r.write_port(0x60, 0xFE),
            ResetEffect::None,
            "data, not a command"
        );
        assert_eq!(r.write_port(0x64, 0xFE), ResetEffect::Reset);
    }

    #[test]
    fn cf9_linux_sequence() {
        let mut r = ResetControl::new();
        let cf9 = r.read_port(0xCF9) & !0x0E;
        assert_eq!(r.write_port(0xCF9, cf9 | 0x02), ResetEffect::None);
        assert_eq!(r.read_port(0xCF9), 0x02);
        assert_eq!(r.write_port(0xCF9, cf9 | 0x0E), ResetEffect::Reset);
        assert_eq!(r.read_port(0xCF9), 0x0A);
        assert_eq!(r.write_port(0xCF9, 0x06), ResetEffect::Reset);
        assert_eq!(
            r.write_port(0xCF9, 0x04),
            ResetEffect::None,
            "soft reset ignored"
        );
        assert_eq!(r.read_port(0xCF9), 0x00);
        assert_eq!(r.write_port(0xCF9, 0xF1), ResetEffect::None);
        assert_eq!(r.read_port(0xCF9), 0x00);
    }

    #[test]
    fn other_ports() {
        let mut r = ResetControl::new();
        for port in [0x61, 0x92, 0xCF8, 0xCFA, 0xFFFF] {
            assert_eq!(r.read_port(port), 0xFF);
            assert_eq!(r.write_port(port, 0xFE), ResetEffect::None);
        }
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec(
            (any::<bool>(), prop_oneof![Just(0x60u16), Just(0x64), Just(0xCF9), any::<u16>()],
             any::<u8>()), 0..200)) {
            let mut r = ResetControl::new();
            for (is_read, port, value) in ops {
                if is_read {
                    r.read_port(port);
                } else {
                    r.write_port(port, value);
                }
            }
        }
    }
}
