//! The two SLAT entry formats: AMD nested page tables (AMD APM vol. 2 §15.25.5, entries in the
//! long-mode page-table format of §5.3–§5.4) and Intel extended page tables (Intel SDM vol. 3C
//! §29.3.2, Tables 29-1 to 29-6). Both are 4-level walks of 512 eight-byte entries per 4 KiB
//! table with the physical address in bits 51:12; they differ in how an entry says "present",
//! what the permission bits are, and what a leaf must carry besides.

use crate::memory::BlockSize;

use super::Permissions;

/// Physical address bits 51:12 of an entry (the MAXPHYADDR architectural limit of 52 bits).
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bit 7 in a PDPT or PD entry: the entry is a 1 GiB or 2 MiB leaf (NPT "PS", EPT "page").
pub const LARGE_PAGE: u64 = 1 << 7;

/// How one SLAT format writes and reads its entries. The builder never looks at entry bits
/// except through this trait (and [`ADDRESS_MASK`] / [`LARGE_PAGE`], common to both).
pub trait SlatFormat {
    /// The format's name for messages: "NPT" or "EPT".
    const NAME: &'static str;

    /// Whether a leaf can grant exactly `perms` in this format.
    fn supports(perms: Permissions) -> bool;

    /// A non-leaf entry pointing at the table page `table`, granting everything (a leaf below
    /// restricts). `level` is the level of the table pointed at (1 = a PT of 4 KiB leaves ...
    /// 3 = a PDPT): AMD-Vi writes it into the entry; the CPU formats ignore it.
    fn table_entry(table: u64, level: u32) -> u64;

    /// Whether the present `entry`, found in a table at `level` (1 = PT ... 4 = PML4), maps a
    /// page rather than pointing at a table. Every entry of a PT is a leaf; above, the CPU
    /// formats and VT-d mark a 2 MiB or 1 GiB leaf with [`LARGE_PAGE`].
    fn is_leaf(entry: u64, level: u32) -> bool {
        level == 1 || (level <= 3 && entry & LARGE_PAGE != 0)
    }

    /// A leaf entry mapping `spa` (aligned to `size`) as a page of `size` with `perms`.
    fn leaf_entry(spa: u64, size: BlockSize, perms: Permissions) -> u64;

    /// Whether `entry` is present (maps something or points at a table).
    fn is_present(entry: u64) -> bool;

    /// What a present leaf entry grants.
    fn leaf_permissions(entry: u64) -> Permissions;

    /// The value the CPU is given for the root: AMD's `N_CR3`, Intel's EPTP.
    fn root_pointer(root: u64) -> u64;
}

/// AMD nested page tables (SVM). Entries are ordinary long-mode page-table entries.
///
/// Every entry, leaf or not, sets P, R/W and U/S: nested walks are treated as user accesses
/// (APM §15.25.5), so a clear U/S faults (QEMU's emulator enforces it). A leaf drops R/W when
/// not writable and sets NX when not executable; NX is only valid when the host runs with
/// `EFER.NXE = 1` at VMRUN (otherwise bit 63 is a reserved-bit fault). A leaf cannot deny
/// reads: NPT needs `read`. Caching bits (PWT, PCD, PAT) are left 0: write-back, combined with
/// the guest's own PAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Npt;

const NPT_PRESENT: u64 = 1 << 0;
const NPT_WRITABLE: u64 = 1 << 1;
const NPT_USER: u64 = 1 << 2;
const NPT_NO_EXECUTE: u64 = 1 << 63;

impl SlatFormat for Npt {
    const NAME: &'static str = "NPT";

    fn supports(perms: Permissions) -> bool {
        perms.read
    }

    fn table_entry(table: u64, _level: u32) -> u64 {
        (table & ADDRESS_MASK) | NPT_PRESENT | NPT_WRITABLE | NPT_USER
    }

    fn leaf_entry(spa: u64, size: BlockSize, perms: Permissions) -> u64 {
        let mut entry = (spa & ADDRESS_MASK) | NPT_PRESENT | NPT_USER;
        if perms.write {
            entry |= NPT_WRITABLE;
        }
        if !perms.execute {
            entry |= NPT_NO_EXECUTE;
        }
        if size != BlockSize::Size4K {
            entry |= LARGE_PAGE;
        }
        entry
    }

    fn is_present(entry: u64) -> bool {
        entry & NPT_PRESENT != 0
    }

    fn leaf_permissions(entry: u64) -> Permissions {
        Permissions {
            read: entry & NPT_PRESENT != 0,
            write: entry & NPT_WRITABLE != 0,
            execute: entry & NPT_NO_EXECUTE == 0,
        }
    }

    /// `N_CR3` (VMCB offset 0xB0): the PML4 address, PWT and PCD clear (write-back walks).
    fn root_pointer(root: u64) -> u64 {
        root & ADDRESS_MASK
    }
}

