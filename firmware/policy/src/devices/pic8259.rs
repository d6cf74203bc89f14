//! The PC's pair of Intel 8259A programmable interrupt controllers (Intel 8259A data sheet)
//! at ports 0x20/0x21 (master) and 0xA0/0xA1 (slave), plus the edge/level
//! control registers (ELCR) at 0x4D0/0x4D1 as the PIIX/ICH chipsets define them.
//!
//! numavisor routes every interrupt through the I/O APIC, so these PICs never request or
//! deliver an interrupt: IRR and ISR always read 0 and a poll command reads 0 (no interrupt).
//! The register model is still exact enough for Linux's probe and initialisation: the ICW1–ICW4
//! sequence (ICW2's vector base, ICW3 and ICW4 are stored), OCW1 (the IMR, read back on the
//! data port), OCW2 (EOI and rotate commands accepted, no effect), OCW3 (IRR/ISR read select,
//! poll, special mask accepted). ICW1 clears the IMR, as the data sheet says.
//!
//! ELCR bits for IRQ 0, 1, 2, 8 and 13 are reserved (those lines are edge-only) and read 0;
//! the others are stored. Any port other than the six above reads 0xFF and ignores writes.

/// Where a PIC is in its initialisation sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Init {
    /// Initialised: data-port writes are OCW1.
    #[default]
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug, Default)]
struct Pic {
    imr: u8,
    init: Init,
    /// ICW1 bit 0: an ICW4 follows.
    icw4_needed: bool,
    /// ICW1 bit 1: single PIC, no ICW3.
    single: bool,
    vector_base: u8,
    icw3: u8,
    icw4: u8,
    /// OCW3 read select: true reads ISR, false IRR.
    read_isr: bool,
    /// OCW3 poll pending for the next command-port read.
    poll: bool,
    elcr: u8,
}

impl Pic {
    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1.
            self.init = Init::Icw2;
            self.icw4_needed = value & 0x01 != 0;
            self.single = value & 0x02 != 0;
            self.imr = 0;
            self.read_isr = false;
            if !self.icw4_needed {
                self.icw4 = 0;
            }
        } else if value & 0x08 != 0 {
            // OCW3: bit 1 enables the read select in bit 0; bit 2 polls.
            if value & 0x02 != 0 {
                self.read_isr = value & 0x01 != 0;
            }
            self.poll = value & 0x04 != 0;
        }
        // Otherwise OCW2 (EOI, rotate, set priority): nothing is in service, no effect.
    }

    fn write_data(&mut self, value: u8) {
        self.init = match self.init {
            Init::Ready => {
                self.imr = value;
                Init::Ready
            }
            Init::Icw2 => {
                self.vector_base = value & 0xF8;
                if !self.single {
                    Init::Icw3
                } else if self.icw4_needed {
                    Init::Icw4
                } else {
                    Init::Ready
                }
            }
            Init::Icw3 => {
                self.icw3 = value;
                if self.icw4_needed {
                    Init::Icw4
                } else {
                    Init::Ready
                }
            }
            Init::Icw4 => {
                self.icw4 = value & 0x1F;
                Init::Ready
            }
        };
    }

    fn read_command(&mut self) -> u8 {
        // IRR, ISR and the poll word are all 0: nothing is ever requested.
        self.poll = false;
        0
    }
}

/// The master and slave PICs and their ELCRs.
#[derive(Clone, Debug, Default)]
pub struct Pic8259Pair {
    master: Pic,
    slave: Pic,
}

/// ELCR bits that may be set: not IRQ 0, 1, 2 (master) nor 8, 13 (slave).
const ELCR_MASTER_MASK: u8 = 0xF8;
const ELCR_SLAVE_MASK: u8 = 0xDE;

/// The pair's windows: the master's command and data ports (0x20–0x21 on a PC), the slave's
/// (0xA0–0xA1) and the two ELCRs (0x4D0–0x4D1).
pub const MASTER: u8 = 0;
/// The slave PIC's window.
pub const SLAVE: u8 = 1;
/// The edge/level control registers' window.
pub const ELCR: u8 = 2;

impl crate::devices::device::Device for Pic8259Pair {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        u64::from(Pic8259Pair::read(self, at.window, at.offset))
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        Pic8259Pair::write(self, at.window, at.offset, value as u8);
        crate::devices::device::Effect::None
    }

    fn byte_registers(&self) -> bool {
        true
    }
}

impl Pic8259Pair {
    /// Both PICs in their power-on state (IMR 0, not initialised, ELCR 0).
    pub fn new() -> Pic8259Pair {
        Pic8259Pair::default()
    }

    /// A guest read of byte `offset` of `window` ([`MASTER`], [`SLAVE`] or [`ELCR`]);
    /// anything else reads 0xFF.
    pub fn read(&mut self, window: u8, offset: u64) -> u8 {
        match (window, offset) {
            (MASTER, 0) => self.master.read_command(),
            (MASTER, 1) => self.master.imr,
            (SLAVE, 0) => self.slave.read_command(),
            (SLAVE, 1) => self.slave.imr,
            (ELCR, 0) => self.master.elcr,
            (ELCR, 1) => self.slave.elcr,
            _ => 0xFF,
        }
    }

