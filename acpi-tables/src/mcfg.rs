//! MCFG, the PCI Express memory-mapped configuration space table (PCI Firmware 3.3 §4.1.2):
//! one allocation, the guest's segment 0 and the buses its host bridge decodes.

use alloc::vec::Vec;

use crate::sdt::{new_table, HEADER_LEN};
use crate::PciHostBridge;

/// MCFG revision 1.
pub const REVISION: u8 = 1;

/// Builds the MCFG for `bridge`: the 36-byte header, 8 reserved bytes, then one 16-byte
/// allocation (base address, segment, start bus, end bus, 4 reserved bytes).
pub(crate) fn build(bridge: &PciHostBridge) -> Vec<u8> {
    let mut table = new_table(*b"MCFG", HEADER_LEN as u32 + 8, REVISION);
    let mut allocation = [0u8; 16];
    allocation[0..8].copy_from_slice(&u64::from(bridge.ecam_base).to_le_bytes());
    // Segment 0 (bytes 8..10), start bus 0 (byte 10).
    allocation[11] = bridge.last_bus;
    table.append_slice(&allocation);
    table.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u32, read_u64, sums_to_zero};

    #[test]
    fn one_allocation_for_the_bridge() {
        let bridge = PciHostBridge {
            ecam_base: 0xE000_0000,
            last_bus: 1,
            window_base: 0xC000_0000,
            window_length: 0x2000_0000,
            node: Some(1),
        };
        let mcfg = build(&bridge);
        assert_eq!(&mcfg[0..4], b"MCFG");
        assert_eq!(read_u32(&mcfg, 4), Some(60));
        assert!(sums_to_zero(&mcfg));
        assert_eq!(read_u64(&mcfg, 44), Some(0xE000_0000));
        assert_eq!(&mcfg[52..56], &[0, 0, 0, 1]);
    }
}
