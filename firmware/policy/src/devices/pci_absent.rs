//! PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, §3.2.2.3.2) with no
//! devices behind it, so a guest's PCI probe finds an empty bus.
//!
//! CONFIG_ADDRESS (0xCF8) is a 32-bit register: a 4-byte write at 0xCF8 stores it and a
//! 4-byte read returns it, with the reserved bits 24–30 and 0–1 reading 0 as the
//! specification requires (so it reads back what a guest writes for any valid address,
//! including Linux's 0x8000_0000 probe). Narrower accesses at 0xCF8–0xCFB are not
//! CONFIG_ADDRESS (mechanism #1 decodes only dword accesses there); they read all ones and
//! are ignored (0xCF9 is the reset control register, handled elsewhere). CONFIG_DATA
//! (0xCFC–0xCFF) reads all ones at any size, enable bit or not, the answer of a bus where no
//! device claims the cycle; writes are ignored. Other ports, and sizes other than 1, 2 and 4,
//! read all ones (32 bits) and ignore writes.

/// The device's windows: CONFIG_ADDRESS (4 bytes at 0xCF8 on a PC, less the byte at 0xCF9
/// that the reset control register takes) and CONFIG_DATA (4 bytes at 0xCFC).
pub const CONFIG_ADDRESS: u8 = 0;
/// The CONFIG_DATA window.
pub const CONFIG_DATA: u8 = 1;
/// Bits of CONFIG_ADDRESS a guest can set: enable, bus, device, function, register.
pub(crate) const ADDRESS_WRITABLE: u32 = 0x80FF_FFFC;

/// CONFIG_ADDRESS and an empty configuration space.
#[derive(Clone, Debug, Default)]
pub struct PciAbsent {
    address: u32,
}

impl PciAbsent {
    /// Mechanism #1 with CONFIG_ADDRESS 0.
    pub fn new() -> PciAbsent {
        PciAbsent::default()
    }

    /// A guest read of `size` bytes at `offset` of `window`.
    pub fn read(&mut self, window: u8, offset: u64, size: u8) -> u32 {
        match (window, offset, size) {
            (CONFIG_ADDRESS, 0, 4) => self.address,
            (_, _, 1) => 0xFF,
            (_, _, 2) => 0xFFFF,
            _ => 0xFFFF_FFFF,
        }
    }

    /// A guest write of `size` bytes at `offset` of `window`; only a dword to
    /// CONFIG_ADDRESS has an effect.
    pub fn write(&mut self, window: u8, offset: u64, size: u8, value: u32) {
        if (window, offset, size) == (CONFIG_ADDRESS, 0, 4) {
            self.address = value & ADDRESS_WRITABLE;
        }
    }
}

impl crate::devices::device::Device for PciAbsent {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        u64::from(PciAbsent::read(self, at.window, at.offset, at.size))
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        PciAbsent::write(self, at.window, at.offset, at.size, value as u32);
        crate::devices::device::Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The device at a PC's ports.
    impl PciAbsent {
        fn read_port(&mut self, port: u16, size: u8) -> u32 {
            let (window, offset) = pc_window(port);
            self.read(window, offset, size)
        }
        fn write_port(&mut self, port: u16, size: u8, value: u32) {
            let (window, offset) = pc_window(port);
            self.write(window, offset, size, value)
        }
    }

    fn pc_window(port: u16) -> (u8, u64) {
        match port {
            0xCF8..=0xCFB => (CONFIG_ADDRESS, u64::from(port - 0xCF8)),
            0xCFC..=0xCFF => (CONFIG_DATA, u64::from(port - 0xCFC)),
            _ => (u8::MAX, 0),
        }
    }

    #[test]
    fn linux_type1_probe_finds_nothing() {
        let mut pci = PciAbsent::new();
        pci.write_port(0xCFB, 1, 0x01);
        let saved = pci.read_port(0xCF8, 4);
        pci.write_port(0xCF8, 4, 0x8000_0000);
        assert_eq!(pci.read_port(0xCF8, 4), 0x8000_0000);
        pci.write_port(0xCF8, 4, saved);
        assert_eq!(pci.read_port(0xCF8, 4), saved);
        // Vendor/device of every bus 0 device: all ones.
        for dev in 0..32u32 {
            pci.write_port(0xCF8, 4, 0x8000_0000 | dev << 11);
            assert_eq!(pci.read_port(0xCFC, 4), 0xFFFF_FFFF);
            assert_eq!(pci.read_port(0xCFE, 2), 0xFFFF);
            assert_eq!(pci.read_port(0xCFF, 1), 0xFF);
        }
    }

    #[test]
    fn address_register() {
        let mut pci = PciAbsent::new();
        assert_eq!(pci.read_port(0xCF8, 4), 0);
        pci.write_port(0xCF8, 4, 0x8012_3458);
        assert_eq!(pci.read_port(0xCF8, 4), 0x8012_3458);
        pci.write_port(0xCF8, 4, 0xFFFF_FFFF);
        assert_eq!(pci.read_port(0xCF8, 4), 0x80FF_FFFC, "reserved bits read 0");
        pci.write_port(0xCF8, 2, 0);
        pci.write_port(0xCF8, 1, 0);
        pci.write_port(0xCFC, 4, 0);
        assert_eq!(
            pci.read_port(0xCF8, 4),
            0x80FF_FFFC,
            "narrow writes ignored"
        );
        assert_eq!(pci.read_port(0xCF8, 2), 0xFFFF);
        assert_eq!(pci.read_port(0xCF8, 1), 0xFF);
    }

    #[test]
    fn odd_sizes_and_ports() {
        let mut pci = PciAbsent::new();
        for size in [0, 3, 8, 255] {
            assert_eq!(pci.read_port(0xCFC, size), 0xFFFF_FFFF);
            assert_eq!(pci.read_port(0xCF8, size), 0xFFFF_FFFF);
            pci.write_port(0xCF8, size, 0x8000_0000);
        }
        assert_eq!(pci.read_port(0xCF8, 4), 0);
        assert_eq!(pci.read_port(0, 4), 0xFFFF_FFFF);
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec(
            (any::<bool>(), prop_oneof![0xCF8u16..0xD00, any::<u16>()], any::<u8>(), any::<u32>()),
            0..200)) {
            let mut pci = PciAbsent::new();
            for (is_read, port, size, value) in ops {
                if is_read {
                    pci.read_port(port, size);
                } else {
                    pci.write_port(port, size, value);
                }
            }
        }
    }
}
