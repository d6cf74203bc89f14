//! One partition's shared virtual platform: the PC devices every vCPU of the partition
//! reaches through the port and MMIO buses, and the wiring of their interrupt lines to the
//! I/O APIC.
//!
//! The addresses come from the caller's [`PlatformConfig`], filled in from the same values
//! the guest's ACPI tables describe, so the tables and the devices cannot disagree. Every
//! device is reached through one interface ([`Device`]): the buses map a port or an address
//! to a device's window and an offset from its base, and an access hands back [`Effects`]
//! for the exit handler to apply.

use alloc::string::String;
use alloc::vec::Vec;

use super::bus::{Bus, BusError, PortIndex};
use crate::devices::acpi_pm::AcpiPm;
use crate::devices::cmos_rtc::CmosRtc;
use crate::devices::device::{DebugExitPort, Device, DeviceId, Effect, Effects, Register};
use crate::devices::ioapic::{IoApic, IoApicDelivery};
use crate::devices::pci_absent::PciAbsent;
use crate::devices::pci_config::{self, PciConfig};
use crate::devices::pci_host::{MappingAccess, VirtualHostBridge, ECAM_SIZE};
use crate::devices::pic8259::{self, Pic8259Pair};
use crate::devices::pit8254::{self, Pit8254};
use crate::devices::reset::{self, ResetControl};
use crate::devices::uart16550::Uart16550;
use crate::devices::virtio::balloon::{BalloonConfig, VirtioBalloon};
use crate::devices::virtio::mem::{MemConfig, VirtioMem};
use crate::devices::virtio::mmio::MMIO_WINDOW;
use crate::devices::virtio::net::{NetConfig, VirtioNet};

/// The most network cards one partition's platform has (the layout's limit).
pub const MAX_NICS: usize = 4;

/// The most virtio-mem devices one partition's platform has (one a vnode is the usual use).
pub const MAX_VIRTIO_MEM: usize = 4;

/// One virtio-mmio memory device: its window's base, its I/O APIC pin (level-triggered) and
/// the region it manages (which is guest RAM when plugged, never part of the MMIO bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemWindow {
    pub base: u64,
    pub pin: u8,
    pub config: MemConfig,
}

/// One virtio-mmio network card: its window's base, its I/O APIC pin (level-triggered) and
/// its MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicWindow {
    pub base: u64,
    pub pin: u8,
    pub mac: [u8; 6],
}

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
    /// The network cards, in the layout's order (`DeviceId::VirtioNet(n)` is entry `n`);
    /// the entries after the last card are `None`.
    pub nics: [Option<NicWindow>; MAX_NICS],
    /// The memory devices (`DeviceId::VirtioMem(n)` is entry `n`); the entries after the
    /// last device are `None`.
    pub virtio_mem: [Option<MemWindow>; MAX_VIRTIO_MEM],
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
            nics: [None; MAX_NICS],
            virtio_mem: [None; MAX_VIRTIO_MEM],
        }
    }
}

/// One window of a device on a bus: the device, which of its windows, and the window's base
/// (offsets are from it: a window may be claimed in pieces around another device's port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The device.
    pub device: DeviceId,
    /// Which of its windows.
    pub window: u8,
    base: u64,
}

impl Slot {
    /// The register an access of `size` bytes at `address` (inside this window) reaches.
    fn register(&self, address: u64, size: u8) -> Register {
        Register::new(self.window, address - self.base, size)
    }
}

/// Where a guest-physical MMIO address lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioTarget {
    /// The device (the local APIC is each vCPU's own: the caller picks it).
    pub device: DeviceId,
    /// Which of its windows.
    pub window: u8,
    /// Bytes from the window's base.
    pub offset: u64,
    /// Where the window ends, in bytes from its base: an access must end by then.
    pub end: u64,
}

impl MmioTarget {
    /// The register an access of `size` bytes here reaches.
    pub fn register(&self, size: u8) -> Register {
        Register::new(self.window, self.offset, size)
    }
}

/// The I/O APIC pin the PIT's IRQ 0 arrives at (ISA IRQ 0 → GSI 2, as the guest MADT's
/// interrupt source override says and PCs wire it).
pub const PIT_PIN: u8 = 2;

/// Bytes of the I/O APIC's MMIO window and of the local APIC page.
const IOAPIC_WINDOW: u64 = 0x1000;
const LAPIC_PAGE: u64 = 0x1000;
/// The ACPI PM block: event (4), control (2), pad (2), timer (4).
const PM_BLOCK_PORTS: u64 = 12;

