//! An I/O APIC after the Intel 82093AA I/O Advanced Programmable Interrupt Controller data
//! sheet (order 290566): 24 input pins, version 0x11.
//!
//! The MMIO window is [`IOAPIC_WINDOW`] bytes: IOREGSEL at 0x00 and IOWIN at 0x10. Only 4-byte
//! accesses at exactly those two offsets are defined; any other offset or size reads 0 and is
//! ignored on write. Registers: ID (0x00, bits 24–27 as on the 82093AA and KVM's model; bits
//! 28–31 are reserved, read 0 and ignore writes), VER (0x01, reads [`IOAPIC_VERSION`]), ARB (0x02, reads the ID, read-only) and the
//! redirection table (0x10–0x3F, a low and a high dword per pin). Unknown register indices
//! read 0 and ignore writes.
//!
//! Inputs are logical: `asserted` means the interrupt is requested, whatever the programmed
//! polarity (which is stored for the guest only). Delivery is instantaneous, so the delivery
//! status bit always reads 0. Edge pins deliver on a rising edge while unmasked (a masked
//! edge is lost); level pins deliver while asserted, unmasked and with remote IRR clear, and
//! set remote IRR until [`IoApic::eoi`]. Programming a pin as edge-triggered clears its remote
//! IRR (Linux does this to end a level interrupt on I/O APICs without an EOI register).

/// Size of the MMIO window in bytes.
pub const IOAPIC_WINDOW: u64 = 0x20;
/// Number of input pins.
pub const IOAPIC_PINS: u8 = 24;
/// VER register: maximum redirection entry 23, version 0x11.
pub const IOAPIC_VERSION: u32 = 0x0017_0011;

pub(crate) mod delivery;

pub use delivery::{DeliveryMode, IoApicDelivery};
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_ID: u8 = 0x00;
/// The ID register's four ID bits (after the shift from bit 24).
const IOAPIC_ID_MASK: u32 = 0xF;
const REG_VER: u8 = 0x01;
const REG_ARB: u8 = 0x02;
const REG_REDIR_FIRST: u8 = 0x10;
const REG_REDIR_LAST: u8 = 0x3F;

const RTE_POLARITY: u64 = 1 << 13;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASK: u64 = 1 << 16;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
/// Guest-writable bits: vector, delivery mode, destination mode, polarity, trigger mode, mask,
/// destination.
const RTE_WRITABLE: u64 =
    RTE_DESTINATION | RTE_MASK | RTE_LEVEL | RTE_POLARITY | RTE_DEST_LOGICAL | 0x7FF;
const RTE_DESTINATION: u64 = 0xFF << 56;

/// The I/O APIC's registers and input levels.
#[derive(Clone, Debug)]
pub struct IoApic {
    id: u8,
    ioregsel: u8,
    redirection: [u64; IOAPIC_PINS as usize],
    asserted: [bool; IOAPIC_PINS as usize],
}

impl IoApic {
    /// An I/O APIC with APIC ID `id`, all pins masked and deasserted.
    pub fn new(id: u8) -> IoApic {
        IoApic {
            id,
            ioregsel: 0,
            redirection: [RTE_MASK; IOAPIC_PINS as usize],
            asserted: [false; IOAPIC_PINS as usize],
        }
    }

    /// A guest read of `size` bytes at `offset` in the MMIO window.
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u64 {
        match (offset, size) {
            (IOREGSEL, 4) => u64::from(self.ioregsel),
            (IOWIN, 4) => u64::from(self.read_register(self.ioregsel)),
            _ => 0,
        }
    }

