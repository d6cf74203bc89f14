//! AMD-Vi (AMD I/O Virtualization Technology, spec 48882 rev 3.x): the I/O page-table format
//! ([`AmdViPageTable`], written by the SLAT builder), device table entries, command-buffer
//! encodings and event-log decoding. Formats only: the driver sequences are not written yet.
//!
//! QEMU 7.2's `amd-iommu` cannot translate DMA for devices on buses other than 0
//! (DESIGN.md, "Devices and I/O").

mod command;
mod device_table;
mod format;

pub use command::{
    completion_wait, decode_event, invalidate_all, invalidate_device_table_entry,
    invalidate_domain_pages, invalidate_interrupt_table,
};
pub use device_table::{DeviceTableEntry, InterruptTable};
pub use format::AmdViPageTable;

/// MMIO register offsets (§3.4).
pub mod registers {
    /// Device table base address and size.
    pub const DEVICE_TABLE_BASE: u32 = 0x0000;
    /// Command buffer base address and length.
    pub const COMMAND_BUFFER_BASE: u32 = 0x0008;
    /// Event log base address and length.
    pub const EVENT_LOG_BASE: u32 = 0x0010;
    /// Control (IommuEn, CmdBufEn, EventLogEn, ...).
    pub const CONTROL: u32 = 0x0018;
    /// Command buffer head pointer.
    pub const COMMAND_HEAD: u32 = 0x2000;
    /// Command buffer tail pointer.
    pub const COMMAND_TAIL: u32 = 0x2008;
    /// Event log head pointer.
    pub const EVENT_HEAD: u32 = 0x2010;
    /// Event log tail pointer.
    pub const EVENT_TAIL: u32 = 0x2018;
    /// Status (event log overflow, interrupts, ...).
    pub const STATUS: u32 = 0x2020;
}
