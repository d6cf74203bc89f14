//! FADT, the Fixed ACPI Description Table (ACPI 6.5 §5.2.9), and the FACS it points to
//! (§5.2.10), both from rust-vmm's `acpi_tables`.
//!
//! **A full, not hardware-reduced, FADT.** An unmodified x86 Linux guest boots on either,
//! but on hardware-reduced ACPI (`HW_REDUCED_ACPI`) it assumes the machine has no legacy
//! PC parts: `acpi_reduced_hw_init` (arch/x86/kernel/acpi/boot.c) skips the PIT/HPET
//! timer set-up and swaps the 8259 for a null PIC, so the local APIC timer must be
//! calibrated from frequencies in CPUID (leaves 0x15/0x16 or a hypervisor leaf), which
//! our vCPUs do not report; and power-off then needs the FADT's sleep control/status
//! registers, events a Generic Event Device. Our partitions are
//! PCs (PIT, 8259, ISA UART), so the guest gets the PC path: a PM1a event block, a PM1a
//! control block (power-off through SLP_TYP/SLP_EN), an optional PM timer, the SCI on
//! an ISA IRQ. There is no SMI command port, which tells the guest it is in ACPI mode
//! already (§4.8.2.1: SCI_EN reads 1). A full FADT requires a FACS (§5.2.10).

use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use alloc::vec::Vec;

use crate::sdt::{bytes_of, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::Devices;

/// FADT length (ACPI 6.5 layout, major version 6, minor 5).
pub const FADT_LEN: usize = 276;
/// FACS length; it must sit on a 64-byte boundary.
pub const FACS_LEN: usize = 64;
/// FACS version (ACPI 5.0 and later).
const FACS_VERSION: u8 = 2;
/// IA-PC boot architecture flags (§5.2.9.3).
const LEGACY_DEVICES: u16 = 1 << 0;
const VGA_NOT_PRESENT: u16 = 1 << 2;
const MSI_NOT_SUPPORTED: u16 = 1 << 3;
const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
/// C2 and C3 latencies above 100 and 1000 µs mean "not supported".
const NO_C2: u16 = 0x0FFF;
const NO_C3: u16 = 0x0FFF;
/// CMOS index of the century byte.
const RTC_CENTURY: u8 = 0x32;
/// The reset register (§4.8.3.6): the PC's reset control at 0xCF9, written with 0x06 (system
/// reset, CPU reset), as the hypervisor emulates it.
const RESET_PORT: u16 = 0xCF9;
const RESET_VALUE: u8 = 0x06;

/// Builds the FADT for checked `devices`, pointing at the FACS and the DSDT (32-bit
/// fields for old guests, and X_DSDT for new ones; X_FIRMWARE_CTRL stays 0 as ACPI asks
/// when FIRMWARE_CTRL is set).
pub(crate) fn build(devices: &Devices, facs: u32, dsdt: u32) -> Vec<u8> {
    let pm = devices.pm;
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .firmware_ctrl_32(facs)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::PwrButton) // no fixed power button
        .flag(Flags::SlpButton) // no fixed sleep button
        .flag(Flags::FixRtc) // no RTC wake status
        .flag(Flags::Headless)
        .flag(Flags::ResetRegSup);
    fadt.reset_reg = io_register(RESET_PORT, 1, AccessSize::ByteAccess);
    fadt.reset_value = RESET_VALUE;
    fadt.dsdt = dsdt.into();
    fadt.x_dsdt = u64::from(dsdt).into();
    fadt.sci_int = u16::from(pm.sci_irq).into();
    fadt.pm1a_evt_blk = u32::from(pm.port).into();
    fadt.pm1_evt_len = 4;
    fadt.x_pm1a_evt_blk = io_register(pm.port, 4, AccessSize::WordAccess);
    fadt.pm1a_cnt_blk = u32::from(pm.port + 4).into();
    fadt.pm1_cnt_len = 2;
    fadt.x_pm1a_cnt_blk = io_register(pm.port + 4, 2, AccessSize::WordAccess);
    if pm.pm_timer {
        fadt.pm_tmr_blk = u32::from(pm.port + 8).into();
        fadt.pm_tmr_len = 4;
        fadt.x_pm_tmr_blk = io_register(pm.port + 8, 4, AccessSize::DwordAccess);
    }
    fadt.p_lvl2_lat = NO_C2.into();
    fadt.p_lvl3_lat = NO_C3.into();
    let mut boot_arch = LEGACY_DEVICES | VGA_NOT_PRESENT;
    // Only passed-through PCI functions send messages; without them the guest has no use
    // for MSI (and a probe of it finds nothing).
    if devices.pci_host.is_none() {
        boot_arch |= MSI_NOT_SUPPORTED;
    }
    if devices.cmos_rtc {
        fadt.century = RTC_CENTURY;
    } else {
        boot_arch |= CMOS_RTC_NOT_PRESENT;
    }
    fadt.iapc_boot_arch = boot_arch.into();
    bytes_of(&fadt.finalize())
}

