//! A fake AMD-Vi unit for the driver's tests: registers that behave as the spec (and, where
//! noted, QEMU 7.2's `amd-iommu`) says, with knobs for slow and broken units. Control writes
//! reach Status's run bits after `delay` Status reads; a Command Tail write (and, unless
//! held, a Command Head read) makes it consume the command buffer from shared memory,
//! checking each command against QEMU 7.2's reserved bits and each invalidated DTE against
//! its DTE masks (a bad one is recorded and logged, as the spec says); events can be
//! injected into the event log, which overflows as the spec says.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::registers::*;
use super::AmdViMemory;
use crate::iommu::RegisterAccess;
use crate::slat::ADDRESS_MASK;

/// QEMU 7.2's EFR: PREFETCH, PPR, GT, IA, GA, HE, GATS 10b, HATS 10b (6 levels).
pub const QEMU_EFR: u64 = 0x29d3;

/// QEMU 7.2's reserved DTE bits (`AMDVI_DTE_{LOWER,MIDDLE,UPPER}_QUAD_RESERVED`, qword 3
/// entirely): note bit 72, which is bit 8 of the domain ID.
const QEMU_DTE_RESERVED: [u64; 4] = [0x8030_0000_0000_00fc, 0x100, 0x08f0_0000_0000_0000, !0];

/// Memory the driver writes tables and commands into and the fake reads them from, with a
/// record of the qword writes (device table entries, the completion qword) in order.
#[derive(Clone, Debug, Default)]
pub struct SharedMemory(pub Rc<RefCell<Memory>>);

#[derive(Debug, Default)]
pub struct Memory {
    pub qwords: BTreeMap<u64, u64>,
    /// Every `write_qword`, in order.
    pub writes: Vec<(u64, u64)>,
}

impl SharedMemory {
    pub fn qword(&self, address: u64) -> u64 {
        self.0.borrow().qwords.get(&address).copied().unwrap_or(0)
    }

    fn store(&self, address: u64, value: u64) {
        self.0.borrow_mut().qwords.insert(address, value);
    }

    /// The writes recorded since the last call.
    pub fn take_writes(&self) -> Vec<(u64, u64)> {
        core::mem::take(&mut self.0.borrow_mut().writes)
    }
}

impl AmdViMemory for SharedMemory {
    fn write_command(&mut self, address: u64, command: [u64; 2]) {
        self.store(address, command[0]);
        self.store(address + 8, command[1]);
    }

    fn write_qword(&mut self, address: u64, value: u64) {
        self.store(address, value);
        self.0.borrow_mut().writes.push((address, value));
    }

    fn read_qword(&self, address: u64) -> u64 {
        self.qword(address)
    }
}

#[derive(Debug)]
pub struct FakeUnit {
    pub efr: u64,
    pub control: u64,
    pub status: u64,
    /// Status reads before a Control change shows in the run bits.
    pub delay: u32,
    /// Status bits this unit never sets (a broken unit).
    pub never_sets: u64,
    /// Whether the command buffer is not consumed (a stalled unit).
    pub hold_commands: bool,
    pub device_table: u64,
    pub command_buffer: u64,
    pub event_log: u64,
    /// The command head as the unit keeps it, and as its register reads (QEMU 7.2 reads the
    /// ring size after the last slot).
    pub command_head: u64,
    pub command_head_register: u64,
    pub command_tail: u64,
    pub event_head: u64,
    pub event_tail: u64,
    /// Every register write, in order.
    pub writes: Vec<(u32, u64)>,
    /// Commands performed, completion waits excluded.
    pub performed: Vec<[u64; 2]>,
    /// Commands refused for reserved bits or an unknown opcode.
    pub rejected: Vec<[u64; 2]>,
    /// Requester IDs whose DTE failed QEMU's reserved-bit check when invalidated.
    pub illegal_entries: Vec<u16>,
    pub memory: SharedMemory,
    pending: Option<(u64, u32)>,
}

impl FakeUnit {
    /// QEMU 7.2's `amd-iommu`.
    pub fn qemu() -> FakeUnit {
        FakeUnit {
            efr: QEMU_EFR,
            control: 0,
            status: 0,
            delay: 2,
            never_sets: 0,
            hold_commands: false,
            device_table: 0,
            command_buffer: 0,
            event_log: 0,
            command_head: 0,
            command_head_register: 0,
            command_tail: 0,
            event_head: 0,
            event_tail: 0,
            writes: Vec::new(),
            performed: Vec::new(),
            rejected: Vec::new(),
            illegal_entries: Vec::new(),
            memory: SharedMemory::default(),
            pending: None,
        }
    }

    fn ring_bytes(base: u64) -> u64 {
        (1u64 << ((base >> LENGTH_SHIFT) & 0xf)) * 16
    }

    fn running(&self, bit: u64) -> bool {
        self.status & bit != 0
    }

    fn settle(&mut self) {
        if let Some((run, reads)) = self.pending {
            if reads == 0 {
                let run_bits = status::CMD_BUF_RUN | status::EVENT_LOG_RUN;
                self.status = (self.status & !run_bits) | (run & !self.never_sets);
                self.pending = None;
            } else {
                self.pending = Some((run, reads - 1));
            }
        }
    }