/// Intel extended page tables (VMX). R, W and X are bits 0–2; an entry with none of them is
/// not present.
///
/// Non-leaf entries grant R|W|X. Leaves carry the EPT memory type in bits 5:3 (6, write-back;
/// bit 6 "ignore PAT" clear, so the guest's PAT still applies). Write without read is an EPT
/// misconfiguration and is refused; execute-only is accepted, and is the caller's to allow
/// only when `IA32_VMX_EPT_VPID_CAP` bit 0 says the CPU supports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ept;

const EPT_READ: u64 = 1 << 0;
const EPT_WRITE: u64 = 1 << 1;
const EPT_EXECUTE: u64 = 1 << 2;
/// Memory type write-back (6) in bits 5:3 of a leaf.
const EPT_WRITE_BACK: u64 = 6 << 3;
/// EPTP: page-walk length minus one (3, four levels) in bits 5:3; bits 2:0 memory type WB.
const EPTP_FOUR_LEVELS_WB: u64 = (3 << 3) | 6;

impl SlatFormat for Ept {
    const NAME: &'static str = "EPT";

    fn supports(perms: Permissions) -> bool {
        // EPT forbids write-without-read (SDM vol. 3C §29.3.3.1) and an all-clear leaf is
        // "not present": readable, or execute-only.
        perms.read || (perms.execute && !perms.write)
    }

    fn table_entry(table: u64, _level: u32) -> u64 {
        (table & ADDRESS_MASK) | EPT_READ | EPT_WRITE | EPT_EXECUTE
    }

    fn leaf_entry(spa: u64, size: BlockSize, perms: Permissions) -> u64 {
        let mut entry = (spa & ADDRESS_MASK) | EPT_WRITE_BACK;
        for (granted, bit) in [
            (perms.read, EPT_READ),
            (perms.write, EPT_WRITE),
            (perms.execute, EPT_EXECUTE),
        ] {
            if granted {
                entry |= bit;
            }
        }
        if size != BlockSize::Size4K {
            entry |= LARGE_PAGE;
        }
        entry
    }

    fn is_present(entry: u64) -> bool {
        entry & (EPT_READ | EPT_WRITE | EPT_EXECUTE) != 0
    }

    fn leaf_permissions(entry: u64) -> Permissions {
        Permissions {
            read: entry & EPT_READ != 0,
            write: entry & EPT_WRITE != 0,
            execute: entry & EPT_EXECUTE != 0,
        }
    }

    /// EPTP: the PML4 address, a 4-level walk, write-back paging-structure accesses, no
    /// accessed/dirty flags.
    fn root_pointer(root: u64) -> u64 {
        (root & ADDRESS_MASK) | EPTP_FOUR_LEVELS_WB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RWX: Permissions = Permissions::READ_WRITE_EXECUTE;
    const RW: Permissions = Permissions::READ_WRITE;
    const RX: Permissions = Permissions::READ_EXECUTE;

    #[test]
    fn npt_entries() {
        assert_eq!(Npt::table_entry(0x1234_5000, 3), 0x1234_5007);
        assert_eq!(
            Npt::leaf_entry(0x4000_0000, BlockSize::Size1G, RWX),
            0x4000_0087
        );
        assert_eq!(
            Npt::leaf_entry(0x20_0000, BlockSize::Size2M, RW),
            0x8000_0000_0020_0087
        );
        assert_eq!(Npt::leaf_entry(0x5000, BlockSize::Size4K, RX), 0x5005);
        let read_only = Permissions {
            read: true,
            write: false,
            execute: false,
        };
        let entry = Npt::leaf_entry(0x5000, BlockSize::Size4K, read_only);
        assert_eq!(entry, 0x8000_0000_0000_5005);
        assert_eq!(Npt::leaf_permissions(entry), read_only);
        assert!(!Npt::supports(Permissions {
            read: false,
            write: false,
            execute: true
        }));
        assert!(Npt::is_present(1) && !Npt::is_present(0x8000_0000_0000_5006));
        assert_eq!(Npt::root_pointer(0x7000), 0x7000);
    }

    #[test]
    fn ept_entries() {
        assert_eq!(Ept::table_entry(0x1234_5000, 1), 0x1234_5007);
        assert_eq!(
            Ept::leaf_entry(0x4000_0000, BlockSize::Size1G, RWX),
            0x4000_00b7
        );
        assert_eq!(Ept::leaf_entry(0x20_0000, BlockSize::Size2M, RW), 0x20_00b3);
        assert_eq!(Ept::leaf_entry(0x5000, BlockSize::Size4K, RX), 0x5035);
        for perms in [RWX, RW, RX] {
            let entry = Ept::leaf_entry(0x5000, BlockSize::Size4K, perms);
            assert_eq!(Ept::leaf_permissions(entry), perms);
            assert!(Ept::is_present(entry));
        }
        let write_only = Permissions {
            read: false,
            write: true,
            execute: false,
        };
        assert!(!Ept::supports(write_only));
        assert!(!Ept::supports(Permissions::default()));
        assert!(Ept::supports(Permissions {
            read: false,
            write: false,
            execute: true
        }));
        assert!(!Ept::is_present(0x30));
        assert_eq!(Ept::root_pointer(0x7000), 0x701e);
    }
}