/// A level-triggered device's interrupt line: its I/O APIC pin and the level the I/O APIC
/// last saw.
#[derive(Clone, Copy, Debug)]
struct Line {
    device: DeviceId,
    pin: u8,
    level: bool,
}

/// The shared devices of one partition.
pub struct PlatformDevices {
    config: PlatformConfig,
    ports: Bus<Slot>,
    /// `ports`, indexed: the lookup of every port exit.
    port_index: PortIndex,
    mmio: Bus<Slot>,
    pub uart: Uart16550,
    pub pit: Pit8254,
    pub rtc: CmosRtc,
    pub pic: Pic8259Pair,
    pub pm: AcpiPm,
    pub reset: ResetControl,
    /// PCI configuration: an empty bus, or the virtual host bridge of the partition's
    /// passed-through functions ([`PlatformDevices::attach_bridge`]).
    pub pci: PciConfig,
    pub ioapic: IoApic,
    debug_exit: DebugExitPort,
    /// The memory balloon, with Dynamic Memory.
    pub balloon: Option<VirtioBalloon>,
    /// The network cards, in the layout's order.
    pub nics: Vec<VirtioNet>,
    /// The memory devices, in the configuration's order.
    pub mem: Vec<VirtioMem>,
    /// Every level-triggered device's line.
    lines: Vec<Line>,
}

/// Claims `[start, start + length)` for `device`'s `window`, based at `base`.
fn claim(
    bus: &mut Bus<Slot>,
    start: u64,
    length: u64,
    device: DeviceId,
    window: u8,
    base: u64,
) -> Result<(), BusError<DeviceId>> {
    let slot = Slot {
        device,
        window,
        base,
    };
    bus.claim(start, length, slot).map_err(|e| match e {
        BusError::BadRange { start, length } => BusError::BadRange { start, length },
        BusError::Overlap {
            start,
            length,
            device,
            owner,
        } => BusError::Overlap {
            start,
            length,
            device: device.device,
            owner: owner.device,
        },
    })
}