    /// A guest write of `size` bytes at `offset` in the MMIO window; returns an interrupt to
    /// deliver when the write unmasks (or re-arms) an asserted level pin.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64) -> Option<IoApicDelivery> {
        match (offset, size) {
            (IOREGSEL, 4) => self.ioregsel = value as u8,
            (IOWIN, 4) => return self.write_register(self.ioregsel, value as u32),
            _ => {}
        }
        None
    }

    /// Drives input `pin`; returns the interrupt this causes, if any. Pins past 23 are ignored.
    pub fn set_level(&mut self, pin: u8, asserted: bool) -> Option<IoApicDelivery> {
        let i = usize::from(pin);
        let was = *self.asserted.get(i)?;
        self.asserted[i] = asserted;
        let entry = self.redirection[i];
        if !asserted || entry & RTE_MASK != 0 {
            return None;
        }
        if entry & RTE_LEVEL == 0 {
            return (!was).then(|| self.message(pin));
        }
        self.deliver_level(pin)
    }

    /// An EOI for `vector` from a local APIC: clears remote IRR of the level pins with that
    /// vector and re-delivers the lowest-numbered one still asserted (any others are found by
    /// the next EOI of the vector).
    pub fn eoi(&mut self, vector: u8) -> Option<IoApicDelivery> {
        for entry in self.redirection.iter_mut() {
            if *entry & RTE_LEVEL != 0 && *entry as u8 == vector {
                *entry &= !RTE_REMOTE_IRR;
            }
        }
        (0..IOAPIC_PINS).find_map(|pin| {
            let entry = self.redirection[usize::from(pin)];
            if entry as u8 == vector && entry & RTE_LEVEL != 0 {
                self.deliver_level(pin)
            } else {
                None
            }
        })
    }

    /// Delivers level pin `pin` if it is asserted, unmasked and its remote IRR is clear.
    fn deliver_level(&mut self, pin: u8) -> Option<IoApicDelivery> {
        let i = usize::from(pin);
        let entry = *self.redirection.get(i)?;
        let ready =
            self.asserted[i] && entry & RTE_LEVEL != 0 && entry & (RTE_MASK | RTE_REMOTE_IRR) == 0;
        if !ready {
            return None;
        }
        self.redirection[i] |= RTE_REMOTE_IRR;
        Some(self.message(pin))
    }

    fn message(&self, pin: u8) -> IoApicDelivery {
        let entry = self.redirection[usize::from(pin)];
        IoApicDelivery {
            vector: entry as u8,
            delivery_mode: DeliveryMode::from_bits((entry >> 8) as u8),
            logical: entry & RTE_DEST_LOGICAL != 0,
            destination: (entry >> 56) as u8,
            level_triggered: entry & RTE_LEVEL != 0,
            pin,
        }
    }

    /// Pin and high-dword flag of a redirection register index.
    fn redirection_slot(index: u8) -> Option<(usize, bool)> {
        (REG_REDIR_FIRST..=REG_REDIR_LAST)
            .contains(&index)
            .then(|| (usize::from((index - REG_REDIR_FIRST) / 2), index & 1 != 0))
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID | REG_ARB => u32::from(self.id) << 24,
            REG_VER => IOAPIC_VERSION,
            _ => match Self::redirection_slot(index) {
                Some((pin, true)) => (self.redirection[pin] >> 32) as u32,
                Some((pin, false)) => self.redirection[pin] as u32,
                None => 0,
            },
        }
    }

    fn write_register(&mut self, index: u8, value: u32) -> Option<IoApicDelivery> {
        if index == REG_ID {
            self.id = ((value >> 24) & IOAPIC_ID_MASK) as u8;
            return None;
        }
        let (pin, high) = Self::redirection_slot(index)?;
        let old = self.redirection[pin];
        let merged = if high {
            (old & 0xFFFF_FFFF) | u64::from(value) << 32
        } else {
            (old & !0xFFFF_FFFF) | u64::from(value)
        };
        let mut entry = (merged & RTE_WRITABLE) | (old & RTE_REMOTE_IRR);
        if entry & RTE_LEVEL == 0 {
            entry &= !RTE_REMOTE_IRR;
        }
        self.redirection[pin] = entry;
        self.deliver_level(pin as u8)
    }
}

