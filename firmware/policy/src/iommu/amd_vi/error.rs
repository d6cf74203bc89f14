//! Why an AMD-Vi programming sequence failed. Every wait on the unit is bounded, so a unit
//! that never answers ends in [`AmdViError::Timeout`] naming what it waited for, never a hang.

use core::fmt;

use crate::iommu::SourceId;

/// An AMD-Vi unit refused or did not finish an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmdViError {
    /// The Extended Feature Register's HATS field is 11b (reserved): the unit's page-table
    /// depth is unknown, so the 4-level tables the SLAT builder makes may not be walkable.
    ReservedHostTranslationSize { efr: u64 },
    /// The unit lacks a feature the operation needs (EFR.IASup for INVALIDATE_IOMMU_ALL).
    Unsupported { feature: &'static str },
    /// An operation that needs the unit running came before [`start`](super::AmdViUnit::start).
    NotStarted,
    /// A table address or size in the [`UnitLayout`](super::UnitLayout) is misaligned, out of
    /// range or overlaps another.
    BadLayout { what: &'static str, address: u64 },
    /// The device's requester ID is beyond the device table the unit was given.
    DeviceOutsideTable { device: SourceId, entries: u32 },
    /// A bounded poll gave up: `register`'s `what` never became `expected`.
    Timeout {
        register: &'static str,
        what: &'static str,
        expected: bool,
        polls: u32,
    },
    /// The command buffer has no room for the batch: the unit has not consumed earlier
    /// commands within the poll limit.
    QueueFull { needed: u32, free: u32 },
}

impl fmt::Display for AmdViError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmdViError::ReservedHostTranslationSize { efr } => write!(
                f,
                "the AMD-Vi unit reports a reserved page-table depth (EFR {efr:#x}, HATS 11b)"
            ),
            AmdViError::Unsupported { feature } => {
                write!(f, "the AMD-Vi unit does not offer {feature}")
            }
            AmdViError::NotStarted => {
                write!(f, "the AMD-Vi unit has not been started")
            }
            AmdViError::BadLayout { what, address } => {
                write!(f, "cannot give the AMD-Vi unit {address:#x} as its {what}")
            }
            AmdViError::DeviceOutsideTable { device, entries } => write!(
                f,
                "device {device} is beyond the AMD-Vi device table ({entries} entries)"
            ),
            AmdViError::Timeout {
                register,
                what,
                expected,
                polls,
            } => write!(
                f,
                "the AMD-Vi unit did not {} {register}.{what} within {polls} polls",
                if *expected { "set" } else { "clear" }
            ),
            AmdViError::QueueFull { needed, free } => write!(
                f,
                "the AMD-Vi command buffer has {free} free entries, {needed} needed"
            ),
        }
    }
}
