//! The driver of one AMD-Vi IOMMU (AMD IOMMU spec 48882): what its Extended Feature
//! Register says (§3.4.5), bringing it up over the tables the caller allocated (§3.3
//! "IOMMU Initialization", registers §3.4), device table updates (§2.2.2) and the command
//! buffer they need (§2.4 "Commands", §3.4.1 head/tail).
//!
//! # The command buffer
//!
//! A ring of [`RING_ENTRIES`] 16-byte commands. Software writes at the tail and moves the
//! Command Tail register past them; the IOMMU fetches from the head and moves Command Head.
//! Head == tail means empty, so one slot always stays free. Every batch ends with a
//! COMPLETION_WAIT that stores a new sequence number at the layout's completion qword once
//! every earlier command has completed; the driver waits for that store.
//!
//! # Polls
//!
//! Every wait reads its register or memory at most `spin_limit` times (default
//! [`DEFAULT_SPIN_LIMIT`]) and then fails with [`AmdViError::Timeout`] (or, for a ring
//! that stays full, [`AmdViError::QueueFull`]).

use super::command::{
    completion_wait, invalidate_all, invalidate_device_table_entry, invalidate_domain_pages,
    invalidate_interrupt_table,
};
use super::registers::{
    control, features, status, COMMAND_BUFFER_BASE, COMMAND_HEAD, COMMAND_TAIL, CONTROL,
    DEVICE_TABLE_BASE, EVENT_HEAD, EVENT_LOG_BASE, EVENT_TAIL, EXTENDED_FEATURES, LENGTH_SHIFT,
    POINTER_MASK, STATUS,
};
use super::{AmdViError, DeviceTableEntry, BLOCKED_ENTRY};
use crate::iommu::{DomainId, RegisterAccess, SourceId};
use crate::memory::PAGE_SIZE;
use crate::slat::ADDRESS_MASK;

/// Polls before a wait gives up: about a second of uncached MMIO reads, far past the few
/// microseconds a unit takes.
pub const DEFAULT_SPIN_LIMIT: u32 = 1_000_000;

/// Entries in the command buffer and in the event log: 256 × 16 bytes, one 4 KiB page each
/// (ComLen = EventLen = 1000b, the smallest the spec allows).
pub const RING_ENTRIES: u64 = 256;
/// log2 of [`RING_ENTRIES`], as the base registers' length fields take it.
const RING_LENGTH_LOG2: u64 = 8;
/// Bytes per command and per event-log entry.
pub(super) const ENTRY_BYTES: u64 = 16;
/// Bytes per device table entry.
const DTE_BYTES: u64 = 32;
/// Device table entries per 4 KiB page.
const DTES_PER_PAGE: u32 = 128;
/// Pages of a device table for all 65536 requester IDs (2 MiB).
const MAX_TABLE_PAGES: u16 = 512;

/// The memory the unit's tables live in, as the CPU reaches it. The firmware implements it
/// over identity-mapped memory; reads must be volatile (the unit writes the completion
/// qword and the event log behind the compiler's back).
pub trait AmdViMemory {
    /// Stores the 16-byte `command` (low qword at `address`, high at `address + 8`).
    fn write_command(&mut self, address: u64, command: [u64; 2]);
    /// Stores `value` in the qword at `address` (device table entries, the completion
    /// qword).
    fn write_qword(&mut self, address: u64, value: u64);
    /// The qword at `address` (the completion qword, event-log entries, a device table
    /// entry's current contents).
    fn read_qword(&self, address: u64) -> u64;
}

/// Where a unit's tables live. The caller allocates each from memory no partition can reach,
/// zeroes it, and fills the device table with [`block_all`] before [`AmdViUnit::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitLayout {
    /// The device table, 4 KiB-aligned.
    pub device_table: u64,
    /// Its size in 4 KiB pages, 1..=512 (128 entries per page; 512 covers all 65536
    /// requester IDs and is what a unit needs unless the IVRS bounds the IDs below).
    pub device_table_pages: u16,
    /// The command buffer, one 4 KiB-aligned page ([`RING_ENTRIES`] commands).
    pub command_buffer: u64,
    /// The event log, one 4 KiB-aligned page ([`RING_ENTRIES`] entries).
    pub event_log: u64,
    /// The qword COMPLETION_WAIT stores to, 8-byte aligned, outside the three tables.
    pub completion: u64,
}

