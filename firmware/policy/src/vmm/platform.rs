//! One partition's shared virtual platform: the PC devices every vCPU of the partition
//! reaches through the port and MMIO buses, and the wiring of their interrupt lines to the
//! I/O APIC.
//!
//! The addresses come from the caller's [`PlatformConfig`], filled in from the same values
//! the guest's ACPI tables describe, so the tables and the devices cannot disagree.

use crate::devices::virtio::balloon::{BalloonConfig, VirtioBalloon};
use crate::devices::virtio::mmio::MMIO_WINDOW;
use alloc::string::String;

use super::bus::{Bus, BusError};
use crate::devices::acpi_pm::{AcpiPm, PmEffect};
use crate::devices::cmos_rtc::CmosRtc;
use crate::devices::ioapic::{IoApic, IoApicDelivery};
use crate::devices::pci_absent::PciAbsent;
use crate::devices::pic8259::Pic8259Pair;
use crate::devices::pit8254::Pit8254;
use crate::devices::reset::{ResetControl, ResetEffect};
use crate::devices::uart16550::Uart16550;

/// Where the platform's devices sit; the guest ACPI tables describe the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformConfig {
    /// COM1's first port and its ISA IRQ (= I/O APIC pin).
    pub uart_port: u16,
    pub uart_irq: u8,
    /// The I/O APIC's ID and MMIO base.
    pub ioapic_id: u8,
    pub ioapic_base: u64,
    /// The local APICs' MMIO page.
    pub lapic_base: u64,
    /// The ACPI PM block's first port.
    pub pm_port: u16,
    /// The test port whose write ends the guest (QEMU's isa-debug-exit convention).
    pub debug_exit_port: u16,
    /// Guest TSC ticks per second (every device's clock).
    pub tsc_hz: u64,
    /// The RTC's time at guest TSC 0, in seconds since the Unix epoch.
    pub rtc_epoch_seconds: u64,
    /// A virtio-mmio memory balloon (Dynamic Memory): its window's base and its I/O APIC
    /// pin (level-triggered); `None`: no balloon.
    pub virtio_balloon: Option<(u64, u8)>,
}

impl PlatformConfig {
    /// The PC platform at its usual addresses — COM1 at 0x3F8 on IRQ 4, the I/O APIC (ID 0) at
    /// 0xFEC0_0000, local APICs at 0xFEE0_0000, the PM block at 0x600, debug-exit at 0xF4 —
    /// clocked at `tsc_hz`, its RTC starting at `rtc_epoch_seconds`. These are the values
    /// `numavisor_acpi_tables::Devices::pc()` describes to the guest (a test holds them equal);
    /// the firmware derives its configuration from those tables themselves.
    pub const fn pc(tsc_hz: u64, rtc_epoch_seconds: u64) -> PlatformConfig {
        PlatformConfig {
            uart_port: 0x3F8,
            uart_irq: 4,
            ioapic_id: 0,
            ioapic_base: 0xFEC0_0000,
            lapic_base: 0xFEE0_0000,
            pm_port: 0x600,
            debug_exit_port: 0xF4,
            tsc_hz,
            rtc_epoch_seconds,
            virtio_balloon: None,
        }
    }
}

/// Who answers a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortDevice {
    Pic,
    Pit,
    Keyboard,
    Port61,
    Rtc,
    PostCode,
    Elcr,
    Pm,
    PciConfig,
    ResetControl,
    Uart,
    DebugExit,
}

/// Who answers a guest-physical MMIO address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioDevice {
    LocalApic,
    IoApic,
    /// The virtio-mmio memory balloon's window.
    VirtioBalloon,
}

/// What a port write asks of the hypervisor beyond the device's own state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortEffect {
    None,
    /// The UART finished a line of guest output.
    Console(String),
    /// ACPI soft-off (S5).
    PowerOff,
    /// A reset through the keyboard controller or the reset control register.
    Reset,
    /// A write to the debug-exit port, with the value written.
    DebugExit(u32),
}

/// The I/O APIC pin the PIT's IRQ 0 arrives at (ISA IRQ 0 → GSI 2, as the guest MADT's
/// interrupt source override says and PCs wire it).
pub const PIT_PIN: u8 = 2;

/// Bytes of the I/O APIC's MMIO window and of the local APIC page.
const IOAPIC_WINDOW: u64 = 0x1000;
const LAPIC_PAGE: u64 = 0x1000;
/// The ACPI PM block: event (4), control (2), pad (2), timer (4).
const PM_BLOCK_PORTS: u64 = 12;

