//! MADT, the Multiple APIC Description Table (ACPI 6.5 §5.2.12): the guest's local APICs,
//! its I/O APIC and how the ISA IRQs reach it.
//!
//! rust-vmm's `acpi_tables` supplies the Processor Local APIC (§5.2.12.2) and I/O APIC
//! (§5.2.12.3) entries. Its `MADT` container cannot set the PCAT_COMPAT flag and it has no
//! Interrupt Source Override (§5.2.12.5), Local APIC NMI (§5.2.12.7), Processor Local
//! x2APIC (§5.2.12.12) or Local x2APIC NMI (§5.2.12.13) entries, so those are written
//! here, into rust-vmm's generic `Sdt`.

use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use alloc::vec::Vec;

use crate::sdt::{bytes_of, new_table, HEADER_LEN};
use crate::GuestPlatform;

/// MADT revision: ACPI 6.3 and later (the layout has not changed since x2APIC entries
/// arrived in ACPI 4.0).
pub const REVISION: u8 = 5;
/// Highest APIC ID described with a Processor Local APIC entry; IDs above it get a
/// Processor Local x2APIC entry (255 is the xAPIC broadcast ID).
pub const MAX_XAPIC_ID: u32 = 254;
/// MADT flag: the platform also has dual 8259 PICs.
pub const PCAT_COMPAT: u32 = 1;
/// MPS INTI flags for an override: active high, level triggered.
pub const LEVEL_ACTIVE_HIGH: u16 = 0b1101;
/// ACPI processor UID meaning "all processors" in a Local APIC NMI entry.
const ALL_PROCESSORS_U8: u8 = 0xFF;
/// ACPI processor UID meaning "all processors" in a Local x2APIC NMI entry.
const ALL_PROCESSORS_U32: u32 = u32::MAX;
/// The local APIC input the NMI is wired to on a PC.
const NMI_LINT: u8 = 1;
/// Local APIC flag: the processor is usable.
const ENABLED: u32 = 1;

/// Builds the MADT for a checked platform.
pub(crate) fn build(platform: &GuestPlatform) -> Vec<u8> {
    let devices = &platform.devices;
    let mut table = new_table(*b"APIC", HEADER_LEN as u32 + 8, REVISION);
    table.write_u32(36, devices.local_apic_base);
    table.write_u32(40, if devices.legacy_pic { PCAT_COMPAT } else { 0 });

    let mut any_x2apic = false;
    // Local APIC entries first, then x2APIC ones: the order ACPI asks for (§5.2.12.12).
    for (uid, vcpu) in platform.vcpus.iter().enumerate() {
        if let (Ok(uid), Ok(apic_id)) = (u8::try_from(uid), u8::try_from(vcpu.apic_id)) {
            if u32::from(apic_id) <= MAX_XAPIC_ID {
                let entry = ProcessorLocalApic::new(uid, apic_id, EnabledStatus::Enabled);
                table.append_slice(&bytes_of(&entry));
                continue;
            }
        }
        any_x2apic = true;
    }
    for (uid, vcpu) in platform.vcpus.iter().enumerate() {
        if needs_x2apic_entry(uid, vcpu.apic_id) {
            table.append_slice(&local_x2apic(vcpu.apic_id, uid as u32));
        }
    }

    table.append_slice(&bytes_of(&IoApic::new(
        devices.io_apic.id,
        devices.io_apic.address,
        0,
    )));
    // As on a PC: the PIT's IRQ 0 arrives on GSI 2; the SCI is level triggered, active
    // high (like QEMU's); every other ISA IRQ n is GSI n, edge triggered, active high.
    table.append_slice(&interrupt_source_override(0, 2, 0));
    let sci = devices.pm.sci_irq;
    table.append_slice(&interrupt_source_override(
        sci,
        u32::from(sci),
        LEVEL_ACTIVE_HIGH,
    ));
    // A virtio-mmio device on an ISA IRQ is level triggered, active high, as its _CRS says:
    // the override keeps Linux's ISA default (edge) from disagreeing with it.
    for (_, virtio) in devices.virtio_mmio_devices() {
        if let Ok(irq @ 0..=15) = u8::try_from(virtio.gsi) {
            table.append_slice(&interrupt_source_override(
                irq,
                virtio.gsi,
                LEVEL_ACTIVE_HIGH,
            ));
        }
    }

    table.append_slice(&local_apic_nmi(ALL_PROCESSORS_U8, NMI_LINT));
    if any_x2apic {
        table.append_slice(&local_x2apic_nmi(ALL_PROCESSORS_U32, NMI_LINT));
    }
    table.as_slice().to_vec()
}

/// Whether vCPU `uid` with `apic_id` needs a Processor Local x2APIC entry (its APIC ID or
/// its UID does not fit a Processor Local APIC entry). Note: Linux ignores x2APIC entries
/// with IDs below 255 when the MADT also has local APIC entries, so a vCPU with UID > 255
/// and an APIC ID below 255 is lost to it; number vCPUs so that cannot happen (APIC IDs
/// ascending with the UID, as on real machines).
pub(crate) fn needs_x2apic_entry(uid: usize, apic_id: u32) -> bool {
    apic_id > MAX_XAPIC_ID || uid > usize::from(u8::MAX)
}