impl UnitLayout {
    /// The number of device table entries: requester IDs below it can be set.
    pub fn device_entries(&self) -> u32 {
        u32::from(self.device_table_pages) * DTES_PER_PAGE
    }

    /// Checks alignment, sizes and that no two regions overlap.
    pub fn validate(&self) -> Result<(), AmdViError> {
        let page = |what: &'static str, address: u64| {
            if address.is_multiple_of(PAGE_SIZE) && address & !ADDRESS_MASK == 0 {
                Ok(())
            } else {
                Err(AmdViError::BadLayout { what, address })
            }
        };
        page("device table", self.device_table)?;
        page("command buffer", self.command_buffer)?;
        page("event log", self.event_log)?;
        if !(1..=MAX_TABLE_PAGES).contains(&self.device_table_pages) {
            return Err(AmdViError::BadLayout {
                what: "device table size (1..=512 pages)",
                address: u64::from(self.device_table_pages),
            });
        }
        // The completion-wait store address is bits 51:3.
        if !self.completion.is_multiple_of(8) || self.completion >> 52 != 0 {
            return Err(AmdViError::BadLayout {
                what: "completion-wait qword",
                address: self.completion,
            });
        }
        let table_bytes = u64::from(self.device_table_pages) * PAGE_SIZE;
        let regions = [
            ("device table", self.device_table, table_bytes),
            ("command buffer", self.command_buffer, PAGE_SIZE),
            ("event log", self.event_log, PAGE_SIZE),
            ("completion-wait qword", self.completion, 8),
        ];
        for (index, &(what, start, size)) in regions.iter().enumerate() {
            // Every region lies below 2^52, the widest address the registers hold.
            let end = start
                .checked_add(size)
                .filter(|&end| end <= 1 << 52)
                .ok_or(AmdViError::BadLayout {
                    what,
                    address: start,
                })?;
            for &(_, other_start, other_size) in &regions[..index] {
                // Earlier regions were checked to end below 2^52.
                let other_end = other_start + other_size;
                if start < other_end && other_start < end {
                    return Err(AmdViError::BadLayout {
                        what: match what {
                            "device table" => "device table (overlaps another region)",
                            "command buffer" => "command buffer (overlaps another region)",
                            "event log" => "event log (overlaps another region)",
                            _ => "completion-wait qword (inside a table)",
                        },
                        address: start,
                    });
                }
            }
        }
        Ok(())
    }

    /// The address of `device`'s entry.
    fn entry_address(&self, device: SourceId) -> Result<u64, AmdViError> {
        let id = u32::from(device.requester_id());
        if id >= self.device_entries() {
            return Err(AmdViError::DeviceOutsideTable {
                device,
                entries: self.device_entries(),
            });
        }
        Ok(self.device_table + u64::from(id) * DTE_BYTES)
    }
}

/// Writes the blocking entry ([`DeviceTableEntry::blocked`]) into every entry of a device
/// table of `pages` 4 KiB pages at `device_table`. Call before [`AmdViUnit::start`]: the
/// unit translates from the moment IommuEn is set, and a zero entry lets DMA through.
pub fn block_all(
    memory: &mut impl AmdViMemory,
    device_table: u64,
    pages: u16,
) -> Result<(), AmdViError> {
    if !device_table.is_multiple_of(PAGE_SIZE) || device_table & !ADDRESS_MASK != 0 {
        return Err(AmdViError::BadLayout {
            what: "device table",
            address: device_table,
        });
    }
    if !(1..=MAX_TABLE_PAGES).contains(&pages) {
        return Err(AmdViError::BadLayout {
            what: "device table size (1..=512 pages)",
            address: u64::from(pages),
        });
    }
    let entries = u64::from(pages) * u64::from(DTES_PER_PAGE);
    for index in 0..entries {
        // Below 2^52 + 2 MiB: no overflow.
        let entry = device_table + index * DTE_BYTES;
        for (word, &value) in BLOCKED_ENTRY.iter().enumerate() {
            memory.write_qword(entry + word as u64 * 8, value);
        }
    }
    Ok(())
}