/// The shared devices of one partition.
pub struct PlatformDevices {
    config: PlatformConfig,
    ports: Bus<PortDevice>,
    mmio: Bus<MmioDevice>,
    pub uart: Uart16550,
    pub pit: Pit8254,
    pub rtc: CmosRtc,
    pub pic: Pic8259Pair,
    pub pm: AcpiPm,
    pub reset: ResetControl,
    pub pci: PciAbsent,
    pub ioapic: IoApic,
    /// The memory balloon, with Dynamic Memory.
    pub balloon: Option<VirtioBalloon>,
    /// The UART interrupt line's level as the I/O APIC last saw it.
    uart_line: bool,
    /// The balloon's interrupt line, likewise.
    balloon_line: bool,
}

impl PlatformDevices {
    /// The devices of a PC guest at the addresses `config` gives; refuses overlapping ones.
    pub fn new(config: PlatformConfig) -> Result<Self, BusError<PortDevice>> {
        let mut ports = Bus::new();
        for (start, length, device) in [
            (0x20, 2, PortDevice::Pic),
            (0xA0, 2, PortDevice::Pic),
            (0x40, 4, PortDevice::Pit),
            (0x60, 1, PortDevice::Keyboard),
            (0x64, 1, PortDevice::Keyboard),
            (0x61, 1, PortDevice::Port61),
            (0x70, 2, PortDevice::Rtc),
            (0x80, 1, PortDevice::PostCode),
            (0x4D0, 2, PortDevice::Elcr),
            (config.pm_port as u64, PM_BLOCK_PORTS, PortDevice::Pm),
            // 0xCF8 is PCI's 32-bit address register, except that a byte at 0xCF9 is the
            // reset control register (as on Intel chipsets).
            (0xCF8, 1, PortDevice::PciConfig),
            (0xCF9, 1, PortDevice::ResetControl),
            (0xCFA, 2, PortDevice::PciConfig),
            (0xCFC, 4, PortDevice::PciConfig),
            (config.uart_port as u64, 8, PortDevice::Uart),
            (config.debug_exit_port as u64, 1, PortDevice::DebugExit),
        ] {
            ports.claim(start, length, device)?;
        }
        let mut mmio = Bus::new();
        // Two fixed pages that cannot overlap unless the config is nonsense; report that as a
        // port-bus-style error would lose the device name, so map it onto the I/O APIC.
        if mmio
            .claim(config.lapic_base, LAPIC_PAGE, MmioDevice::LocalApic)
            .and_then(|()| mmio.claim(config.ioapic_base, IOAPIC_WINDOW, MmioDevice::IoApic))
            .is_err()
        {
            return Err(BusError::Overlap {
                start: config.ioapic_base,
                length: IOAPIC_WINDOW,
                device: PortDevice::Uart,
                owner: PortDevice::Uart,
            });
        }
        if let Some((base, _)) = config.virtio_balloon {
            if mmio
                .claim(base, MMIO_WINDOW, MmioDevice::VirtioBalloon)
                .is_err()
            {
                return Err(BusError::BadRange {
                    start: base,
                    length: MMIO_WINDOW,
                });
            }
        }
        Ok(PlatformDevices {
            config,
            ports,
            mmio,
            uart: Uart16550::new(),
            pit: Pit8254::new(config.tsc_hz),
            rtc: CmosRtc::new(config.tsc_hz, config.rtc_epoch_seconds),
            pic: Pic8259Pair::new(),
            pm: AcpiPm::new(config.tsc_hz),
            reset: ResetControl::new(),
            pci: PciAbsent::new(),
            ioapic: IoApic::new(config.ioapic_id),
            // DEFLATE_ON_OOM: a guest about to run out of memory takes pages back from its
            // balloon (from its vnode's node) rather than kill a process; the policy then
            // sees its demand.
            balloon: config.virtio_balloon.map(|_| {
                VirtioBalloon::new(BalloonConfig {
                    deflate_on_oom: true,
                })
            }),
            uart_line: false,
            balloon_line: false,
        })
    }

    /// The configuration the platform was built from.
    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    /// The MMIO device at guest-physical `gpa`, and the offset into its window.
    pub fn mmio_device(&self, gpa: u64) -> Option<(MmioDevice, u64)> {
        self.mmio.find(gpa)
    }