impl crate::devices::device::Device for IoApic {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        self.mmio_read(at.offset, at.size)
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        match self.mmio_write(at.offset, at.size, value) {
            Some(delivery) => crate::devices::device::Effect::Interrupt(delivery),
            None => crate::devices::device::Effect::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write_reg(io: &mut IoApic, index: u8, value: u32) -> Option<IoApicDelivery> {
        io.mmio_write(IOREGSEL, 4, u64::from(index));
        io.mmio_write(IOWIN, 4, u64::from(value))
    }

    fn read_reg(io: &mut IoApic, index: u8) -> u32 {
        io.mmio_write(IOREGSEL, 4, u64::from(index));
        io.mmio_read(IOWIN, 4) as u32
    }

    fn program(io: &mut IoApic, pin: u8, low: u32, dest: u8) -> Option<IoApicDelivery> {
        write_reg(io, 0x11 + 2 * pin, u32::from(dest) << 24);
        write_reg(io, 0x10 + 2 * pin, low)
    }

    #[test]
    fn identification_registers() {
        let mut io = IoApic::new(2);
        assert_eq!(read_reg(&mut io, REG_ID), 2 << 24);
        assert_eq!(read_reg(&mut io, REG_VER), 0x0017_0011);
        assert_eq!(read_reg(&mut io, REG_ARB), 2 << 24);
        write_reg(&mut io, REG_ARB, 0);
        write_reg(&mut io, REG_VER, 0);
        assert_eq!(read_reg(&mut io, REG_VER), 0x0017_0011);
        write_reg(&mut io, REG_ID, 0x0500_0000);
        assert_eq!(read_reg(&mut io, REG_ID), 5 << 24);
        // Four ID bits: bits 28–31 are reserved.
        write_reg(&mut io, REG_ID, 0xFF00_0000);
        assert_eq!(read_reg(&mut io, REG_ID), 0x0F00_0000);
        assert_eq!(io.mmio_read(IOREGSEL, 4), 0);
        // Reset entries are masked.
        for pin in 0..24 {
            assert_eq!(read_reg(&mut io, 0x10 + 2 * pin), 1 << 16);
            assert_eq!(read_reg(&mut io, 0x11 + 2 * pin), 0);
        }
    }

    #[test]
    fn malformed_accesses() {
        let mut io = IoApic::new(0);
        assert_eq!(read_reg(&mut io, 0x03), 0);
        assert_eq!(read_reg(&mut io, 0x40), 0);
        assert_eq!(read_reg(&mut io, 0xFF), 0);
        assert_eq!(write_reg(&mut io, 0x40, 0xFFFF_FFFF), None);
        io.mmio_write(IOREGSEL, 4, 0x10);
        for (offset, size) in [
            (0x10, 1),
            (0x10, 2),
            (0x10, 8),
            (0x04, 4),
            (0x14, 4),
            (0x20, 4),
        ] {
            assert_eq!(io.mmio_read(offset, size), 0);
            assert_eq!(io.mmio_write(offset, size, 0), None);
        }
        assert_eq!(io.mmio_read(u64::MAX, 4), 0);
        assert_eq!(
            read_reg(&mut io, 0x10),
            1 << 16,
            "ignored writes left pin 0 masked"
        );
        assert_eq!(io.set_level(24, true), None);
        assert_eq!(io.set_level(255, true), None);
    }

    #[test]
    fn read_only_and_reserved_bits() {
        let mut io = IoApic::new(0);
        write_reg(&mut io, 0x10, 0xFFFF_FFFF);
        assert_eq!(
            read_reg(&mut io, 0x10),
            0x0001_AFFF,
            "delivery status, remote IRR RO"
        );
        write_reg(&mut io, 0x11, 0xFFFF_FFFF);
        assert_eq!(read_reg(&mut io, 0x11), 0xFF00_0000, "bits 32-55 reserved");
    }

    #[test]
    fn edge_pin() {
        let mut io = IoApic::new(0);
        program(&mut io, 4, 0x0000_0834, 3); // vector 0x34, logical, edge, unmasked
        let d = io.set_level(4, true).unwrap();
        assert_eq!(
            d,
            IoApicDelivery {
                vector: 0x34,
                delivery_mode: DeliveryMode::Fixed,
                logical: true,
                destination: 3,
                level_triggered: false,
                pin: 4
            }
        );
        assert_eq!(io.set_level(4, true), None, "no new edge");
        io.set_level(4, false);
        assert!(io.set_level(4, true).is_some());
        // Masked edges are lost.
        io.set_level(4, false);
        program(&mut io, 4, 0x0001_0034, 3);
        assert_eq!(io.set_level(4, true), None);
        assert_eq!(program(&mut io, 4, 0x0000_0034, 3), None);
    }

    #[test]
    fn level_pin_remote_irr_and_eoi() {
        let mut io = IoApic::new(0);
        program(&mut io, 9, 0x0000_A141, 0); // vector 0x41, lowest priority, low active, level
        let d = io.set_level(9, true).unwrap();
        assert!(d.level_triggered);
        assert_eq!(d.delivery_mode, DeliveryMode::LowestPriority);
        assert_eq!(
            read_reg(&mut io, 0x10 + 18) & (1 << 14),
            1 << 14,
            "remote IRR"
        );
        assert_eq!(io.set_level(9, true), None, "remote IRR blocks");
        assert_eq!(io.eoi(0x42), None, "other vector");
        // Still asserted at EOI: delivered again.
        assert_eq!(io.eoi(0x41).map(|d| d.pin), Some(9));
        io.set_level(9, false);
        assert_eq!(io.eoi(0x41), None);
        assert_eq!(read_reg(&mut io, 0x10 + 18) & (1 << 14), 0);
    }

    #[test]
    fn masked_level_pin_delivers_on_unmask() {
        let mut io = IoApic::new(0);
        program(&mut io, 1, 0x0001_8030, 0); // masked level
        assert_eq!(io.set_level(1, true), None);
        let d = write_reg(&mut io, 0x12, 0x0000_8030).unwrap();
        assert_eq!((d.pin, d.vector), (1, 0x30));
        // Linux's EOI trick for version 0x11: mask + edge, then restore.
        write_reg(&mut io, 0x12, 0x0001_0030);
        assert_eq!(read_reg(&mut io, 0x12) & (1 << 14), 0);
        let again = write_reg(&mut io, 0x12, 0x0000_8030);
        assert_eq!(
            again.map(|d| d.pin),
            Some(1),
            "still asserted: delivered again"
        );
    }

    #[test]
    fn shared_vector_eoi_serves_pins_in_turn() {
        let mut io = IoApic::new(0);
        program(&mut io, 5, 0x0000_8050, 1);
        program(&mut io, 6, 0x0000_8050, 1);
        assert_eq!(io.set_level(5, true).map(|d| d.pin), Some(5));
        assert_eq!(io.set_level(6, true).map(|d| d.pin), Some(6));
        assert_eq!(io.eoi(0x50).map(|d| d.pin), Some(5));
        assert_eq!(
            io.eoi(0x50).map(|d| d.pin),
            Some(5),
            "5 is re-armed first again"
        );
        io.set_level(5, false);
        assert_eq!(io.eoi(0x50).map(|d| d.pin), Some(6));
    }

    #[test]
    fn delivery_modes() {
        let modes = [
            DeliveryMode::Fixed,
            DeliveryMode::LowestPriority,
            DeliveryMode::Smi,
            DeliveryMode::Reserved(3),
            DeliveryMode::Nmi,
            DeliveryMode::Init,
            DeliveryMode::Reserved(6),
            DeliveryMode::ExtInt,
        ];
        let mut io = IoApic::new(0);
        for (bits, mode) in modes.into_iter().enumerate() {
            program(&mut io, 0, (bits as u32) << 8 | 0x20, 0);
            io.set_level(0, false);
            assert_eq!(io.set_level(0, true).unwrap().delivery_mode, mode);
        }
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec(
            (0u8..4, prop_oneof![Just(0u64), Just(0x10), any::<u64>()],
             prop_oneof![Just(4u8), any::<u8>()], any::<u64>()), 0..300)) {
            let mut io = IoApic::new(0);
            for (kind, offset, size, value) in ops {
                match kind {
                    0 => { io.mmio_read(offset, size); }
                    1 => { io.mmio_write(offset, size, value); }
                    2 => { io.set_level(value as u8, size & 1 != 0); }
                    _ => { io.eoi(value as u8); }
                }
            }
        }
    }
}
