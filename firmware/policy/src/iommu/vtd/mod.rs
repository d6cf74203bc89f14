//! Intel VT-d DMA and interrupt remapping (Intel VT-d spec 4.1, legacy mode), as pure logic:
//! the second-level table format ([`VtdSecondLevel`], written by the SLAT builder), the root
//! and context tables ([`ContextTables`]), and a driver for one remapping unit ([`VtdUnit`])
//! over a [`RegisterAccess`] the firmware implements on the unit's MMIO registers.
//!
//! # Bringing a unit up
//!
//! 1. [`VtdUnit::new`] (refuses a unit without 4-level tables).
//! 2. Build each domain's second-level tables (`SlatBuilder::<VtdSecondLevel>`, leaves no
//!    larger than [`Capabilities::max_page`]) and its devices' context entries
//!    ([`ContextTables::assign`]).
//! 3. [`VtdUnit::enable_queued_invalidation`] where ECAP.QI (it must precede interrupt
//!    remapping; once on, the CCMD/IOTLB registers are not used).
//! 4. [`VtdUnit::set_root_table`], then [`VtdUnit::invalidate_all`].
//! 5. [`VtdUnit::enable_translation`].
//! 6. Interrupt remapping: fill the table, [`VtdUnit::set_interrupt_remapping_table`],
//!    [`VtdUnit::invalidate_interrupt_entries`], [`VtdUnit::enable_interrupt_remapping`];
//!    program devices with [`remappable_msi`].
//!
//! After any later change to a context entry or a domain's tables, including making one
//! present on a caching-mode unit (QEMU's `caching-mode=on`), call
//! [`VtdUnit::invalidate_domain`]. Poll [`VtdUnit::take_faults`] (or on the fault event).

mod context;
mod error;
mod fault;
mod format;
mod interrupt;
mod invalidation;
pub mod registers;
mod unit;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use crate::iommu::FaultLog;
pub use context::{ContextError, ContextTables};
pub use error::VtdError;
pub use fault::fault_reason_text;
pub use format::VtdSecondLevel;
pub use interrupt::{remappable_msi, ApicMode, DeliveryMode, InterruptRemapEntry, IrteError};
pub use invalidation::{
    context_descriptor, interrupt_entry_descriptor, iotlb_descriptor, wait_descriptor,
    ContextScope, InterruptEntryScope, IotlbScope, QueueConfig, QueueMemory,
};
pub use registers::{Capabilities, RegisterAccess};
pub use unit::{VtdUnit, DEFAULT_SPIN_LIMIT};