    /// A guest `IN` of `size` bytes (1, 2 or 4) from `port`. Ports nobody claims read all
    /// ones, as an empty ISA bus floats high. Also returns an interrupt the read raised.
    pub fn port_read(&mut self, port: u16, size: u8, now: u64) -> (u32, Option<IoApicDelivery>) {
        let size = normalise(size);
        let value = match self.ports.find(port as u64) {
            Some((PortDevice::Pm, offset)) => self.pm.read(offset as u16, size, now),
            Some((PortDevice::PciConfig, _)) => self.pci.read(port, size),
            _ => {
                // Byte-wide devices: a wider access reads consecutive ports, as the ISA bus
                // splits it.
                let mut value = 0u32;
                for i in 0..size {
                    let byte = self.read_byte(port.wrapping_add(i as u16), now);
                    value |= (byte as u32) << (8 * i);
                }
                value
            }
        };
        (value & mask(size), self.sync_interrupt_lines())
    }

    fn read_byte(&mut self, port: u16, now: u64) -> u8 {
        match self.ports.find(port as u64) {
            Some((PortDevice::Pic, _)) | Some((PortDevice::Elcr, _)) => self.pic.read(port),
            Some((PortDevice::Pit, offset)) => self.pit.read(offset as u16, now),
            Some((PortDevice::Port61, _)) => self.pit.read_port61(now),
            Some((PortDevice::Keyboard, _)) | Some((PortDevice::ResetControl, _)) => {
                self.reset.read(port)
            }
            Some((PortDevice::Rtc, offset)) => self.rtc.read(offset as u16, now),
            Some((PortDevice::Uart, offset)) => self.uart.read(offset as u16),
            Some((PortDevice::Pm, offset)) => self.pm.read(offset as u16, 1, now) as u8,
            Some((PortDevice::PciConfig, _)) => self.pci.read(port, 1) as u8,
            Some((PortDevice::PostCode, _)) | Some((PortDevice::DebugExit, _)) | None => 0xFF,
        }
    }

    /// A guest `OUT` of `size` bytes of `value` to `port`; unclaimed ports ignore it.
    pub fn port_write(
        &mut self,
        port: u16,
        size: u8,
        value: u32,
        now: u64,
    ) -> (PortEffect, Option<IoApicDelivery>) {
        let size = normalise(size);
        let value = value & mask(size);
        let effect = match self.ports.find(port as u64) {
            Some((PortDevice::Pm, offset)) => {
                match self.pm.write(offset as u16, size, value, now) {
                    PmEffect::PowerOff => PortEffect::PowerOff,
                    PmEffect::None => PortEffect::None,
                }
            }
            Some((PortDevice::PciConfig, _)) => {
                self.pci.write(port, size, value);
                PortEffect::None
            }
            Some((PortDevice::DebugExit, _)) => PortEffect::DebugExit(value),
            _ => {
                let mut effect = PortEffect::None;
                for i in 0..size {
                    let byte = (value >> (8 * i)) as u8;
                    let this = self.write_byte(port.wrapping_add(i as u16), byte, now);
                    if this != PortEffect::None {
                        effect = this;
                    }
                }
                effect
            }
        };
        (effect, self.sync_interrupt_lines())
    }

    fn write_byte(&mut self, port: u16, value: u8, now: u64) -> PortEffect {
        match self.ports.find(port as u64) {
            Some((PortDevice::Pic, _)) | Some((PortDevice::Elcr, _)) => self.pic.write(port, value),
            Some((PortDevice::Pit, offset)) => self.pit.write(offset as u16, value, now),
            Some((PortDevice::Port61, _)) => self.pit.write_port61(value, now),
            Some((PortDevice::Keyboard, _)) | Some((PortDevice::ResetControl, _)) => {
                if self.reset.write(port, value) == ResetEffect::Reset {
                    return PortEffect::Reset;
                }
            }
            Some((PortDevice::Rtc, offset)) => self.rtc.write(offset as u16, value, now),
            Some((PortDevice::Uart, offset)) => {
                if let Some(line) = self.uart.write(offset as u16, value) {
                    return PortEffect::Console(line);
                }
            }
            Some((PortDevice::Pm, offset)) => {
                if self.pm.write(offset as u16, 1, value as u32, now) == PmEffect::PowerOff {
                    return PortEffect::PowerOff;
                }
            }
            Some((PortDevice::DebugExit, _)) => return PortEffect::DebugExit(value as u32),
            Some((PortDevice::PciConfig, _)) => self.pci.write(port, 1, value as u32),
            Some((PortDevice::PostCode, _)) | None => {}
        }
        PortEffect::None
    }

    /// A guest read of the I/O APIC window.
    pub fn ioapic_read(&mut self, offset: u64, size: u8) -> u64 {
        self.ioapic.mmio_read(offset, size)
    }

    /// A guest write to the I/O APIC window; an unmasked pin may deliver at once.
    pub fn ioapic_write(&mut self, offset: u64, size: u8, value: u64) -> Option<IoApicDelivery> {
        self.ioapic.mmio_write(offset, size, value)
    }

