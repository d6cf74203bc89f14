//! Every device register model, alone and behind `PlatformDevices`, driven by a fuzzed access
//! sequence (decoded from the input by `arbitrary`) with a clock that only moves forward.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use numavisor_policy::devices::device::DeviceId;
use numavisor_policy::devices::{
    acpi_pm::AcpiPm, cmos_rtc::CmosRtc, ioapic::IoApic, lapic::LocalApic, pci_absent::PciAbsent,
    pic8259::Pic8259Pair, pit8254::Pit8254, reset::ResetControl, uart16550::Uart16550,
};
use numavisor_policy::vmm::platform::{MmioTarget, PlatformConfig, PlatformDevices};

const TSC_HZ: u64 = 1_000_000_000;

/// One guest access; `delta` ticks pass before it.
#[derive(Arbitrary, Debug)]
enum Access {
    Uart {
        write: bool,
        offset: u16,
        value: u8,
    },
    UartInput(u8),
    Pit {
        write: bool,
        offset: u16,
        value: u8,
    },
    Port61 {
        write: bool,
        value: u8,
    },
    Rtc {
        write: bool,
        offset: u16,
        value: u8,
    },
    IoApic {
        write: bool,
        offset: u64,
        size: u8,
        value: u64,
    },
    IoApicLevel {
        pin: u8,
        asserted: bool,
    },
    IoApicEoi(u8),
    Pic {
        write: bool,
        window: u8,
        offset: u64,
        value: u8,
    },
    Pm {
        write: bool,
        offset: u16,
        size: u8,
        value: u32,
    },
    Reset {
        write: bool,
        window: u8,
        offset: u64,
        value: u8,
    },
    Pci {
        write: bool,
        window: u8,
        offset: u64,
        size: u8,
        value: u32,
    },
    Lapic {
        write: bool,
        offset: u64,
        size: u8,
        value: u64,
    },
    LapicMsr {
        write: bool,
        msr: u32,
        value: u64,
    },
    LapicBase(u64),
    LapicAccept {
        vector: u8,
        level: bool,
    },
    LapicAcknowledge,
    LapicDeadline(u64),
    PortRead {
        port: u16,
        size: u8,
    },
    PortWrite {
        port: u16,
        size: u8,
        value: u32,
    },
    PlatformIoApic {
        write: bool,
        offset: u64,
        size: u8,
        value: u64,
    },
    PlatformInput(u8),
    PlatformEoi(u8),
}

/// Every device on its own, and a PC platform.
struct Machine {
    uart: Uart16550,
    pit: Pit8254,
    rtc: CmosRtc,
    ioapic: IoApic,
    pic: Pic8259Pair,
    pm: AcpiPm,
    reset: ResetControl,
    pci: PciAbsent,
    lapic: LocalApic,
    platform: PlatformDevices,
}

impl Machine {
    fn new() -> Machine {
        let config = PlatformConfig::pc(TSC_HZ, 1_796_083_200);
        Machine {
            uart: Uart16550::new(),
            pit: Pit8254::new(TSC_HZ),
            rtc: CmosRtc::new(TSC_HZ, 1_796_083_200),
            ioapic: IoApic::new(0),
            pic: Pic8259Pair::new(),
            pm: AcpiPm::new(TSC_HZ),
            reset: ResetControl::new(),
            pci: PciAbsent::new(),
            lapic: LocalApic::new(0, true, TSC_HZ, 25_000_000),
            platform: PlatformDevices::new(config)
                .expect("the PC platform's devices do not overlap"),
        }
    }

