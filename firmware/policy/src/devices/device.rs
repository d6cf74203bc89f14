//! The one interface every device model presents to the port and MMIO buses, and the one
//! [`Effect`] type an access hands back for the exit handler to apply.
//!
//! A device claims one or more windows of the port space or of the guest-physical space
//! (`vmm::platform` registers them, and its buses refuse overlaps). An access reaches the
//! device as a [`Register`]: which of its windows, the offset from that window's base and
//! the width, never an absolute port number or address; so a model does not know where it
//! was placed, and the same model can sit at any address the guest's ACPI tables describe.
//!
//! Adding a device is a model file that implements [`Device`] plus its registration in
//! `PlatformDevices::new` (a field, a `DeviceId`, its windows and its interrupt pin).

use alloc::string::String;

use super::ioapic::delivery::IoApicDelivery;
use super::lapic::icr::Ipi;
use super::pci_host::{InterruptRoute, PciMappings};

/// Where an access lands inside a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register {
    /// Which of the device's windows (in the order the device documents), from 0.
    pub window: u8,
    /// Bytes from the window's base.
    pub offset: u64,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
}

impl Register {
    /// An access of `size` bytes at `offset` into window `window`.
    pub const fn new(window: u8, offset: u64, size: u8) -> Register {
        Register {
            window,
            offset,
            size,
        }
    }

    /// The offset as the 16-bit register index a port device's model takes; an offset past
    /// that names no register (it saturates to 0xFFFF, which no model answers).
    pub fn port_offset(&self) -> u16 {
        u16::try_from(self.offset).unwrap_or(u16::MAX)
    }
}

/// Which device of a partition's platform, for effects that need the hypervisor's edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceId {
    /// The two 8259 PICs and their ELCRs.
    Pic,
    /// The 8254 PIT and its port 0x61 gate.
    Pit,
    /// The 8042's reset line and the 0xCF9 reset control register.
    ResetControl,
    /// The CMOS RTC.
    Rtc,
    /// The ACPI PM block.
    Pm,
    /// PCI configuration mechanism #1, with no devices.
    PciConfig,
    /// COM1.
    Uart,
    /// The debug-exit port.
    DebugExit,
    /// The I/O APIC.
    IoApic,
    /// A vCPU's local APIC.
    LocalApic,
    /// The virtio-mmio memory balloon.
    VirtioBalloon,
    /// The partition's virtio-mmio network card `n` (its `nics[n]` in the layout).
    VirtioNet(u8),
    /// The partition's virtio-mmio memory device `n` (its `virtio_mem[n]` in the platform).
    VirtioMem(u8),
}

/// What an access asks of the hypervisor beyond the device's own state. The exit handler
/// applies it (`vmm::exit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// A finished line of guest console output.
    Console(String),
    /// An I/O APIC message to deliver (a device's interrupt line changed, an EOI let a
    /// level-triggered pin deliver again).
    Interrupt(IoApicDelivery),
    /// An inter-processor interrupt from the accessing vCPU's local APIC.
    Ipi(Ipi),
    /// The accessing vCPU ended the level-triggered interrupt `vector`: the I/O APIC clears
    /// the remote IRR of the pins that carry it.
    EndOfInterrupt(u8),
    /// ACPI soft-off (S5).
    PowerOff,
    /// A reset of the whole guest (keyboard controller, reset control register).
    Reset,
    /// A write to the debug-exit port, with the value written.
    DebugExit(u32),
    /// The device's queues have work only the hypervisor's edge can carry out (moving pages,
    /// copying frames): `Machine::serve_device`.
    QueueWork(DeviceId),
    /// The driver reset the device: what it held must be given back first
    /// (`Machine::serve_device`).
    DriverReset(DeviceId),
    /// A passed-through function's BAR mappings changed (the guest moved a BAR or turned
    /// memory decoding on or off): the SLAT maps each `Direct` piece onto its host address,
    /// leaves each `Trapped` piece unmapped (its MMIO exits go to
    /// `VirtualHostBridge::trapped_read`/`trapped_write`), and unmaps whatever it mapped for
    /// that function before and is not listed; then flushes the guest's TLBs.
    PciMappings(PciMappings),
    /// Passed-through functions' MSI or MSI-X routes changed: for each, the hypervisor
    /// programs the physical message to reach the guest interrupt
    /// (`PassthroughFunction::program_msi`/`program_msix` with a host message of its own), or
    /// masks it when the route has no target.
    PciInterrupts(alloc::vec::Vec<InterruptRoute>),
}

/// One device model, as the buses reach it.
pub trait Device {
    /// A guest read of `at`, at guest TSC `now`: the value (only the low `at.size` bytes
    /// count).
    fn read(&mut self, at: Register, now: u64) -> u64;

    /// A guest write of `value` (its low `at.size` bytes) to `at`, at guest TSC `now`.
    fn write(&mut self, at: Register, value: u64, now: u64) -> Effect;

    /// The level of the device's interrupt line (a level-triggered device), driven onto its
    /// I/O APIC pin after every access; `None` if it has none.
    fn interrupt_line(&self) -> Option<bool> {
        None
    }

    /// Whether the device's registers are bytes: a wider port access is then split into
    /// byte accesses of consecutive ports, as the ISA bus does.
    fn byte_registers(&self) -> bool {
        false
    }
}

/// The port that ends the guest with a status (QEMU's isa-debug-exit convention): every
/// write is a [`Effect::DebugExit`] carrying the value written; reads float high.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugExitPort;

impl Device for DebugExitPort {
    fn read(&mut self, _at: Register, _now: u64) -> u64 {
        u64::MAX
    }

    fn write(&mut self, at: Register, value: u64, _now: u64) -> Effect {
        let mask = match at.size {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => u32::MAX as u64,
        };
        Effect::DebugExit((value & mask) as u32)
    }
}

/// What an access does in all: the device's own effect and the interrupt its line change
/// delivers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The device's effect.
    pub device: Option<Effect>,
    /// The I/O APIC message an interrupt line change produced.
    pub interrupt: Option<IoApicDelivery>,
}

impl Effects {
    /// No effect at all.
    pub const NONE: Effects = Effects {
        device: None,
        interrupt: None,
    };

    /// Whether there is nothing to apply (most accesses).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.device.is_none() && self.interrupt.is_none()
    }

    /// The device's effect alone.
    pub fn of(effect: Effect) -> Effects {
        Effects {
            device: (effect != Effect::None).then_some(effect),
            interrupt: None,
        }
    }
}