/// What a unit's Extended Feature Register says, as far as this driver needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedFeatures(pub u64);

impl ExtendedFeatures {
    /// IASup (bit 6): INVALIDATE_IOMMU_ALL is supported.
    pub fn invalidate_all(self) -> bool {
        self.0 & features::INVALIDATE_ALL != 0
    }

    /// HATS (bits 11:10): the deepest host page table the unit walks, 4, 5 or 6 levels;
    /// `None` for the reserved 11b. An EFR of 0 (a unit without EFRSup) reads as 4.
    pub fn host_translation_levels(self) -> Option<u8> {
        match (self.0 >> features::HATS_SHIFT) & 0b11 {
            0b00 => Some(4),
            0b01 => Some(5),
            0b10 => Some(6),
            _ => None,
        }
    }
}

/// The driver's view of a started unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Running {
    pub(super) layout: UnitLayout,
    /// The Control value written: the register is never read back and modified, because
    /// only software changes it.
    pub(super) control: u64,
    /// The next free command slot (what Command Tail says, in entries).
    tail: u64,
    /// The value the last COMPLETION_WAIT stored.
    sequence: u64,
}

/// One AMD-Vi IOMMU, driven through its registers.
#[derive(Debug)]
pub struct AmdViUnit<R: RegisterAccess> {
    pub(super) regs: R,
    features: ExtendedFeatures,
    spin_limit: u32,
    /// Set by [`start`](Self::start).
    pub(super) running: Option<Running>,
}

impl<R: RegisterAccess> AmdViUnit<R> {
    /// Reads the Extended Feature Register (MMIO 0x30) for IASup and HATS; refuses a unit
    /// whose HATS is reserved (every defined value walks the 4-level tables the SLAT builder
    /// makes, DTE Mode 4). Changes nothing on the unit.
    pub fn new(mut regs: R) -> Result<Self, AmdViError> {
        let efr = regs.read64(EXTENDED_FEATURES);
        let features = ExtendedFeatures(efr);
        if features.host_translation_levels().is_none() {
            return Err(AmdViError::ReservedHostTranslationSize { efr });
        }
        Ok(AmdViUnit {
            regs,
            features,
            spin_limit: DEFAULT_SPIN_LIMIT,
            running: None,
        })
    }

    /// The same unit with waits bounded at `polls` reads.
    pub fn with_spin_limit(mut self, polls: u32) -> Self {
        self.spin_limit = polls.max(1);
        self
    }

    /// What the Extended Feature Register said.
    pub fn features(&self) -> ExtendedFeatures {
        self.features
    }

    /// Whether [`start`](Self::start) completed.
    pub fn is_started(&self) -> bool {
        self.running.is_some()
    }