impl PlatformDevices {
    /// The devices of a PC guest at the addresses `config` gives; refuses overlapping ones.
    pub fn new(config: PlatformConfig) -> Result<Self, BusError<DeviceId>> {
        let mut ports = Bus::new();
        let (pm, uart, debug) = (
            u64::from(config.pm_port),
            u64::from(config.uart_port),
            u64::from(config.debug_exit_port),
        );
        // (start, length, device, window, window base)
        for (start, length, device, window, base) in [
            (0x20, 2, DeviceId::Pic, pic8259::MASTER, 0x20),
            (0xA0, 2, DeviceId::Pic, pic8259::SLAVE, 0xA0),
            (0x4D0, 2, DeviceId::Pic, pic8259::ELCR, 0x4D0),
            (0x40, 4, DeviceId::Pit, pit8254::COUNTERS, 0x40),
            (0x61, 1, DeviceId::Pit, pit8254::PORT61, 0x61),
            (0x60, 1, DeviceId::ResetControl, reset::KBC_DATA, 0x60),
            (
                0x64,
                1,
                DeviceId::ResetControl,
                reset::KBC_STATUS_COMMAND,
                0x64,
            ),
            (0x70, 2, DeviceId::Rtc, 0, 0x70),
            (pm, PM_BLOCK_PORTS, DeviceId::Pm, 0, pm),
            // 0xCF8 is PCI's 32-bit address register, except that a byte at 0xCF9 is the
            // reset control register (as on Intel chipsets).
            (
                0xCF8,
                1,
                DeviceId::PciConfig,
                pci_config::CONFIG_ADDRESS,
                0xCF8,
            ),
            (
                0xCF9,
                1,
                DeviceId::ResetControl,
                reset::RESET_CONTROL,
                0xCF9,
            ),
            (
                0xCFA,
                2,
                DeviceId::PciConfig,
                pci_config::CONFIG_ADDRESS,
                0xCF8,
            ),
            (
                0xCFC,
                4,
                DeviceId::PciConfig,
                pci_config::CONFIG_DATA,
                0xCFC,
            ),
            (uart, 8, DeviceId::Uart, 0, uart),
            (debug, 1, DeviceId::DebugExit, 0, debug),
        ] {
            claim(&mut ports, start, length, device, window, base)?;
        }
        let mut mmio = Bus::new();
        let (lapic, ioapic) = (config.lapic_base, config.ioapic_base);
        claim(&mut mmio, lapic, LAPIC_PAGE, DeviceId::LocalApic, 0, lapic)?;
        claim(
            &mut mmio,
            ioapic,
            IOAPIC_WINDOW,
            DeviceId::IoApic,
            0,
            ioapic,
        )?;
        let mut lines = alloc::vec![Line {
            device: DeviceId::Uart,
            pin: config.uart_irq,
            level: false,
        }];
        if let Some((base, pin)) = config.virtio_balloon {
            claim(
                &mut mmio,
                base,
                MMIO_WINDOW,
                DeviceId::VirtioBalloon,
                0,
                base,
            )?;
            lines.push(Line {
                device: DeviceId::VirtioBalloon,
                pin,
                level: false,
            });
        }
        let mut nics = Vec::new();
        for (index, nic) in config.nics.iter().enumerate() {
            let Some(nic) = nic else { break };
            // MAX_NICS is far below 256.
            let id = DeviceId::VirtioNet(index as u8);
            claim(&mut mmio, nic.base, MMIO_WINDOW, id, 0, nic.base)?;
            lines.push(Line {
                device: id,
                pin: nic.pin,
                level: false,
            });
            nics.push(VirtioNet::new(NetConfig {
                mac: nic.mac,
                index: index as u8,
            }));
        }
        let mut mem = Vec::new();
        for (index, window) in config.virtio_mem.iter().enumerate() {
            let Some(window) = window else { break };
            // MAX_VIRTIO_MEM is far below 256.
            let id = DeviceId::VirtioMem(index as u8);
            claim(&mut mmio, window.base, MMIO_WINDOW, id, 0, window.base)?;
            lines.push(Line {
                device: id,
                pin: window.pin,
                level: false,
            });
            mem.push(VirtioMem::new(window.config).with_index(index as u8));
        }
        Ok(PlatformDevices {
            config,
            port_index: PortIndex::new(&ports),
            ports,
            mmio,
            uart: Uart16550::new(),
            pit: Pit8254::new(config.tsc_hz),
            rtc: CmosRtc::new(config.tsc_hz, config.rtc_epoch_seconds),
            pic: Pic8259Pair::new(),
            pm: AcpiPm::new(config.tsc_hz),
            reset: ResetControl::new(),
            pci: PciConfig::Absent(PciAbsent::new()),
            ioapic: IoApic::new(config.ioapic_id),
            debug_exit: DebugExitPort,
            // DEFLATE_ON_OOM: a guest about to run out of memory takes pages back from its
            // balloon (from its vnode's node) rather than kill a process; the policy then
            // sees its demand.
            balloon: config.virtio_balloon.map(|_| {
                VirtioBalloon::new(BalloonConfig {
                    deflate_on_oom: true,
                })
            }),
            nics,
            mem,
            lines,
        })
    }

    /// Puts the partition's passed-through functions behind `bridge`, its ECAM window at
    /// guest-physical `ecam_base`; refuses a window that overlaps another device's. The BAR
    /// pages the bridge keeps trapped (MSI-X tables) move with the guest's BARs, so they are
    /// found at each access ([`PlatformDevices::mmio_device`]), not claimed.
    pub fn attach_bridge(
        &mut self,
        bridge: VirtualHostBridge,
        ecam_base: u64,
    ) -> Result<(), BusError<DeviceId>> {
        let id = DeviceId::PciConfig;
        claim(
            &mut self.mmio,
            ecam_base,
            ECAM_SIZE,
            id,
            pci_config::ECAM,
            ecam_base,
        )?;
        self.pci = PciConfig::Bridge(alloc::boxed::Box::new(bridge));
        Ok(())
    }

    /// The trapped BAR piece of a passed-through function at `gpa`, where the guest has
    /// decoding on: the SLAT leaves it unmapped, so its accesses exit.
    fn trapped_target(&self, gpa: u64) -> Option<MmioTarget> {
        let PciConfig::Bridge(bridge) = &self.pci else {
            return None;
        };
        let mappings = bridge.mappings();
        let piece = mappings.iter().flat_map(|m| m.mappings.iter()).find(|p| {
            p.access == MappingAccess::Trapped && gpa.wrapping_sub(p.guest_physical) < p.size
        })?;
        Some(MmioTarget {
            device: DeviceId::PciConfig,
            window: pci_config::TRAPPED,
            offset: gpa,
            end: piece.guest_physical.saturating_add(piece.size),
        })
    }

