//! A fake physical function for the tests: an NVMe controller's configuration space held in
//! an array, and its BAR 0 memory, both logging every write.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::super::physical::{BarMemory, FunctionConfig};
use super::super::PassthroughFunction;
use crate::pci::{Bar, BarKind};

/// Where the host firmware put BAR 0 (64-bit, 16 KiB) and BAR 4 (32-bit prefetchable,
/// 8 KiB).
pub const BAR0_HOST: u64 = 0x40_0000_0000;
pub const BAR0_SIZE: u64 = 0x4000;
pub const BAR4_HOST: u64 = 0xFEB0_0000;
pub const BAR4_SIZE: u64 = 0x2000;
/// The capabilities: PM, MSI (64-bit, per-vector masking, 4 vectors capable), a VPD
/// capability to hide (at `VENDOR`), MSI-X (65 entries, table at BAR 0 + 0x2000), PCI
/// Express v2.
pub const PM: u16 = 0x40;
pub const MSI: u16 = 0x50;
pub const VENDOR: u16 = 0x70;
pub const MSIX: u16 = 0x80;
pub const EXPRESS: u16 = 0xA0;
pub const TABLE: u64 = 0x2000;
pub const ENTRIES: u16 = 65;
/// The physical command register as the host firmware left it: I/O, memory, bus master,
/// parity error response and SERR# enable.
pub const HOST_COMMAND: u32 = 0x0147;

/// The device's state and what was written to it.
pub struct FakeDevice {
    pub dwords: [u32; 1024],
    /// Writable bits of each BAR register (the rest are read-only).
    bar_writable: [u32; 6],
    /// Every configuration write: offset, value, the dword before.
    pub config_log: Vec<(u16, u32, u32)>,
    /// BAR 0's bytes.
    pub memory: Vec<u8>,
    /// Every memory write: host-physical address, size, value, memory decoding on.
    pub memory_log: Vec<(u64, u8, u64, bool)>,
}

/// The shared device: the model holds two handles, the test a third.
pub type Shared = Arc<Locked>;

/// The fake device behind a lock: the models' handles must be `Send`, as the firmware's are.
pub struct Locked(std::sync::Mutex<FakeDevice>);

impl Locked {
    /// The device, to read.
    pub fn borrow(&self) -> std::sync::MutexGuard<'_, FakeDevice> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device, to change.
    pub fn borrow_mut(&self) -> std::sync::MutexGuard<'_, FakeDevice> {
        self.borrow()
    }
}

impl FakeDevice {
    /// An NVMe controller with its MSI-X PBA at `pba` in BAR 0.
    pub fn nvme(pba: u32) -> FakeDevice {
        let mut d = [0u32; 1024];
        d[0] = 0x0953_8086;
        d[1] = 0x0018 << 16 | HOST_COMMAND;
        d[2] = 0x0108_0201;
        d[3] = 0x0080_0010;
        d[4] = BAR0_HOST as u32 | 0b100;
        d[5] = (BAR0_HOST >> 32) as u32;
        d[6] = 0xE001;
        d[8] = BAR4_HOST as u32 | 0b1000;
        d[0x2C / 4] = 0x370E_8086;
        d[0x34 / 4] = PM as u32;
        d[0x3C / 4] = 0x0000_010B;
        let cap = |id: u32, next: u16, upper: u32| upper << 16 | u32::from(next) << 8 | id;
        d[usize::from(PM / 4)] = cap(0x01, MSI, 0x0003);
        d[usize::from(PM / 4) + 1] = 0x0000_0008;
        d[usize::from(MSI / 4)] = cap(0x05, VENDOR, 0x0184);
        d[usize::from(VENDOR / 4)] = cap(0x03, MSIX, 0x0010);
        d[usize::from(VENDOR / 4) + 1] = 0xDEAD_BEEF;
        d[usize::from(MSIX / 4)] = cap(0x11, EXPRESS, u32::from(ENTRIES - 1));
        d[usize::from(MSIX / 4) + 1] = TABLE as u32;
        d[usize::from(MSIX / 4) + 2] = pba;
        d[usize::from(EXPRESS / 4)] = cap(0x10, 0, 0x0002);
        d[usize::from(EXPRESS / 4) + 2] = 0x0000_2810;
        // Extended capabilities (AER, then serial number) the guest must not see.
        d[0x100 / 4] = 0x1401_0001;
        d[0x140 / 4] = 0x0001_0003;
        FakeDevice {
            dwords: d,
            bar_writable: [
                !(BAR0_SIZE as u32 - 1) & !0xF,
                u32::MAX,
                0xFF00,
                0,
                !(BAR4_SIZE as u32 - 1) & !0xF,
                0,
            ],
            config_log: Vec::new(),
            memory: vec![0; BAR0_SIZE as usize],
            memory_log: Vec::new(),
        }
    }