    /// A local APIC's EOI of a level-triggered `vector`: the I/O APIC may deliver again.
    pub fn end_of_interrupt(&mut self, vector: u8) -> Option<IoApicDelivery> {
        self.ioapic.eoi(vector)
    }

    /// A byte typed on the host console for this partition; false when its UART's queue is
    /// full (the byte is dropped and the caller says so).
    pub fn push_input(&mut self, byte: u8) -> (bool, Option<IoApicDelivery>) {
        let accepted = self.uart.push_input(byte);
        (accepted, self.sync_interrupt_lines())
    }

    /// Raises the interrupts the platform's timers owe at guest TSC `now`: a rising edge of
    /// PIT channel 0 reaches the I/O APIC at pin [`PIT_PIN`] (the MADT's override of ISA IRQ 0).
    /// Several periods missed at once deliver one interrupt, as an edge-triggered line would.
    pub fn poll_timers(&mut self, now: u64) -> Option<IoApicDelivery> {
        if self.pit.irq0_edges_since_last(now) == 0 {
            return None;
        }
        let delivery = self.ioapic.set_level(PIT_PIN, true);
        let _ = self.ioapic.set_level(PIT_PIN, false);
        delivery
    }

    /// The guest TSC of the next interrupt a platform timer will raise, if one is armed.
    pub fn next_timer_deadline(&self, now: u64) -> Option<u64> {
        self.pit.next_irq0(now)
    }

    /// Output the UART holds without a newline yet (at a stop).
    pub fn flush_console(&mut self) -> Option<String> {
        self.uart.flush()
    }

    /// Returns the balloon's statistics buffer to its driver (which refills it and hands it
    /// back: a [`BalloonRequest::Stats`](crate::devices::virtio::balloon::BalloonRequest)),
    /// and the interrupt that says so.
    pub fn balloon_request_stats(
        &mut self,
        memory: &dyn crate::devices::virtio::QueueMemory,
    ) -> Option<IoApicDelivery> {
        self.balloon.as_mut()?.request_stats(memory);
        self.sync_balloon_line()
    }

    /// Hands the balloon's interrupt line level to the I/O APIC, if it changed (after every
    /// access to the balloon and every completion of its buffers).
    pub fn sync_balloon_line(&mut self) -> Option<IoApicDelivery> {
        let (Some(balloon), Some((_, pin))) = (&self.balloon, self.config.virtio_balloon) else {
            return None;
        };
        let line = balloon.interrupt_asserted();
        if line == self.balloon_line {
            return None;
        }
        self.balloon_line = line;
        self.ioapic.set_level(pin, line)
    }

    /// Hands level changes of the device interrupt lines to the I/O APIC.
    fn sync_interrupt_lines(&mut self) -> Option<IoApicDelivery> {
        let line = self.uart.interrupt_line();
        if line == self.uart_line {
            return None;
        }
        self.uart_line = line;
        self.ioapic.set_level(self.config.uart_irq, line)
    }
}

fn normalise(size: u8) -> u8 {
    match size {
        1 | 2 => size,
        _ => 4,
    }
}