    /// The configuration the platform was built from.
    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    /// The one place a [`DeviceId`] becomes its model. The local APIC is not here: it is
    /// each vCPU's own.
    fn device(&mut self, id: DeviceId) -> Option<&mut dyn Device> {
        Some(match id {
            DeviceId::Pic => &mut self.pic,
            DeviceId::Pit => &mut self.pit,
            DeviceId::ResetControl => &mut self.reset,
            DeviceId::Rtc => &mut self.rtc,
            DeviceId::Pm => &mut self.pm,
            DeviceId::PciConfig => &mut self.pci,
            DeviceId::Uart => &mut self.uart,
            DeviceId::DebugExit => &mut self.debug_exit,
            DeviceId::IoApic => &mut self.ioapic,
            DeviceId::VirtioBalloon => self.balloon.as_mut()?,
            DeviceId::VirtioNet(index) => self.nics.get_mut(usize::from(index))?,
            DeviceId::VirtioMem(index) => self.mem.get_mut(usize::from(index))?,
            DeviceId::LocalApic => return None,
        })
    }

    /// The MMIO device window at guest-physical `gpa`, and the offset into it.
    pub fn mmio_device(&self, gpa: u64) -> Option<MmioTarget> {
        let Some(claim) = self.mmio.claim_at(gpa) else {
            return self.trapped_target(gpa);
        };
        let slot = claim.device;
        Some(MmioTarget {
            device: slot.device,
            window: slot.window,
            offset: gpa - slot.base,
            end: (claim.start + claim.length).wrapping_sub(slot.base),
        })
    }

    /// A guest read of an MMIO device of the platform (not the local APIC: see
    /// [`PlatformDevices::device`]); nothing there reads 0.
    pub fn mmio_read(&mut self, target: MmioTarget, size: u8, now: u64) -> (u64, Effects) {
        let at = target.register(size);
        let value = self
            .device(target.device)
            .map_or(0, |device| device.read(at, now));
        (value, self.after_access(target.device, Effect::None))
    }

    /// A guest write to an MMIO device of the platform.
    pub fn mmio_write(&mut self, target: MmioTarget, size: u8, value: u64, now: u64) -> Effects {
        let at = target.register(size);
        let effect = self
            .device(target.device)
            .map_or(Effect::None, |device| device.write(at, value, now));
        self.after_access(target.device, effect)
    }

    /// A guest `IN` of `size` bytes (1, 2 or 4) from `port`. Ports nobody claims read all
    /// ones, as an empty ISA bus floats high.
    ///
    /// Inlined so that the common probe of a port nobody claims (port 0x80, an absent COM
    /// port) costs its caller an index lookup, with no effects to build or apply.
    #[inline(always)]
    pub fn port_read(&mut self, port: u16, size: u8, now: u64) -> (u32, Effects) {
        let size = normalise(size);
        let slot = self.port_slot(port);
        if slot.is_none() && size == 1 {
            // Field by field: copying the constant whole is a block copy.
            let none = Effects {
                device: None,
                interrupt: None,
            };
            return (0xFF, none);
        }
        self.claimed_port_read(slot, port, size, now)
    }

    /// [`PlatformDevices::port_read`] of a claimed port, or of several bytes.
    #[inline(never)]
    fn claimed_port_read(
        &mut self,
        slot: Option<Slot>,
        port: u16,
        size: u8,
        now: u64,
    ) -> (u32, Effects) {
        let value = match slot {
            Some(slot) if !self.byte_wide(slot.device) => {
                let at = slot.register(u64::from(port), size);
                self.device(slot.device).map_or(0, |d| d.read(at, now)) as u32
            }
            _ => {
                // Byte-wide devices: a wider access reads consecutive ports, as the ISA bus
                // splits it.
                let mut value = 0u32;
                for i in 0..size {
                    let byte = port.wrapping_add(u16::from(i));
                    let read = match self.port_slot(byte) {
                        Some(slot) => {
                            let at = slot.register(u64::from(byte), 1);
                            self.device(slot.device).map_or(0xFF, |d| d.read(at, now)) as u8
                        }
                        None => 0xFF,
                    };
                    value |= u32::from(read) << (8 * i);
                }
                value
            }
        };
        let effects = match slot {
            Some(slot) => self.after_access(slot.device, Effect::None),
            None => Effects::NONE,
        };
        (value & mask(size), effects)
    }