    /// The dword at `offset`.
    pub fn dword(&self, offset: u16) -> u32 {
        self.dwords[usize::from(offset / 4)]
    }

    /// The dword at `offset` of BAR 0.
    pub fn memory_dword(&self, offset: u64) -> u32 {
        let at = offset as usize;
        u32::from_le_bytes(self.memory[at..at + 4].try_into().unwrap())
    }

    fn decoding(&self) -> bool {
        self.dwords[1] & 2 != 0
    }
}

/// The enumeration's records of the fake's BARs.
pub fn bars() -> Vec<Bar> {
    vec![
        Bar {
            index: 0,
            kind: BarKind::Memory64,
            prefetchable: false,
            base: BAR0_HOST,
            size: BAR0_SIZE,
        },
        Bar {
            index: 2,
            kind: BarKind::Io,
            prefetchable: false,
            base: 0xE000,
            size: 0x100,
        },
        Bar {
            index: 4,
            kind: BarKind::Memory32,
            prefetchable: true,
            base: BAR4_HOST,
            size: BAR4_SIZE,
        },
    ]
}

struct Config(Shared);

impl FunctionConfig for Config {
    fn read32(&mut self, offset: u16) -> u32 {
        assert!(
            offset.is_multiple_of(4) && offset < 0x1000,
            "read at {offset:#x}"
        );
        self.0.borrow().dword(offset)
    }

    fn write32(&mut self, offset: u16, value: u32) {
        assert!(
            offset.is_multiple_of(4) && offset < 0x1000,
            "write at {offset:#x}"
        );
        let mut d = self.0.borrow_mut();
        let index = usize::from(offset / 4);
        let before = d.dwords[index];
        d.config_log.push((offset, value, before));
        d.dwords[index] = match index {
            // The status half is write-one-to-clear.
            1 => before & !(value & 0xFFFF_0000) & 0xFFFF_0000 | value & 0xFFFF,
            4..=9 => before & !d.bar_writable[index - 4] | value & d.bar_writable[index - 4],
            _ => value,
        };
    }
}

struct Memory(Shared);

impl BarMemory for Memory {
    fn read(&mut self, host_physical: u64, size: u8) -> u64 {
        let d = self.0.borrow();
        let at = (host_physical - BAR0_HOST) as usize;
        let mut bytes = [0u8; 8];
        bytes[..usize::from(size)].copy_from_slice(&d.memory[at..at + usize::from(size)]);
        u64::from_le_bytes(bytes)
    }

    fn write(&mut self, host_physical: u64, size: u8, value: u64) {
        let mut d = self.0.borrow_mut();
        let decoding = d.decoding();
        d.memory_log.push((host_physical, size, value, decoding));
        let at = (host_physical - BAR0_HOST) as usize;
        d.memory[at..at + usize::from(size)]
            .copy_from_slice(&value.to_le_bytes()[..usize::from(size)]);
    }
}

/// The model of `device`, and the handle the test keeps; the logs start empty after
/// creation.
pub fn passthrough(device: FakeDevice) -> (PassthroughFunction, Shared) {
    let shared = Arc::new(Locked(std::sync::Mutex::new(device)));
    let function = PassthroughFunction::new(
        Box::new(Config(shared.clone())),
        &bars(),
        Box::new(Memory(shared.clone())),
    )
    .expect("the fake NVMe controller is accepted");
    shared.borrow_mut().config_log.clear();
    shared.borrow_mut().memory_log.clear();
    (function, shared)
}

/// The model of an NVMe controller whose PBA is at BAR 0 + 0x3000 (outside the trap).
pub fn nvme() -> (PassthroughFunction, Shared) {
    passthrough(FakeDevice::nvme(0x3000))
}

/// A new fake behind a plain handle, for creation tests.
pub fn shared(device: FakeDevice) -> Shared {
    Arc::new(Locked(std::sync::Mutex::new(device)))
}

/// The model of `shared` with `bars`, or why not.
pub fn create(
    shared: &Shared,
    bars: &[Bar],
) -> Result<PassthroughFunction, super::super::PassthroughError> {
    PassthroughFunction::new(
        Box::new(Config(shared.clone())),
        bars,
        Box::new(Memory(shared.clone())),
    )
}
