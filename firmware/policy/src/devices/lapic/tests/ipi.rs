//! IPIs the guest sends through the ICR, and which APICs a destination reaches.

use super::*;

#[test]
fn linux_ap_wakeup_sequence() {
    let mut bsp = enabled_apic(0);
    // INIT assert: ICR high (destination) first, then low.
    assert_eq!(write(&mut bsp, ICR_HIGH, 0x0100_0000), LapicEffect::None);
    let init = ipi(write(&mut bsp, ICR_LOW, 0x0000_C500));
    assert_eq!(
        init,
        Ipi {
            vector: 0,
            delivery: IpiDelivery::Init,
            shorthand: Shorthand::None,
            logical: false,
            destination: 1,
            level: true,
            trigger_level: true,
        }
    );
    assert_eq!(
        read(&mut bsp, ICR_LOW) & (1 << 12),
        0,
        "delivery status idle"
    );
    // INIT de-assert.
    write(&mut bsp, ICR_HIGH, 0x0100_0000);
    let deassert = ipi(write(&mut bsp, ICR_LOW, 0x0000_8500));
    assert_eq!(deassert.delivery, IpiDelivery::InitDeassert);
    assert!(!deassert.level && deassert.trigger_level);
    // Two SIPIs with the trampoline at 0x9A000.
    for _ in 0..2 {
        write(&mut bsp, ICR_HIGH, 0x0100_0000);
        let sipi = ipi(write(&mut bsp, ICR_LOW, 0x0000_069A));
        assert_eq!(sipi.delivery, IpiDelivery::Startup);
        assert_eq!((sipi.vector, sipi.destination), (0x9A, 1));
        assert_eq!(read(&mut bsp, ICR_LOW), 0x69A);
        assert_eq!(read(&mut bsp, ICR_HIGH), 0x0100_0000);
    }
}

#[test]
fn other_ipi_encodings() {
    let mut apic = enabled_apic(0);
    // Linux's send_IPI_allbutself (fixed, all excluding self) and an NMI by logical mask.
    let all = ipi(write(&mut apic, ICR_LOW, 0x000C_00FB));
    assert_eq!(
        (all.delivery, all.shorthand, all.vector),
        (IpiDelivery::Fixed, Shorthand::AllExcludingSelf, 0xFB)
    );
    write(&mut apic, ICR_HIGH, 0x0300_0000);
    let nmi = ipi(write(&mut apic, ICR_LOW, 0x0000_0C00));
    assert_eq!(
        (nmi.delivery, nmi.logical, nmi.destination),
        (IpiDelivery::Nmi, true, 3)
    );
    let selfish = ipi(write(&mut apic, ICR_LOW, 0x0004_01F0));
    assert_eq!(
        (selfish.delivery, selfish.shorthand),
        (IpiDelivery::LowestPriority, Shorthand::SelfOnly)
    );
    assert_eq!(
        ipi(write(&mut apic, ICR_LOW, 0x0008_0200)).delivery,
        IpiDelivery::Smi
    );
    assert_eq!(
        ipi(write(&mut apic, ICR_LOW, 0x0008_0300)).delivery,
        IpiDelivery::Reserved
    );
    assert_eq!(
        ipi(write(&mut apic, ICR_LOW, 0x0008_0700)).shorthand,
        Shorthand::AllIncludingSelf
    );
}

#[test]
fn x2apic_icr_is_one_64_bit_write() {
    let mut apic = x2apic(0);
    let effect = apic.msr_write(0x830, (7 << 32) | 0x0000_40EC, 0).unwrap();
    assert_eq!(
        ipi(effect),
        Ipi {
            vector: 0xEC,
            delivery: IpiDelivery::Fixed,
            shorthand: Shorthand::None,
            logical: false,
            destination: 7,
            level: true,
            trigger_level: false,
        }
    );
    assert_eq!(apic.msr_read(0x830, 0), Ok((7 << 32) | 0x40EC));
    // A 32-bit x2APIC destination, with the delivery status bit written as busy.
    let wide = ipi(apic
        .msr_write(0x830, (0x1234_5678 << 32) | 0x1000 | 0x4500, 0)
        .unwrap());
    assert_eq!(
        (wide.destination, wide.delivery),
        (0x1234_5678, IpiDelivery::Init)
    );
    assert_eq!(apic.msr_read(0x830, 0).unwrap() & (1 << 12), 0);
    assert_eq!(apic.msr_read(0x831, 0), Err(ApicFault::GeneralProtection));
    assert_eq!(
        apic.msr_write(0x831, 0, 0),
        Err(ApicFault::GeneralProtection)
    );
}