    /// A guest `OUT` of `size` bytes of `value` to `port`; unclaimed ports ignore it.
    pub fn port_write(&mut self, port: u16, size: u8, value: u32, now: u64) -> Effects {
        let size = normalise(size);
        let value = value & mask(size);
        let slot = self.port_slot(port);
        let effect = match slot {
            Some(slot) if !self.byte_wide(slot.device) => {
                let at = slot.register(u64::from(port), size);
                self.device(slot.device)
                    .map_or(Effect::None, |d| d.write(at, u64::from(value), now))
            }
            _ => {
                let mut effect = Effect::None;
                for i in 0..size {
                    let byte = port.wrapping_add(u16::from(i));
                    let Some(slot) = self.port_slot(byte) else {
                        continue;
                    };
                    let at = slot.register(u64::from(byte), 1);
                    let part = u64::from(value >> (8 * i)) & 0xFF;
                    let this = self
                        .device(slot.device)
                        .map_or(Effect::None, |d| d.write(at, part, now));
                    if this != Effect::None {
                        effect = this;
                    }
                }
                effect
            }
        };
        match slot {
            Some(slot) => self.after_access(slot.device, effect),
            None => Effects::of(effect),
        }
    }

    #[inline(always)]
    fn port_slot(&self, port: u16) -> Option<Slot> {
        let position = self.port_index.lookup(port)?;
        self.ports.claims().get(position).map(|claim| claim.device)
    }

    fn byte_wide(&mut self, id: DeviceId) -> bool {
        self.device(id).is_some_and(|d| d.byte_registers())
    }

    /// The effects of an access to `device`: its own, then its interrupt line's change.
    fn after_access(&mut self, device: DeviceId, effect: Effect) -> Effects {
        Effects {
            interrupt: self.sync_line(device),
            ..Effects::of(effect)
        }
    }

    /// Hands `device`'s interrupt line level to the I/O APIC, if it changed (after every
    /// access, and whenever the hypervisor changes the device's state: console input, a
    /// balloon completion).
    pub fn sync_line(&mut self, device: DeviceId) -> Option<IoApicDelivery> {
        let index = self.lines.iter().position(|l| l.device == device)?;
        let level = self.device(device)?.interrupt_line()?;
        let line = &mut self.lines[index];
        if line.level == level {
            return None;
        }
        line.level = level;
        let pin = line.pin;
        self.ioapic.set_level(pin, level)
    }

    /// A local APIC's EOI of a level-triggered `vector`: the I/O APIC may deliver again.
    pub fn end_of_interrupt(&mut self, vector: u8) -> Option<IoApicDelivery> {
        self.ioapic.eoi(vector)
    }

    /// A byte typed on the host console for this partition; false when its UART's queue is
    /// full (the byte is dropped and the caller says so).
    pub fn push_input(&mut self, byte: u8) -> (bool, Option<IoApicDelivery>) {
        let accepted = self.uart.push_input(byte);
        (accepted, self.sync_line(DeviceId::Uart))
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
        self.sync_line(DeviceId::VirtioBalloon)
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

    #[test]
    fn an_attached_bridge_answers_its_ecam_window_and_mechanism_one() {
        let mut p = PlatformDevices::new(PlatformConfig::pc(1_000_000_000, 0)).unwrap();
        let bridge = VirtualHostBridge::new(alloc::vec::Vec::new()).unwrap();
        p.attach_bridge(bridge, 0xE000_0000).unwrap();
        let target = p.mmio_device(0xE000_0000).expect("the ECAM window");
        assert_eq!(target.device, DeviceId::PciConfig);
        // Device 0 of bus 0: the host bridge function, 1b36:0008.
        assert_eq!(p.mmio_read(target, 4, 0).0, 0x0008_1b36);
        let absent = p.mmio_device(0xE000_8000).expect("device 1's space");
        assert_eq!(p.mmio_read(absent, 4, 0).0, 0xFFFF_FFFF);
        assert!(p.mmio_device(0xE010_0000).is_none());
        // Mechanism #1 reaches the same function.
        p.port_write(0xCF8, 4, 0x8000_0000, 0);
        assert_eq!(p.port_read(0xCFC, 4, 0).0, 0x0008_1b36);
    }

    /// A guest write to the I/O APIC's window.
    pub(crate) fn ioapic_write(p: &mut PlatformDevices, offset: u64, size: u8, value: u64) {
        let target = MmioTarget {
            device: DeviceId::IoApic,
            window: 0,
            offset,
            end: IOAPIC_WINDOW,
        };
        let _ = p.mmio_write(target, size, value, 0);
    }

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
        assert_eq!(
            p.port_write(0xF4, 1, 3, 0).device,
            Some(Effect::DebugExit(3))
        );
        assert_eq!(p.port_write(0x80, 1, 0x55, 0).device, None);
        // Reset through the keyboard controller.
        assert_eq!(p.port_write(0x64, 1, 0xFE, 0).device, Some(Effect::Reset));
        // Soft-off: SLP_TYP 5 | SLP_EN.
        assert_eq!(
            p.port_write(0x604, 2, (5 << 10) | (1 << 13), 0).device,
            Some(Effect::PowerOff)
        );
    }

