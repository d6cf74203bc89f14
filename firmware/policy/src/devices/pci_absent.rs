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

const CONFIG_ADDRESS: u16 = 0xCF8;
/// Bits of CONFIG_ADDRESS a guest can set: enable, bus, device, function, register.
const ADDRESS_WRITABLE: u32 = 0x80FF_FFFC;

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

    /// A guest read of `size` bytes at absolute `port`.
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        match (port, size) {
            (CONFIG_ADDRESS, 4) => self.address,
            (_, 1) => 0xFF,
            (_, 2) => 0xFFFF,
            _ => 0xFFFF_FFFF,
        }
    }

    /// A guest write of `size` bytes at absolute `port`; only a dword at 0xCF8 has an effect.
    pub fn write(&mut self, port: u16, size: u8, value: u32) {
        if (port, size) == (CONFIG_ADDRESS, 4) {
            self.address = value & ADDRESS_WRITABLE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn linux_type1_probe_finds_nothing() {
        let mut pci = PciAbsent::new();
        pci.write(0xCFB, 1, 0x01);
        let saved = pci.read(0xCF8, 4);
        pci.write(0xCF8, 4, 0x8000_0000);
        assert_eq!(pci.read(0xCF8, 4), 0x8000_0000);
        pci.write(0xCF8, 4, saved);
        assert_eq!(pci.read(0xCF8, 4), saved);
        // Vendor/device of every bus 0 device: all ones.
        for dev in 0..32u32 {
            pci.write(0xCF8, 4, 0x8000_0000 | dev << 11);
            assert_eq!(pci.read(0xCFC, 4), 0xFFFF_FFFF);
            assert_eq!(pci.read(0xCFE, 2), 0xFFFF);
            assert_eq!(pci.read(0xCFF, 1), 0xFF);
        }
    }

    #[test]
    fn address_register() {
        let mut pci = PciAbsent::new();
        assert_eq!(pci.read(0xCF8, 4), 0);
        pci.write(0xCF8, 4, 0x8012_3458);
        assert_eq!(pci.read(0xCF8, 4), 0x8012_3458);
        pci.write(0xCF8, 4, 0xFFFF_FFFF);
        assert_eq!(pci.read(0xCF8, 4), 0x80FF_FFFC, "reserved bits read 0");
        pci.write(0xCF8, 2, 0);
        pci.write(0xCF8, 1, 0);
        pci.write(0xCFC, 4, 0);
        assert_eq!(pci.read(0xCF8, 4), 0x80FF_FFFC, "narrow writes ignored");
        assert_eq!(pci.read(0xCF8, 2), 0xFFFF);
        assert_eq!(pci.read(0xCF8, 1), 0xFF);
    }

    #[test]
    fn odd_sizes_and_ports() {
        let mut pci = PciAbsent::new();
        for size in [0, 3, 8, 255] {
            assert_eq!(pci.read(0xCFC, size), 0xFFFF_FFFF);
            assert_eq!(pci.read(0xCF8, size), 0xFFFF_FFFF);
            pci.write(0xCF8, size, 0x8000_0000);
        }
        assert_eq!(pci.read(0xCF8, 4), 0);
        assert_eq!(pci.read(0, 4), 0xFFFF_FFFF);
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec(
            (any::<bool>(), prop_oneof![0xCF8u16..0xD00, any::<u16>()], any::<u8>(), any::<u32>()),
            0..200)) {
            let mut pci = PciAbsent::new();
            for (is_read, port, size, value) in ops {
                if is_read {
                    pci.read(port, size);
                } else {
                    pci.write(port, size, value);
                }
            }
        }
    }
}
