//! Decoding a guest's MSI message (Intel SDM vol. 3A §11.11).

use crate::devices::pci_host::*;

fn decode(address: u64, data: u32) -> Result<GuestMsi, GuestMsiError> {
    GuestMsi::decode(MsiMessage { address, data })
}

#[test]
fn fields() {
    let msi = decode(0xFEE0_300C, 0x0000_C131).unwrap();
    assert_eq!(
        msi,
        GuestMsi {
            destination: 3,
            mode: DestinationMode::Logical,
            redirection_hint: true,
            vector: 0x31,
            delivery: MsiDelivery::LowestPriority,
            trigger: Trigger::Level { asserted: true },
        }
    );
    let plain = decode(0xFEEF_F000, 0x0000_0010).unwrap();
    assert_eq!(plain.destination, 0xFF);
    assert_eq!(plain.mode, DestinationMode::Physical);
    assert!(!plain.redirection_hint);
    assert_eq!(plain.vector, 16);
    assert_eq!(plain.delivery, MsiDelivery::Fixed);
    assert_eq!(plain.trigger, Trigger::Edge);
}

#[test]
fn refusals() {
    for address in [0, 0xFED0_0000, 0xFEF0_0000, 0x1_FEE0_0000, u64::MAX] {
        assert_eq!(
            decode(address, 0x30),
            Err(GuestMsiError::AddressOutsideInterruptWindow(address))
        );
    }
    for vector in 0..16 {
        assert_eq!(
            decode(0xFEE0_0000, vector),
            Err(GuestMsiError::ReservedVector(vector as u8))
        );
    }
    for mode in 2..8u32 {
        assert_eq!(
            decode(0xFEE0_0000, mode << 8 | 0x30),
            Err(GuestMsiError::DeliveryMode(mode as u8))
        );
    }
    assert_eq!(
        decode(0xFEE0_0000, 0x1_0030),
        Err(GuestMsiError::ReservedDataBits(0x1_0030))
    );
    assert!(GuestMsiError::ReservedVector(3).to_string().contains("16"));
}