    #[test]
    fn console_lines_come_out_of_port_writes() {
        let mut p = PlatformDevices::new(pc()).unwrap();
        for b in b"hi" {
            assert_eq!(p.port_write(0x3F8, 1, *b as u32, 0).device, None);
        }
        assert_eq!(
            p.port_write(0x3F8, 1, b'\n' as u32, 0).device,
            Some(Effect::Console("hi".into()))
        );
    }

    #[test]
    fn uart_receive_interrupt_reaches_the_ioapic() {
        let mut p = PlatformDevices::new(pc()).unwrap();
        // I/O APIC pin 4: vector 0x24, edge, physical destination 1, unmasked.
        ioapic_write(&mut p, 0, 4, 0x10 + 2 * 4);
        ioapic_write(&mut p, 0x10, 4, 0x24);
        ioapic_write(&mut p, 0, 4, 0x10 + 2 * 4 + 1);
        ioapic_write(&mut p, 0x10, 4, 1 << 24);
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
        ioapic_write(&mut p, 0, 4, 0x10 + 2 * 2);
        ioapic_write(&mut p, 0x10, 4, 0x30);
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
    fn virtio_mem_windows_reach_their_devices() {
        let mut config = pc();
        let region = MemConfig {
            addr: 0x1_0000_0000,
            region_size: 0x800_0000,
            block_size: 0x20_0000,
            node_id: 1,
        };
        for (index, base) in [0xFEB0_0000u64, 0xFEB0_0200].into_iter().enumerate() {
            config.virtio_mem[index] = Some(MemWindow {
                base,
                pin: 10 + index as u8,
                config: region,
            });
        }
        let mut p = PlatformDevices::new(config).unwrap();
        assert_eq!(p.mem.len(), 2);
        let target = p.mmio_device(0xFEB0_0208).expect("device 1's window");
        assert_eq!(target.device, DeviceId::VirtioMem(1));
        assert_eq!((target.offset, target.end), (8, MMIO_WINDOW));
        assert_eq!(p.mmio_read(target, 4, 0).0, 24, "DeviceID");
        let target = p.mmio_device(0xFEB0_0070).unwrap();
        assert_eq!(
            p.mmio_write(target, 4, 0, 0).device,
            Some(Effect::DriverReset(DeviceId::VirtioMem(0)))
        );
        // The managed region is RAM when plugged, never an MMIO window.
        assert_eq!(p.mmio_device(region.addr), None);
        // Windows may not overlap.
        config.virtio_mem[1] = config.virtio_mem[1].map(|w| MemWindow {
            base: 0xFEB0_0100,
            ..w
        });
        assert!(matches!(
            PlatformDevices::new(config),
            Err(BusError::Overlap { .. })
        ));
    }

    #[test]
    fn mmio_windows() {
        let p = PlatformDevices::new(pc()).unwrap();
        let at = |device, offset, end| {
            Some(MmioTarget {
                device,
                window: 0,
                offset,
                end,
            })
        };
        assert_eq!(
            p.mmio_device(0xFEE0_0300),
            at(DeviceId::LocalApic, 0x300, 0x1000)
        );
        assert_eq!(
            p.mmio_device(0xFEC0_0010),
            at(DeviceId::IoApic, 0x10, IOAPIC_WINDOW)
        );
        assert_eq!(p.mmio_device(0xFED0_0000), None);
    }
}