#[test]
fn x2apic_self_ipi() {
    let mut apic = x2apic(0);
    let sent = ipi(apic.msr_write(0x83F, 0x55, 0).unwrap());
    assert_eq!(
        (sent.vector, sent.shorthand, sent.delivery),
        (0x55, Shorthand::SelfOnly, IpiDelivery::Fixed)
    );
    assert_eq!(
        apic.msr_write(0x83F, 0x100, 0),
        Err(ApicFault::GeneralProtection)
    );
    assert_eq!(apic.msr_read(0x83F, 0), Err(ApicFault::GeneralProtection));
    // No SELF IPI register in xAPIC mode.
    let mut xapic = enabled_apic(0);
    assert_eq!(write(&mut xapic, 0x3F0, 0x55), LapicEffect::None);
}

#[test]
fn x2apic_id_and_logical_id_come_from_the_hardware_id() {
    let mut apic = LocalApic::new(0x123, false, TSC_HZ, TIMER_HZ);
    assert_eq!(
        read(&mut apic, 0x020),
        0x23 << 24,
        "xAPIC sees the low byte"
    );
    write(&mut apic, 0x020, 0x0500_0000);
    assert_eq!(apic.id(), 5, "xAPIC ID is writable");
    apic.set_apic_base_msr(0xFEE0_0C00).unwrap();
    assert_eq!(apic.id(), 0x123);
    assert_eq!(apic.msr_read(0x802, 0), Ok(0x123));
    assert_eq!(apic.msr_read(0x80D, 0), Ok(0x0012_0008));
    assert_eq!(
        apic.msr_write(0x802, 0, 0),
        Err(ApicFault::GeneralProtection)
    );
    assert_eq!(
        apic.msr_write(0x80D, 0, 0),
        Err(ApicFault::GeneralProtection)
    );
    assert_eq!(apic.msr_read(0x803, 0), Ok(0x0005_0014));
}

#[test]
fn xapic_logical_flat_and_cluster_matching() {
    let mut apic = enabled_apic(2);
    assert!(apic.matches_destination(2, false));
    assert!(apic.matches_destination(0xFF, false), "physical broadcast");
    assert!(!apic.matches_destination(3, false));
    // Flat: LDR bit 2 set.
    write(&mut apic, LDR, 0x0400_0000);
    assert_eq!(read(&mut apic, LDR), 0x0400_0000);
    assert!(apic.matches_destination(0x04, true));
    assert!(apic.matches_destination(0x0F, true));
    assert!(!apic.matches_destination(0x0B, true));
    assert!(apic.matches_destination(0xFF, true), "logical broadcast");
    // Cluster: cluster 3, member bit 1.
    write(&mut apic, DFR, 0x0FFF_FFFF);
    assert_eq!(read(&mut apic, DFR), 0x0FFF_FFFF);
    write(&mut apic, LDR, 0x3200_0000);
    assert!(apic.matches_destination(0x32, true));
    assert!(apic.matches_destination(0x3F, true));
    assert!(!apic.matches_destination(0x31, true));
    assert!(!apic.matches_destination(0x22, true), "other cluster");
    assert!(apic.matches_destination(0xFF, true));
    // A DFR write keeps only the model bits.
    write(&mut apic, DFR, 0);
    assert_eq!(read(&mut apic, DFR), 0x0FFF_FFFF);
}

#[test]
fn x2apic_physical_and_cluster_matching() {
    let apic = x2apic(0x25); // cluster 2, member bit 5
    assert!(apic.matches_destination(0x25, false));
    assert!(
        !apic.matches_destination(0x125, false),
        "32-bit physical IDs"
    );
    assert!(apic.matches_destination(u32::MAX, false));
    assert!(apic.matches_destination(u32::MAX, true));
    assert!(apic.matches_destination(0x0002_0020, true));
    assert!(apic.matches_destination(0x0002_FFFF, true));
    assert!(!apic.matches_destination(0x0002_0010, true));
    assert!(!apic.matches_destination(0x0003_0020, true));
    let mut disabled = enabled_apic(0);
    disabled.set_apic_base_msr(0xFEE0_0000).unwrap();
    assert!(!disabled.matches_destination(0xFF, false));
}
