//! AMD-Vi (AMD I/O Virtualization Technology, spec 48882 rev 3.x): the I/O page-table format
//! ([`AmdViPageTable`], written by the SLAT builder), device table entries, command-buffer
//! encodings, event-log decoding, and a driver for one IOMMU ([`AmdViUnit`]) over a
//! [`RegisterAccess`](crate::iommu::RegisterAccess) the firmware implements on the unit's MMIO
//! window and an [`AmdViMemory`] over the memory its tables live in.
//!
//! # Bringing a unit up
//!
//! 1. Allocate and zero, each 4 KiB-aligned: the device table (2 MiB = 512 pages for all
//!    65536 requester IDs), the command buffer (4 KiB), the event log (4 KiB), and an 8-byte
//!    completion-wait target outside all of them.
//! 2. [`block_all`]: fill every device table entry with the blocking entry
//!    ([`DeviceTableEntry::blocked`]). A zero entry is *not* blocking: V = 0 lets the device's
//!    DMA through untranslated.
//! 3. [`AmdViUnit::new`] (reads the Extended Feature Register), then [`AmdViUnit::start`].
//! 4. Per passed-through function: build its domain's tables
//!    (`SlatBuilder::<AmdViPageTable>`) and give it a zeroed interrupt remapping table, then
//!    [`AmdViUnit::set_device`] with [`Interrupts::Remapped`]; on unassignment or a partition
//!    stop, [`AmdViUnit::block_device`]. After changing a domain's tables,
//!    [`AmdViUnit::invalidate_domain`]; after writing an [`InterruptEntry`],
//!    [`AmdViUnit::invalidate_interrupt_table`].
//! 5. Poll [`AmdViUnit::take_faults`].
//!
//! # QEMU 7.2's `amd-iommu`
//!
//! - It translates DMA only for devices on bus 0 (DESIGN.md, "Devices and I/O").
//! - Its DTE check (`amdvi_validate_dte`) uses masks that predate the current spec: it
//!   rejects a DTE with bit 72 set, which is bit 8 of the domain ID, so domains 256–511,
//!   768–1023, ... are refused there (the DMA is blocked). Keep domain IDs below 256 under
//!   QEMU. It also rejects any non-zero qword 3.
//! - Its event log never receives an entry: the overflow test is written `status | bit`
//!   (always true), so every event is dropped (fixed upstream in 2025). Faults are invisible
//!   there; [`AmdViUnit::take_faults`] returns an empty log.
//! - It caches translations by device and address, not by domain, and looks them up before
//!   the DTE: after a device leaves a domain, that domain's pages must be invalidated too,
//!   which [`AmdViUnit::set_device`] and [`AmdViUnit::block_device`] do.
//! - It does not bound requester IDs by the Device Table Base size field (its length decode
//!   is wrong and only tested for zero): it reads any device's DTE at base + ID × 32, so a
//!   table shorter than 512 pages lets it read whatever memory follows. Give it the full
//!   2 MiB table.
//! - It ignores Control.Coherent and the interrupt enables; it implements only the registers
//!   this driver uses (plus the exclusion range and PPR log, not used here).
//! - Commands run synchronously inside the Command Tail write; the completion-wait store has
//!   landed when the write returns. After the last ring slot its Command Head reads the ring
//!   size (0x1000), not 0, until the next command; the driver takes the head modulo the ring.

mod command;
mod device_table;
mod error;
mod event_log;
mod format;
mod interrupt;
mod unit;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use command::{
    completion_wait, decode_event, invalidate_all, invalidate_device_table_entry,
    invalidate_domain_pages, invalidate_interrupt_table,
};
pub use device_table::{DeviceTableEntry, InterruptTable, Interrupts, BLOCKED_ENTRY};
pub use error::AmdViError;
pub use format::AmdViPageTable;
pub use interrupt::{remapped_msi, InterruptEntry, InterruptEntryError, MAX_FIXED_INDEX};
pub use unit::{
    block_all, AmdViMemory, AmdViUnit, ExtendedFeatures, UnitLayout, DEFAULT_SPIN_LIMIT,
    RING_ENTRIES,
};