/// Processor Local x2APIC structure (type 9, 16 bytes), §5.2.12.12.
fn local_x2apic(x2apic_id: u32, uid: u32) -> [u8; 16] {
    let mut entry = [0u8; 16];
    entry[0] = 9;
    entry[1] = 16;
    entry[4..8].copy_from_slice(&x2apic_id.to_le_bytes());
    entry[8..12].copy_from_slice(&ENABLED.to_le_bytes());
    entry[12..16].copy_from_slice(&uid.to_le_bytes());
    entry
}

/// Interrupt Source Override structure (type 2, 10 bytes), §5.2.12.5: ISA `irq` (bus 0)
/// is `gsi`, with MPS INTI `flags` (0 = as the bus says).
fn interrupt_source_override(irq: u8, gsi: u32, flags: u16) -> [u8; 10] {
    let mut entry = [0u8; 10];
    entry[0] = 2;
    entry[1] = 10;
    entry[2] = 0; // ISA
    entry[3] = irq;
    entry[4..8].copy_from_slice(&gsi.to_le_bytes());
    entry[8..10].copy_from_slice(&flags.to_le_bytes());
    entry
}

/// Local APIC NMI structure (type 4, 6 bytes), §5.2.12.7.
fn local_apic_nmi(uid: u8, lint: u8) -> [u8; 6] {
    [4, 6, uid, 0, 0, lint]
}

/// Local x2APIC NMI structure (type 0xA, 12 bytes), §5.2.12.13.
fn local_x2apic_nmi(uid: u32, lint: u8) -> [u8; 12] {
    let mut entry = [0u8; 12];
    entry[0] = 0xA;
    entry[1] = 12;
    entry[4..8].copy_from_slice(&uid.to_le_bytes());
    entry[8] = lint;
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u32, sums_to_zero};
    use crate::test_platforms::{one_node_one_vcpu, with_x2apic_vcpu};

    /// (type, offset) of every entry after the 44-byte fixed part.
    fn entries(madt: &[u8]) -> Vec<(u8, usize)> {
        let mut found = Vec::new();
        let mut offset = 44;
        while offset + 2 <= madt.len() {
            found.push((madt[offset], offset));
            offset += usize::from(madt[offset + 1]).max(1);
        }
        found
    }

    #[test]
    fn pc_guest_has_lapic_ioapic_overrides_and_nmi() {
        let madt = build(&one_node_one_vcpu());
        assert_eq!(&madt[0..4], b"APIC");
        assert_eq!(madt[8], REVISION);
        assert_eq!(read_u32(&madt, 4), Some(madt.len() as u32));
        assert_eq!(madt.len(), 44 + 8 + 12 + 10 + 10 + 6);
        assert!(sums_to_zero(&madt));
        assert_eq!(read_u32(&madt, 36), Some(0xFEE0_0000));
        assert_eq!(read_u32(&madt, 40), Some(PCAT_COMPAT));
        let types: Vec<u8> = entries(&madt).iter().map(|e| e.0).collect();
        assert_eq!(types, [0, 1, 2, 2, 4]);
        // The SCI override: IRQ 9 -> GSI 9, level, active high.
        assert_eq!(&madt[74..84], &[2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]);
    }

    #[test]
    fn virtio_on_an_isa_irq_gets_a_level_override() {
        let mut platform = one_node_one_vcpu();
        platform.devices = crate::Devices::pc_with_virtio_balloon();
        let madt = build(&platform);
        assert!(sums_to_zero(&madt));
        let types: Vec<u8> = entries(&madt).iter().map(|e| e.0).collect();
        assert_eq!(types, [0, 1, 2, 2, 2, 4]);
        // IRQ 5 -> GSI 5, level, active high, after the SCI's.
        assert_eq!(&madt[84..94], &[2, 10, 0, 5, 5, 0, 0, 0, 0x0D, 0]);
        // Above the ISA range there is nothing to override.
        platform.devices.virtio_mmio[0] = Some(crate::VirtioMmio {
            gsi: 16,
            ..crate::VirtioMmio::default_placement()
        });
        assert_eq!(build(&platform).len(), 44 + 8 + 12 + 10 + 10 + 6);
    }

    #[test]
    fn apic_id_300_gets_an_x2apic_entry_and_x2apic_nmi() {
        let madt = build(&with_x2apic_vcpu());
        assert!(sums_to_zero(&madt));
        let found = entries(&madt);
        let x2 = found.iter().find(|e| e.0 == 9).unwrap().1;
        assert_eq!(read_u32(&madt, x2 + 4), Some(300));
        assert_eq!(read_u32(&madt, x2 + 8), Some(1));
        assert_eq!(read_u32(&madt, x2 + 12), Some(1));
        assert!(found.iter().any(|e| e.0 == 0xA));
        // Local APIC entries come before x2APIC ones.
        let first_x2 = found.iter().position(|e| e.0 == 9).unwrap();
        assert!(found[first_x2..].iter().all(|e| e.0 != 0));
    }
}