    /// A guest write to byte `offset` of `window`; anything else is ignored.
    pub fn write(&mut self, window: u8, offset: u64, value: u8) {
        match (window, offset) {
            (MASTER, 0) => self.master.write_command(value),
            (MASTER, 1) => self.master.write_data(value),
            (SLAVE, 0) => self.slave.write_command(value),
            (SLAVE, 1) => self.slave.write_data(value),
            (ELCR, 0) => self.master.elcr = value & ELCR_MASTER_MASK,
            (ELCR, 1) => self.slave.elcr = value & ELCR_SLAVE_MASK,
            _ => {}
        }
    }

    /// The vector bases programmed by ICW2 (master, slave); for diagnostics.
    pub fn vector_bases(&self) -> (u8, u8) {
        (self.master.vector_base, self.slave.vector_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pair at a PC's ports.
    impl Pic8259Pair {
        fn read_port(&mut self, port: u16) -> u8 {
            let (window, offset) = pc_window(port);
            self.read(window, offset)
        }
        fn write_port(&mut self, port: u16, value: u8) {
            let (window, offset) = pc_window(port);
            self.write(window, offset, value)
        }
    }

    fn pc_window(port: u16) -> (u8, u64) {
        match port {
            0x20..=0x21 => (MASTER, u64::from(port - 0x20)),
            0xA0..=0xA1 => (SLAVE, u64::from(port - 0xA0)),
            0x4D0..=0x4D1 => (ELCR, u64::from(port - 0x4D0)),
            _ => (u8::MAX, 0),
        }
    }

    #[test]
    fn linux_probe() {
        let mut pics = Pic8259Pair::new();
        pics.write_port(0xA1, 0xFF);
        pics.write_port(0x21, 0xFB);
        assert_eq!(pics.read_port(0x21), 0xFB);
        assert_eq!(pics.read_port(0xA1), 0xFF);
    }

    #[test]
    fn linux_init_sequence() {
        let mut pics = Pic8259Pair::new();
        pics.write_port(0x21, 0xFF);
        pics.write_port(0xA1, 0xFF);
        // init_8259A: ICW1 edge + ICW4, ICW2 base, ICW3 cascade, ICW4 8086 mode.
        pics.write_port(0x20, 0x11);
        assert_eq!(pics.read_port(0x21), 0, "ICW1 clears IMR");
        pics.write_port(0x21, 0x30);
        pics.write_port(0x21, 0x04);
        pics.write_port(0x21, 0x01);
        pics.write_port(0xA0, 0x11);
        pics.write_port(0xA1, 0x38);
        pics.write_port(0xA1, 0x02);
        pics.write_port(0xA1, 0x01);
        assert_eq!(pics.vector_bases(), (0x30, 0x38));
        // Now data writes are OCW1 again.
        pics.write_port(0x21, 0xFB);
        pics.write_port(0xA1, 0xFF);
        assert_eq!((pics.read_port(0x21), pics.read_port(0xA1)), (0xFB, 0xFF));
        // OCW2 EOIs and OCW3 read selects: IRR and ISR read 0.
        pics.write_port(0x20, 0x20);
        pics.write_port(0x20, 0x60 | 2);
        pics.write_port(0xA0, 0x0B);
        assert_eq!(pics.read_port(0xA0), 0);
        pics.write_port(0xA0, 0x0A);
        assert_eq!(pics.read_port(0xA0), 0);
        pics.write_port(0x20, 0x0C); // poll
        assert_eq!(pics.read_port(0x20), 0);
        assert_eq!(pics.read_port(0x21), 0xFB, "OCWs leave the IMR alone");
    }

    #[test]
    fn single_mode_without_icw4() {
        let mut pics = Pic8259Pair::new();
        pics.write_port(0x20, 0x12); // single, no ICW4
        pics.write_port(0x21, 0x08);
        pics.write_port(0x21, 0xAA); // OCW1 at once
        assert_eq!(pics.read_port(0x21), 0xAA);
        assert_eq!(pics.vector_bases().0, 0x08);
    }

    #[test]
    fn elcr_and_unknown_ports() {
        let mut pics = Pic8259Pair::new();
        pics.write_port(0x4D0, 0xFF);
        pics.write_port(0x4D1, 0xFF);
        assert_eq!((pics.read_port(0x4D0), pics.read_port(0x4D1)), (0xF8, 0xDE));
        pics.write_port(0x4D0, 0x20);
        assert_eq!(pics.read_port(0x4D0), 0x20);
        for port in [0x00, 0x22, 0x1F, 0xA2, 0x4D2, 0xFFFF] {
            assert_eq!(pics.read_port(port), 0xFF);
            pics.write_port(port, 0);
        }
        assert_eq!(pics.read_port(0x4D0), 0x20);
    }

    proptest! {
        #[test]
        fn never_panics(ops in proptest::collection::vec(
            (any::<bool>(), prop_oneof![Just(0x20u16), Just(0x21), Just(0xA0), Just(0xA1),
                Just(0x4D0), Just(0x4D1), any::<u16>()], any::<u8>()), 0..300)) {
            let mut pics = Pic8259Pair::new();
            for (is_read, port, value) in ops {
                if is_read {
                    pics.read_port(port);
                } else {
                    pics.write_port(port, value);
                }
            }
        }
    }
}