    fn run(&mut self, access: Access, now: u64) {
        match access {
            Access::Uart {
                write: true,
                offset,
                value,
            } => discard(self.uart.write(offset, value)),
            Access::Uart {
                write: false,
                offset,
                ..
            } => discard(self.uart.read(offset)),
            Access::UartInput(byte) => discard(self.uart.push_input(byte)),
            Access::Pit {
                write: true,
                offset,
                value,
            } => self.pit.write(offset, value, now),
            Access::Pit {
                write: false,
                offset,
                ..
            } => discard(self.pit.read(offset, now)),
            Access::Port61 { write: true, value } => self.pit.write_port61(value, now),
            Access::Port61 { write: false, .. } => discard(self.pit.read_port61(now)),
            Access::Rtc {
                write: true,
                offset,
                value,
            } => self.rtc.write(offset, value, now),
            Access::Rtc {
                write: false,
                offset,
                ..
            } => discard(self.rtc.read(offset, now)),
            Access::IoApic {
                write: true,
                offset,
                size,
                value,
            } => discard(self.ioapic.mmio_write(offset, size, value)),
            Access::IoApic {
                write: false,
                offset,
                size,
                ..
            } => discard(self.ioapic.mmio_read(offset, size)),
            Access::IoApicLevel { pin, asserted } => discard(self.ioapic.set_level(pin, asserted)),
            Access::IoApicEoi(vector) => discard(self.ioapic.eoi(vector)),
            Access::Pic {
                write: true,
                window,
                offset,
                value,
            } => self.pic.write(window, offset, value),
            Access::Pic {
                write: false,
                window,
                offset,
                ..
            } => discard(self.pic.read(window, offset)),
            Access::Pm {
                write: true,
                offset,
                size,
                value,
            } => discard(self.pm.write(offset, size, value, now)),
            Access::Pm {
                write: false,
                offset,
                size,
                ..
            } => discard(self.pm.read(offset, size, now)),
            Access::Reset {
                write: true,
                window,
                offset,
                value,
            } => discard(self.reset.write(window, offset, value)),
            Access::Reset {
                write: false,
                window,
                offset,
                ..
            } => discard(self.reset.read(window, offset)),
            Access::Pci {
                write: true,
                window,
                offset,
                size,
                value,
            } => self.pci.write(window, offset, size, value),
            Access::Pci {
                write: false,
                window,
                offset,
                size,
                ..
            } => discard(self.pci.read(window, offset, size)),
            Access::Lapic {
                write: true,
                offset,
                size,
                value,
            } => discard(self.lapic.mmio_write(offset, size, value, now)),
            Access::Lapic {
                write: false,
                offset,
                size,
                ..
            } => discard(self.lapic.mmio_read(offset, size, now)),
            Access::LapicMsr {
                write: true,
                msr,
                value,
            } => discard(self.lapic.msr_write(msr, value, now)),
            Access::LapicMsr {
                write: false, msr, ..
            } => discard(self.lapic.msr_read(msr, now)),
            Access::LapicBase(value) => discard(self.lapic.set_apic_base_msr(value)),
            Access::LapicAccept { vector, level } => self.lapic.accept(vector, level),
            Access::LapicAcknowledge => {
                if let Some(vector) = self.lapic.pending_vector() {
                    self.lapic.acknowledge(vector);
                }
            }
            Access::LapicDeadline(value) => self.lapic.set_tsc_deadline(value, now),
            Access::PortRead { port, size } => discard(self.platform.port_read(port, size, now)),
            Access::PortWrite { port, size, value } => {
                discard(self.platform.port_write(port, size, value, now))
            }
            Access::PlatformIoApic {
                write: true,
                offset,
                size,
                value,
            } => discard(self.platform.mmio_write(ioapic(offset), size, value, now)),
            Access::PlatformIoApic {
                write: false,
                offset,
                size,
                ..
            } => discard(self.platform.mmio_read(ioapic(offset), size, now)),
            Access::PlatformInput(byte) => discard(self.platform.push_input(byte)),
            Access::PlatformEoi(vector) => discard(self.platform.end_of_interrupt(vector)),
        }
    }

    /// What the run loop does between accesses: timers advance, output is flushed.
    fn tick(&mut self, now: u64) {
        self.lapic.advance(now);
        let _ = self.lapic.next_deadline();
        let _ = self.pit.irq0_edges_since_last(now);
        let _ = self.pit.next_irq0(now);
        let _ = self.uart.interrupt_line();
        let _ = self.uart.flush();
        let _ = self.platform.poll_timers(now);
        let _ = self.platform.next_timer_deadline(now);
        let _ = self.platform.flush_console();
    }
}

/// The I/O APIC's window at `offset`, as the platform's MMIO bus names it.
fn ioapic(offset: u64) -> MmioTarget {
    MmioTarget {
        device: DeviceId::IoApic,
        window: 0,
        offset,
        end: 0x1000,
    }
}

/// The accesses' results are not checked here (the unit tests do); only that they return.
fn discard<T>(_result: T) {}

fuzz_target!(|steps: Vec<(u32, Access)>| {
    let mut machine = Machine::new();
    let mut now = 0u64;
    for (delta, access) in steps {
        now = now.saturating_add(u64::from(delta));
        machine.run(access, now);
        machine.tick(now);
    }
});