fn mask(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => u32::MAX,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pc() -> PlatformConfig {
        PlatformConfig::pc(1_000_000_000, 1_796_083_200)
    }

    #[test]
    fn the_pc_config_is_what_the_guest_acpi_tables_describe() {
        let devices = numavisor_acpi_tables::Devices::pc();
        let uart = devices.uart.expect("a PC has COM1");
        let config = pc();
        assert_eq!((config.uart_port, config.uart_irq), (uart.port, uart.irq));
        assert_eq!(config.ioapic_id, devices.io_apic.id);
        assert_eq!(config.ioapic_base, devices.io_apic.address as u64);
        assert_eq!(config.lapic_base, devices.local_apic_base as u64);
        assert_eq!(config.pm_port, devices.pm.port);
    }

    #[test]
    fn ports_reach_their_devices() {
        let mut p = PlatformDevices::new(pc()).unwrap();
        // UART scratch register round trip.
        p.port_write(0x3FF, 1, 0x5A, 0);
        assert_eq!(p.port_read(0x3FF, 1, 0).0, 0x5A);
        // PIC mask round trip (Linux's probe).
        p.port_write(0xA1, 1, 0xFF, 0);
        p.port_write(0x21, 1, 0xFB, 0);
        assert_eq!(p.port_read(0x21, 1, 0).0, 0xFB);
        // Nothing at 0x2F8 (COM2): all ones, at every size.
        assert_eq!(p.port_read(0x2F8, 1, 0).0, 0xFF);
        assert_eq!(p.port_read(0x2F8, 4, 0).0, u32::MAX);
        // PCI: no devices.
        p.port_write(0xCF8, 4, 0x8000_0000, 0);
        assert_eq!(p.port_read(0xCF8, 4, 0).0, 0x8000_0000);
        assert_eq!(p.port_read(0xCFC, 4, 0).0, u32::MAX);
        // The debug-exit port and POST codes.
        assert_eq!(p.port_write(0xF4, 1, 3, 0).0, PortEffect::DebugExit(3));
        assert_eq!(p.port_write(0x80, 1, 0x55, 0).0, PortEffect::None);
        // Reset through the keyboard controller.
        assert_eq!(p.port_write(0x64, 1, 0xFE, 0).0, PortEffect::Reset);
        // Soft-off: SLP_TYP 5 | SLP_EN.
        assert_eq!(
            p.port_write(0x604, 2, (5 << 10) | (1 << 13), 0).0,
            PortEffect::PowerOff
        );
    }

    #[test]
    fn console_lines_come_out_of_port_writes() {
        let mut p = PlatformDevices::new(pc()).unwrap();
        for b in b"hi" {
            assert_eq!(p.port_write(0x3F8, 1, *b as u32, 0).0, PortEffect::None);
        }
        assert_eq!(
            p.port_write(0x3F8, 1, b'\n' as u32, 0).0,
            PortEffect::Console("hi".into())
        );
    }

    #[test]
    fn uart_receive_interrupt_reaches_the_ioapic() {
        let mut p = PlatformDevices::new(pc()).unwrap();
        // I/O APIC pin 4: vector 0x24, edge, physical destination 1, unmasked.
        p.ioapic_write(0, 4, 0x10 + 2 * 4);
        p.ioapic_write(0x10, 4, 0x24);
        p.ioapic_write(0, 4, 0x10 + 2 * 4 + 1);
        p.ioapic_write(0x10, 4, 1 << 24);
        // UART: OUT2 (IRQ gate) and receive interrupts on.
        p.port_write(0x3FC, 1, 0x08, 0);
        p.port_write(0x3F9, 1, 0x01, 0);
        let (accepted, delivery) = p.push_input(b'x');
        assert!(accepted);
        let delivery = delivery.expect("receive interrupt delivered");
        assert_eq!((delivery.vector, delivery.destination), (0x24, 1));
        assert_eq!(p.port_read(0x3F8, 1, 0).0, b'x' as u32);
    }

    #[test]
    fn pit_channel_0_interrupts_arrive_at_pin_2() {
        let mut p = PlatformDevices::new(pc()).unwrap();
        // I/O APIC pin 2: vector 0x30, edge, physical destination 0, unmasked.
        p.ioapic_write(0, 4, 0x10 + 2 * 2);
        p.ioapic_write(0x10, 4, 0x30);
        assert_eq!(p.poll_timers(0), None);
        assert_eq!(p.next_timer_deadline(0), None);
        // Channel 0, LSB then MSB, mode 2 (rate generator), 1193 ticks ≈ 1 ms.
        p.port_write(0x43, 1, 0x34, 0);
        p.port_write(0x40, 1, 1193 & 0xFF, 0);
        p.port_write(0x40, 1, 1193 >> 8, 0);
        let deadline = p.next_timer_deadline(0).expect("channel 0 armed");
        assert!((999_000..=1_001_000).contains(&deadline), "{deadline}");
        assert_eq!(p.poll_timers(deadline / 2), None);
        let delivery = p.poll_timers(deadline + 1).expect("IRQ 0 delivered");
        assert_eq!((delivery.pin, delivery.vector), (PIT_PIN, 0x30));
        // Ten periods late: one interrupt, not ten.
        assert!(p.poll_timers(deadline * 11).is_some());
        assert_eq!(p.poll_timers(deadline * 11 + 1), None);
    }

    #[test]
    fn overlapping_devices_are_refused() {
        let mut config = pc();
        config.debug_exit_port = 0x3F9;
        assert!(matches!(
            PlatformDevices::new(config),
            Err(BusError::Overlap { .. })
        ));
    }

    #[test]
    fn mmio_windows() {
        let p = PlatformDevices::new(pc()).unwrap();
        assert_eq!(
            p.mmio_device(0xFEE0_0300),
            Some((MmioDevice::LocalApic, 0x300))
        );
        assert_eq!(p.mmio_device(0xFEC0_0010), Some((MmioDevice::IoApic, 0x10)));
        assert_eq!(p.mmio_device(0xFED0_0000), None);
    }
}