/// A register block of `len` bytes in I/O space, as a Generic Address Structure.
fn io_register(port: u16, len: u8, access: AccessSize) -> GAS {
    GAS::new(AddressSpace::SystemIo, len * 8, 0, access, u64::from(port))
}

/// Builds the FACS: no waking vector yet, no global lock, no S4BIOS.
pub(crate) fn build_facs() -> Vec<u8> {
    let mut facs = FACS::new();
    facs.version = FACS_VERSION;
    bytes_of(&facs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdt::{read_u16, read_u32, read_u64, sums_to_zero};

    #[test]
    fn full_fadt_for_a_pc() {
        let fadt = build(&Devices::pc(), 0xE_0100, 0xE_0200);
        assert_eq!(fadt.len(), FADT_LEN);
        assert_eq!(&fadt[0..4], b"FACP");
        assert_eq!(read_u32(&fadt, 4), Some(FADT_LEN as u32));
        assert_eq!((fadt[8], fadt[131]), (6, 5)); // ACPI 6.5
        assert!(sums_to_zero(&fadt));
        assert_eq!(read_u32(&fadt, 36), Some(0xE_0100)); // FIRMWARE_CTRL
        assert_eq!(read_u32(&fadt, 40), Some(0xE_0200)); // DSDT
        assert_eq!(read_u64(&fadt, 132), Some(0)); // X_FIRMWARE_CTRL
        assert_eq!(read_u64(&fadt, 140), Some(0xE_0200)); // X_DSDT
        assert_eq!(read_u16(&fadt, 46), Some(9)); // SCI_INT
        assert_eq!(read_u32(&fadt, 48), Some(0)); // SMI_CMD: always in ACPI mode
        assert_eq!(read_u32(&fadt, 56), Some(0x600)); // PM1a_EVT_BLK
        assert_eq!(read_u32(&fadt, 64), Some(0x604)); // PM1a_CNT_BLK
        assert_eq!(read_u32(&fadt, 76), Some(0x608)); // PM_TMR_BLK
        assert_eq!(&fadt[88..92], &[4, 2, 0, 4]); // PM1_EVT_LEN .. PM_TMR_LEN
        assert_eq!(
            read_u16(&fadt, 109),
            Some(LEGACY_DEVICES | VGA_NOT_PRESENT | MSI_NOT_SUPPORTED)
        );
        let flags = read_u32(&fadt, 112).unwrap();
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!(fadt[116], 1, "reset register in system I/O");
        assert_eq!(read_u64(&fadt, 120), Some(0xCF9), "reset register address");
        assert_eq!(fadt[128], 0x06, "reset value");
        assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
        assert_eq!(flags & (1 << 8), 0, "24-bit PM timer");
        // X_PM1a_EVT_BLK: system I/O, 32 bits, word access, port 0x600.
        assert_eq!(&fadt[148..152], &[1, 32, 0, 2]);
        assert_eq!(read_u64(&fadt, 152), Some(0x600));
    }

    #[test]
    fn no_rtc_no_pm_timer() {
        let mut devices = Devices::pc();
        devices.cmos_rtc = false;
        devices.pm.pm_timer = false;
        let fadt = build(&devices, 0, 0);
        assert!(sums_to_zero(&fadt));
        assert_eq!(read_u32(&fadt, 76), Some(0));
        assert_eq!(fadt[108], 0); // century
        assert_ne!(read_u16(&fadt, 109).unwrap() & CMOS_RTC_NOT_PRESENT, 0);
    }

    #[test]
    fn msi_is_offered_with_a_pci_host_bridge() {
        let mut devices = Devices::pc();
        devices.pci_host = Some(crate::PciHostBridge {
            ecam_base: 0xE000_0000,
            last_bus: 0,
            window_base: 0xC000_0000,
            window_length: 0x2000_0000,
            node: None,
        });
        let fadt = build(&devices, 0, 0);
        assert_eq!(read_u16(&fadt, 109).unwrap() & MSI_NOT_SUPPORTED, 0);
    }

    #[test]
    fn facs() {
        let facs = build_facs();
        assert_eq!(facs.len(), FACS_LEN);
        assert_eq!(&facs[0..4], b"FACS");
        assert_eq!(read_u32(&facs, 4), Some(64));
        assert_eq!(facs[32], FACS_VERSION);
    }
}
