//! Why a VT-d programming sequence failed. Every wait on the unit is bounded, so a unit that
//! never answers ends in [`VtdError::Timeout`] naming the register and bit, never a hang.

use core::fmt;

/// A remapping unit refused or did not finish an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VtdError {
    /// The unit cannot walk 4-level, 48-bit second-level tables (CAP.SAGAW bit 2), the only
    /// kind the SLAT builder makes.
    NoFourLevelTables { sagaw: u8 },
    /// The unit lacks a feature the operation needs (ECAP.QI, ECAP.IR, ECAP.EIM), or it is not
    /// enabled yet (interrupt-entry invalidation needs the invalidation queue).
    Unsupported { feature: &'static str },
    /// A bounded poll gave up: `register`'s `bit` never became `expected`.
    Timeout {
        register: &'static str,
        bit: &'static str,
        expected: bool,
        polls: u32,
    },
    /// The unit finished an invalidation but reports (actual granularity 0) that it did not
    /// perform it.
    InvalidationNotPerformed { register: &'static str },
    /// The invalidation queue stopped at the descriptor at `head` (FSTS.IQE): the unit found
    /// it malformed. The descriptors after it were dropped.
    QueueError { head: u64 },
    /// The invalidation queue has no room for the batch (the unit has not consumed earlier
    /// descriptors).
    QueueFull { needed: u32, free: u32 },
    /// An address given for a table or the queue is not aligned as the register needs, or a
    /// size is out of range.
    BadAddress { what: &'static str, address: u64 },
}

impl fmt::Display for VtdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VtdError::NoFourLevelTables { sagaw } => write!(
                f,
                "the VT-d unit cannot walk 4-level (48-bit) DMA tables (SAGAW {sagaw:#07b}); \
                 with QEMU, start intel-iommu with aw-bits=48"
            ),
            VtdError::Unsupported { feature } => {
                write!(
                    f,
                    "the VT-d unit does not offer or has not enabled {feature}"
                )
            }
            VtdError::Timeout {
                register,
                bit,
                expected,
                polls,
            } => write!(
                f,
                "the VT-d unit did not {} {register}.{bit} within {polls} polls",
                if *expected { "set" } else { "clear" }
            ),
            VtdError::InvalidationNotPerformed { register } => write!(
                f,
                "the VT-d unit did not perform the invalidation requested through {register}"
            ),
            VtdError::QueueError { head } => write!(
                f,
                "the VT-d invalidation queue stopped at a malformed descriptor at {head:#x} \
                 (FSTS.IQE)"
            ),
            VtdError::QueueFull { needed, free } => write!(
                f,
                "the VT-d invalidation queue has {free} free descriptors, {needed} needed"
            ),
            VtdError::BadAddress { what, address } => {
                write!(f, "cannot give the VT-d unit {address:#x} as its {what}")
            }
        }
    }
}
