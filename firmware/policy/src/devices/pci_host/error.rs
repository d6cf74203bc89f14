//! Why a passed-through function cannot be modelled, or a hypervisor request on it refused.

use core::fmt;

/// Why [`super::PassthroughFunction::new`] or [`super::VirtualHostBridge::new`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassthroughError {
    /// No function answers (vendor ID 0xFFFF or 0).
    Absent,
    /// Header type is not 0 (a bridge or a CardBus bridge cannot be passed through).
    NotAnEndpoint { header_type: u8 },
    /// A BAR record names no BAR register (index above 5, or a 64-bit BAR at 5), or two
    /// records claim the same register.
    BarIndex { bar: u8 },
    /// A memory BAR's size is not a power of two, or its host base is not aligned to it.
    BarShape { bar: u8, base: u64, size: u64 },
    /// A memory BAR smaller than a page cannot be mapped into the guest by the SLAT without
    /// exposing the neighbouring page's registers, and the model does not trap whole BARs.
    BarTooSmall { bar: u8, size: u64 },
    /// The MSI-X table (or its PBA) is not inside a passed-through memory BAR.
    MsixOutsideBar { bir: u8, offset: u32 },
    /// A bus has 31 device numbers for passed-through functions (device 0 is the host
    /// bridge); this many were given.
    TooManyFunctions(usize),
}

impl fmt::Display for PassthroughError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassthroughError::Absent => f.write_str("no function answers at that address"),
            PassthroughError::NotAnEndpoint { header_type } => write!(
                f,
                "header type {header_type} is not an endpoint's (0); bridges are not passed through"
            ),
            PassthroughError::BarIndex { bar } => {
                write!(f, "BAR {bar} names no free BAR register (0..=5)")
            }
            PassthroughError::BarShape { bar, base, size } => write!(
                f,
                "BAR {bar} at {base:#x} of {size:#x} bytes is not a naturally aligned power of two"
            ),
            PassthroughError::BarTooSmall { bar, size } => write!(
                f,
                "BAR {bar} of {size:#x} bytes is smaller than a 4 KiB page and cannot be mapped"
            ),
            PassthroughError::MsixOutsideBar { bir, offset } => write!(
                f,
                "the MSI-X table or PBA at offset {offset:#x} of BAR {bir} is not inside a passed-through memory BAR"
            ),
            PassthroughError::TooManyFunctions(count) => write!(
                f,
                "{count} functions do not fit on one virtual bus (at most 31 besides the host bridge)"
            ),
        }
    }
}

/// Why the hypervisor's request to program a physical message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramError {
    /// The function has no MSI capability (or no MSI-X capability).
    NoCapability,
    /// A 64-bit address for an MSI capability that holds only 32 bits.
    AddressTooWide(u64),
    /// MSI data wider than the 16 bits an MSI capability holds.
    DataTooWide(u32),
    /// An MSI-X entry past the end of the table.
    NoSuchEntry(u16),
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgramError::NoCapability => {
                f.write_str("the function has no such interrupt capability")
            }
            ProgramError::AddressTooWide(address) => write!(
                f,
                "message address {address:#x} does not fit a 32-bit MSI capability"
            ),
            ProgramError::DataTooWide(data) => {
                write!(f, "message data {data:#x} does not fit MSI's 16 bits")
            }
            ProgramError::NoSuchEntry(entry) => {
                write!(f, "MSI-X entry {entry} is past the end of the table")
            }
        }
    }
}