/// MMIO register offsets (§3.4) and the bits the driver uses.
pub mod registers {
    /// Device table base address (51:12) and size (8:0, 4 KiB pages − 1).
    pub const DEVICE_TABLE_BASE: u32 = 0x0000;
    /// Command buffer base address (51:12) and length (ComLen, 59:56, log2 of entries).
    pub const COMMAND_BUFFER_BASE: u32 = 0x0008;
    /// Event log base address (51:12) and length (EventLen, 59:56, log2 of entries).
    pub const EVENT_LOG_BASE: u32 = 0x0010;
    /// Control (IommuEn, CmdBufEn, EventLogEn, ...).
    pub const CONTROL: u32 = 0x0018;
    /// Extended Feature Register (read-only; present when the capability header's EFRSup).
    pub const EXTENDED_FEATURES: u32 = 0x0030;
    /// Command buffer head pointer (byte offset, bits 18:4): the next command the IOMMU reads.
    pub const COMMAND_HEAD: u32 = 0x2000;
    /// Command buffer tail pointer (byte offset): where software writes the next command.
    pub const COMMAND_TAIL: u32 = 0x2008;
    /// Event log head pointer (byte offset): the next entry software reads.
    pub const EVENT_HEAD: u32 = 0x2010;
    /// Event log tail pointer (byte offset): where the IOMMU writes the next entry.
    pub const EVENT_TAIL: u32 = 0x2018;
    /// Status (event log overflow, run states, interrupts).
    pub const STATUS: u32 = 0x2020;

    /// The pointer bits of the four head/tail registers (18:4).
    pub const POINTER_MASK: u64 = 0x7fff0;
    /// ComLen / EventLen position in the base registers.
    pub const LENGTH_SHIFT: u32 = 56;

    /// Control register bits (§3.4.3 "IOMMU Control Register").
    pub mod control {
        /// IommuEn: translation and the other enables take effect.
        pub const IOMMU_EN: u64 = 1 << 0;
        /// HtTunEn: HyperTransport tunnel translation (left off).
        pub const HT_TUN_EN: u64 = 1 << 1;
        /// EventLogEn: the IOMMU writes events to the log.
        pub const EVENT_LOG_EN: u64 = 1 << 2;
        /// EventIntEn: an interrupt on each event (left off: the log is polled).
        pub const EVENT_INT_EN: u64 = 1 << 3;
        /// ComWaitIntEn: an interrupt on COMPLETION_WAIT with I (left off).
        pub const COM_WAIT_INT_EN: u64 = 1 << 4;
        /// Coherent: the IOMMU's reads of the device table (and its other structures) are
        /// snooped, so the CPU's cached writes of them are seen without a cache flush.
        pub const COHERENT: u64 = 1 << 10;
        /// CmdBufEn: the IOMMU fetches commands from the command buffer.
        pub const CMD_BUF_EN: u64 = 1 << 12;
    }

    /// Status register bits (§3.4.13 "IOMMU Status Register").
    pub mod status {
        /// EventOverflow (RW1C): the log was full and an event was lost; logging stopped.
        pub const EVENT_OVERFLOW: u64 = 1 << 0;
        /// EventLogInt (RW1C): an event was written (with EventIntEn).
        pub const EVENT_LOG_INT: u64 = 1 << 1;
        /// ComWaitInt (RW1C): a COMPLETION_WAIT with I completed.
        pub const COM_WAIT_INT: u64 = 1 << 2;
        /// EventLogRun (RO): the event log is running.
        pub const EVENT_LOG_RUN: u64 = 1 << 3;
        /// CmdBufRun (RO): the command buffer is running.
        pub const CMD_BUF_RUN: u64 = 1 << 4;
        /// The write-1-to-clear bits the driver clears at start.
        pub const CLEAR: u64 = EVENT_OVERFLOW | EVENT_LOG_INT | COM_WAIT_INT;
    }

    /// Extended Feature Register fields (§3.4.5).
    pub mod features {
        /// IASup (bit 6): INVALIDATE_IOMMU_ALL is supported.
        pub const INVALIDATE_ALL: u64 = 1 << 6;
        /// HATS (bits 11:10): host page-table levels, 00b = 4, 01b = 5, 10b = 6, 11b reserved.
        pub const HATS_SHIFT: u32 = 10;
    }
}