    /// The register access, for the firmware's own diagnostics.
    pub fn registers(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Hands the register access back.
    pub fn into_registers(self) -> R {
        self.regs
    }

    /// Brings the unit up over `layout` (§3.3): Control = 0, waiting for CmdBufRun and
    /// EventLogRun to clear (the base registers may only change while the buffers are
    /// stopped, and firmware before us may have left the unit on); Device Table Base
    /// (base | pages − 1); Command Buffer Base (base | ComLen 8 << 56) with head and tail 0;
    /// Event Log Base (base | EventLen 8 << 56) with head and tail 0; Status's RW1C bits
    /// cleared; then Control = IommuEn | EventLogEn | Coherent | CmdBufEn in one write,
    /// waiting for Status CmdBufRun and EventLogRun. HtTunEn, the interrupt enables,
    /// PPR, guest translation and the invalidation timeout stay 0.
    ///
    /// From the Control write on, every device's DMA goes through the device table: fill it
    /// with [`block_all`] first. Finally, where EFR.IASup, INVALIDATE_IOMMU_ALL drops
    /// whatever earlier firmware left cached.
    pub fn start(
        &mut self,
        memory: &mut impl AmdViMemory,
        layout: UnitLayout,
    ) -> Result<(), AmdViError> {
        layout.validate()?;
        self.running = None;
        self.regs.write64(CONTROL, 0);
        self.wait_status(status::CMD_BUF_RUN, false, "CmdBufRun")?;
        self.wait_status(status::EVENT_LOG_RUN, false, "EventLogRun")?;

        let size = u64::from(layout.device_table_pages) - 1;
        self.regs
            .write64(DEVICE_TABLE_BASE, layout.device_table | size);
        let length = RING_LENGTH_LOG2 << LENGTH_SHIFT;
        self.regs
            .write64(COMMAND_BUFFER_BASE, layout.command_buffer | length);
        self.regs.write64(COMMAND_HEAD, 0);
        self.regs.write64(COMMAND_TAIL, 0);
        self.regs.write64(EVENT_LOG_BASE, layout.event_log | length);
        self.regs.write64(EVENT_HEAD, 0);
        self.regs.write64(EVENT_TAIL, 0);
        // A stale EventOverflow would keep the new log stopped.
        self.regs.write64(STATUS, status::CLEAR);

        let control =
            control::IOMMU_EN | control::EVENT_LOG_EN | control::COHERENT | control::CMD_BUF_EN;
        self.regs.write64(CONTROL, control);
        self.wait_status(status::CMD_BUF_RUN, true, "CmdBufRun")?;
        self.wait_status(status::EVENT_LOG_RUN, true, "EventLogRun")?;
        self.running = Some(Running {
            layout,
            control,
            tail: 0,
            sequence: 0,
        });
        if self.features.invalidate_all() {
            self.invalidate_all(memory)?;
        }
        Ok(())
    }

    /// Points `device` at `entry`'s page table and domain and makes the unit use it: the
    /// entry is written with the blocking qword 0 first, then qwords 1–3, then its own qword
    /// 0 (V, TV, Mode, root) last, so the unit never reads a valid entry that is half old and
    /// half new; then INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE,
    /// INVALIDATE_IOMMU_PAGES for the new domain and for the domain the device leaves, and a
    /// COMPLETION_WAIT, waited for.
    pub fn set_device(
        &mut self,
        memory: &mut impl AmdViMemory,
        device: SourceId,
        entry: &DeviceTableEntry,
    ) -> Result<(), AmdViError> {
        self.write_entry(memory, device, entry.encode())
    }

    /// Blocks all of `device`'s DMA and interrupts ([`DeviceTableEntry::blocked`]): qword 0
    /// first, so the device loses its translation before anything else changes; then the
    /// same invalidations as [`set_device`](Self::set_device), including the domain it
    /// leaves (QEMU would otherwise keep serving its cached translations).
    pub fn block_device(
        &mut self,
        memory: &mut impl AmdViMemory,
        device: SourceId,
    ) -> Result<(), AmdViError> {
        self.write_entry(memory, device, DeviceTableEntry::blocked())
    }

    /// Drops every translation the unit caches for `domain` (INVALIDATE_IOMMU_PAGES, all
    /// pages): after changing the domain's page tables.
    pub fn invalidate_domain(
        &mut self,
        memory: &mut impl AmdViMemory,
        domain: DomainId,
    ) -> Result<(), AmdViError> {
        self.submit(memory, &[invalidate_domain_pages(domain)])
    }

    /// Makes the unit reread `device`'s interrupt remapping table
    /// (INVALIDATE_INTERRUPT_TABLE): after an entry of it changed.
    pub fn invalidate_interrupt_table(
        &mut self,
        memory: &mut impl AmdViMemory,
        device: SourceId,
    ) -> Result<(), AmdViError> {
        self.submit(memory, &[invalidate_interrupt_table(device)])
    }

    /// Drops everything the unit caches (INVALIDATE_IOMMU_ALL; needs EFR.IASup).
    pub fn invalidate_all(&mut self, memory: &mut impl AmdViMemory) -> Result<(), AmdViError> {
        if !self.features.invalidate_all() {
            return Err(AmdViError::Unsupported {
                feature: "INVALIDATE_IOMMU_ALL (EFR.IASup)",
            });
        }
        self.submit(memory, &[invalidate_all()])
    }

    fn write_entry(
        &mut self,
        memory: &mut impl AmdViMemory,
        device: SourceId,
        words: [u64; 4],
    ) -> Result<(), AmdViError> {
        let running = self.running.ok_or(AmdViError::NotStarted)?;
        let address = running.layout.entry_address(device)?;
        let old = memory.read_qword(address);
        let old_domain = DomainId(memory.read_qword(address + 8) as u16);

        memory.write_qword(address, BLOCKED_ENTRY[0]);
        for (word, &value) in words.iter().enumerate().skip(1) {
            memory.write_qword(address + word as u64 * 8, value);
        }
        if words[0] != BLOCKED_ENTRY[0] {
            memory.write_qword(address, words[0]);
        }

        let mut commands = [[0; 2]; 4];
        commands[0] = invalidate_device_table_entry(device);
        commands[1] = invalidate_interrupt_table(device);
        let mut count = 2;
        let new_domain = DomainId(words[1] as u16);
        let translates = DeviceTableEntry::translates(words[0]);
        if translates {
            commands[count] = invalidate_domain_pages(new_domain);
            count += 1;
        }
        if DeviceTableEntry::translates(old) && !(translates && old_domain == new_domain) {
            commands[count] = invalidate_domain_pages(old_domain);
            count += 1;
        }
        self.submit(memory, &commands[..count])
    }

    /// Queues `commands` and a COMPLETION_WAIT, moves Command Tail past them, and waits for
    /// the store.
    fn submit(
        &mut self,
        memory: &mut impl AmdViMemory,
        commands: &[[u64; 2]],
    ) -> Result<(), AmdViError> {
        let mut running = self.running.ok_or(AmdViError::NotStarted)?;
        let capacity = RING_ENTRIES - 1;
        let needed = u64::try_from(commands.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let count = |entries: u64| u32::try_from(entries).unwrap_or(u32::MAX);
        let mut free = 0;
        for _ in 0..self.spin_limit {
            // The head is taken modulo the ring: QEMU reports the ring size after the last
            // slot, and a bad value must not index outside it.
            let head = (self.regs.read64(COMMAND_HEAD) & POINTER_MASK) / ENTRY_BYTES % RING_ENTRIES;
            let used = (running.tail + RING_ENTRIES - head) % RING_ENTRIES;
            free = capacity - used;
            if free >= needed || needed > capacity {
                break;
            }
            core::hint::spin_loop();
        }
        if needed > free {
            return Err(AmdViError::QueueFull {
                needed: count(needed),
                free: count(free),
            });
        }

        running.sequence = running.sequence.wrapping_add(1).max(1);
        let completion = running.layout.completion;
        memory.write_qword(completion, 0);
        let wait = completion_wait(completion, running.sequence);
        for &command in commands.iter().chain([&wait]) {
            let slot = running.layout.command_buffer + running.tail * ENTRY_BYTES;
            memory.write_command(slot, command);
            running.tail = (running.tail + 1) % RING_ENTRIES;
        }
        self.running = Some(running);
        self.regs.write64(COMMAND_TAIL, running.tail * ENTRY_BYTES);

        for _ in 0..self.spin_limit {
            if memory.read_qword(completion) == running.sequence {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(AmdViError::Timeout {
            register: "completion-wait qword",
            what: "store",
            expected: true,
            polls: self.spin_limit,
        })
    }

    /// Waits until Status's `bit` is `expected`.
    pub(super) fn wait_status(
        &mut self,
        bit: u64,
        expected: bool,
        what: &'static str,
    ) -> Result<(), AmdViError> {
        for _ in 0..self.spin_limit {
            if (self.regs.read64(STATUS) & bit != 0) == expected {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(AmdViError::Timeout {
            register: "Status",
            what,
            expected,
            polls: self.spin_limit,
        })
    }
}
