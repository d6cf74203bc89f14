//! AMD-Vi interrupt remapping (AMD IOMMU spec 48882 §2.2.5): each device's own interrupt
//! remapping table of 32-bit entries (the format used while Control.GAEn is clear, which the
//! driver never sets), and the MSI a device is programmed with to use one of them.
//!
//! A device's table is named by its device table entry ([`Interrupts::Remapped`]), so an
//! entry can only ever be used by the requester ID whose entry points at that table: the
//! source check VT-d makes per entry is made here by the table itself. A fixed or arbitrated
//! message selects its entry by data bits 10:0; an entry whose RemapEn is clear
//! target-aborts the message, as do the other delivery modes (NMI, INIT, ExtInt, SMI)
//! unless the device table entry passes them, which [`DeviceTableEntry`] never does.
//!
//! Order: write the entry, then [`AmdViUnit::invalidate_interrupt_table`] before
//! programming the device with [`remapped_msi`]; to retire an entry, mask or reprogram the
//! device first, then clear it and invalidate.
//!
//! [`Interrupts::Remapped`]: super::Interrupts::Remapped
//! [`DeviceTableEntry`]: super::DeviceTableEntry
//! [`AmdViUnit::invalidate_interrupt_table`]: super::AmdViUnit::invalidate_interrupt_table

use core::fmt;

/// One remapped interrupt: the vector and CPU a device's message with this entry's index is
/// delivered to, always edge-triggered (MSIs are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptEntry {
    /// The vector delivered (16..=255; lower ones are illegal for fixed delivery).
    pub vector: u8,
    /// The destination's xAPIC ID (physical mode) or logical destination.
    pub destination: u32,
    /// Logical destination mode (DM, bit 6); else physical.
    pub logical: bool,
    /// Lowest-priority (arbitrated) delivery (IntType 001b); else fixed (000b).
    pub lowest_priority: bool,
}

/// Why an entry could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptEntryError {
    /// The 32-bit format holds 8-bit destinations only (x2APIC IDs need the 128-bit format).
    DestinationTooLarge { destination: u32 },
    /// Vectors below 16 are not deliverable as fixed interrupts.
    BadVector { vector: u8 },
}

impl fmt::Display for InterruptEntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterruptEntryError::DestinationTooLarge { destination } => write!(
                f,
                "APIC ID {destination} does not fit the 8-bit destination of an AMD-Vi \
                 interrupt remapping entry"
            ),
            InterruptEntryError::BadVector { vector } => {
                write!(
                    f,
                    "vector {vector} cannot be delivered as a fixed interrupt"
                )
            }
        }
    }
}

/// RemapEn (bit 0), IntType (4:2), DM (6), Destination (15:8), Vector (23:16); SupIOPF (1),
/// RqEoi (5) and GuestMode (7) stay 0.
const REMAP_ENABLE: u32 = 1 << 0;
const INT_TYPE_SHIFT: u32 = 2;
const ARBITRATED: u32 = 1;
const LOGICAL: u32 = 1 << 6;
const DESTINATION_SHIFT: u32 = 8;
const VECTOR_SHIFT: u32 = 16;

/// The largest index a fixed message can name while its data bits 10:8 (which the unit reads
/// as the message's delivery mode before it looks the entry up) say "fixed": 255.
pub const MAX_FIXED_INDEX: u16 = 0xFF;

impl InterruptEntry {
    /// The entry's 32 bits.
    pub fn encode(&self) -> Result<u32, InterruptEntryError> {
        let destination = u8::try_from(self.destination).map_err(|_| {
            InterruptEntryError::DestinationTooLarge {
                destination: self.destination,
            }
        })?;
        if self.vector < 16 {
            return Err(InterruptEntryError::BadVector {
                vector: self.vector,
            });
        }
        let kind = if self.lowest_priority { ARBITRATED } else { 0 };
        let mode = if self.logical { LOGICAL } else { 0 };
        Ok(REMAP_ENABLE
            | kind << INT_TYPE_SHIFT
            | mode
            | u32::from(destination) << DESTINATION_SHIFT
            | u32::from(self.vector) << VECTOR_SHIFT)
    }
}

/// The address and data a device's MSI (or MSI-X entry) is programmed with to use entry
/// `index` of its table: any address in the interrupt range (0xFEE0_0000, physical mode: the
/// unit takes the destination from the entry), data = the index with delivery mode bits
/// 10:8 = fixed. `None` for an index a fixed message cannot name (above
/// [`MAX_FIXED_INDEX`]).
pub fn remapped_msi(index: u16) -> Option<(u32, u32)> {
    (index <= MAX_FIXED_INDEX).then_some((0xFEE0_0000, u32::from(index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_laid_out_as_the_spec_says() {
        let entry = InterruptEntry {
            vector: 0x41,
            destination: 3,
            logical: false,
            lowest_priority: false,
        };
        // RemapEn, fixed, physical, destination 3, vector 0x41.
        assert_eq!(entry.encode(), Ok(0x0041_0301));
        let arbitrated = InterruptEntry {
            logical: true,
            lowest_priority: true,
            ..entry
        };
        assert_eq!(arbitrated.encode(), Ok(0x0041_0345));
    }

    #[test]
    fn entries_the_format_cannot_hold_are_refused() {
        let wide = InterruptEntry {
            vector: 0x41,
            destination: 256,
            logical: false,
            lowest_priority: false,
        };
        assert_eq!(
            wide.encode(),
            Err(InterruptEntryError::DestinationTooLarge { destination: 256 })
        );
        let low = InterruptEntry {
            vector: 15,
            destination: 0,
            ..wide
        };
        assert_eq!(
            low.encode(),
            Err(InterruptEntryError::BadVector { vector: 15 })
        );
    }

    #[test]
    fn a_remapped_message_names_its_entry_as_a_fixed_interrupt() {
        assert_eq!(remapped_msi(0), Some((0xFEE0_0000, 0)));
        assert_eq!(remapped_msi(159), Some((0xFEE0_0000, 159)));
        // Data bits 10:8 are the delivery mode the unit sees: 0 is fixed.
        assert_eq!(remapped_msi(255).map(|(_, data)| data >> 8 & 7), Some(0));
        assert_eq!(remapped_msi(256), None);
    }
}