    fn write_control(&mut self, value: u64) {
        self.control = value;
        let enabled = value & control::IOMMU_EN != 0;
        let mut run = 0;
        if enabled && value & control::CMD_BUF_EN != 0 {
            run |= status::CMD_BUF_RUN;
        }
        // The log runs only while no overflow is pending (§2.5).
        if enabled
            && value & control::EVENT_LOG_EN != 0
            && self.status & status::EVENT_OVERFLOW == 0
        {
            run |= status::EVENT_LOG_RUN;
        }
        self.pending = Some((run, self.delay));
    }

    /// Records an event as the unit would; false if logging is off or the log is full (then
    /// EventOverflow is set and logging stops).
    pub fn inject_event(&mut self, entry: [u64; 2]) -> bool {
        self.settle();
        if !self.running(status::EVENT_LOG_RUN) || self.status & status::EVENT_OVERFLOW != 0 {
            return false;
        }
        let size = Self::ring_bytes(self.event_log);
        let next = (self.event_tail + 16) % size;
        if next == self.event_head {
            self.status |= status::EVENT_OVERFLOW;
            self.status &= !status::EVENT_LOG_RUN;
            return false;
        }
        let address = (self.event_log & ADDRESS_MASK) + self.event_tail;
        self.memory.store(address, entry[0]);
        self.memory.store(address + 8, entry[1]);
        self.event_tail = next;
        true
    }

    /// Consumes the command buffer from head to tail.
    fn run_commands(&mut self) {
        self.settle();
        if self.hold_commands || !self.running(status::CMD_BUF_RUN) {
            return;
        }
        let size = Self::ring_bytes(self.command_buffer);
        let base = self.command_buffer & ADDRESS_MASK;
        while self.command_head != self.command_tail {
            let address = base + self.command_head;
            let command = [self.memory.qword(address), self.memory.qword(address + 8)];
            self.perform(command, address);
            // QEMU 7.2: the register gets the advanced head before the wrap.
            self.command_head += 16;
            self.command_head_register = self.command_head;
            if self.command_head >= size {
                self.command_head = 0;
            }
        }
    }

    /// One command, checked against QEMU 7.2's reserved bits.
    fn perform(&mut self, [low, high]: [u64; 2], address: u64) {
        let bits = |value: u64, from: u32, to: u32| (value >> from) & ((1 << (to - from + 1)) - 1);
        let ok = match low >> 60 {
            0x1 => bits(low, 52, 59) == 0,
            0x2 | 0x5 => bits(low, 16, 59) == 0 && high == 0,
            0x3 => bits(low, 20, 31) == 0 && bits(low, 48, 59) == 0 && bits(high, 3, 11) == 0,
            0x8 => bits(low, 0, 59) == 0 && high == 0 && self.efr & features::INVALIDATE_ALL != 0,
            _ => false,
        };
        if !ok {
            self.rejected.push([low, high]);
            // ILLEGAL_COMMAND_ERROR with the command's address.
            self.inject_event([0x5 << 60, address]);
            return;
        }
        match low >> 60 {
            0x1 => {
                if low & 1 != 0 {
                    self.memory.store(low & 0x000f_ffff_ffff_fff8, high);
                }
            }
            0x2 => {
                let id = low as u16;
                let entry = (self.device_table & ADDRESS_MASK) + u64::from(id) * 32;
                let words: Vec<u64> = (0..4).map(|w| self.memory.qword(entry + w * 8)).collect();
                let illegal = words
                    .iter()
                    .zip(QEMU_DTE_RESERVED)
                    .any(|(word, reserved)| word & reserved != 0);
                if illegal {
                    self.illegal_entries.push(id);
                    self.inject_event([0x1 << 60 | u64::from(id), entry]);
                }
                self.performed.push([low, high]);
            }
            _ => self.performed.push([low, high]),
        }
    }
}

impl RegisterAccess for FakeUnit {
    fn read32(&mut self, offset: u32) -> u32 {
        self.read64(offset & !7) as u32
    }

    fn write32(&mut self, offset: u32, value: u32) {
        // The driver writes whole registers; a 32-bit write would be a bug in it.
        self.writes.push((offset, u64::from(value) | 0xdead << 48));
    }

    fn read64(&mut self, offset: u32) -> u64 {
        match offset {
            EXTENDED_FEATURES => self.efr,
            CONTROL => self.control,
            DEVICE_TABLE_BASE => self.device_table,
            COMMAND_BUFFER_BASE => self.command_buffer,
            EVENT_LOG_BASE => self.event_log,
            COMMAND_HEAD => {
                self.run_commands();
                self.command_head_register
            }
            COMMAND_TAIL => self.command_tail,
            EVENT_HEAD => self.event_head,
            EVENT_TAIL => self.event_tail,
            STATUS => {
                self.settle();
                self.status
            }
            _ => 0,
        }
    }

    fn write64(&mut self, offset: u32, value: u64) {
        self.writes.push((offset, value));
        match offset {
            CONTROL => {
                self.write_control(value);
                self.run_commands();
            }
            DEVICE_TABLE_BASE => self.device_table = value,
            COMMAND_BUFFER_BASE => self.command_buffer = value,
            EVENT_LOG_BASE => self.event_log = value,
            COMMAND_HEAD => {
                self.command_head = value & POINTER_MASK;
                self.command_head_register = self.command_head;
            }
            COMMAND_TAIL => {
                self.command_tail = value & POINTER_MASK;
                self.run_commands();
            }
            EVENT_HEAD => self.event_head = value & POINTER_MASK,
            EVENT_TAIL => self.event_tail = value & POINTER_MASK,
            STATUS => self.status &= !(value & status::CLEAR),
            _ => {}
        }
    }
}
