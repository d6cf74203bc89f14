//! Places the tables in guest-physical memory and ties them together: the RSDP at the
//! base, then the XSDT, RSDT, FADT, FACS, DSDT and the tables the XSDT lists (ACPI 6.5
//! §5.2.5: RSDP 16-byte aligned; §5.2.10: FACS 64-byte aligned; every other table is
//! 8-byte aligned here).

use alloc::vec::Vec;

use crate::fadt::{self, FADT_LEN};
use crate::root::{self, RSDP_LEN};
use crate::{AcpiError, GuestPlatform};

/// Signature under which [`AcpiTables`] lists the RSDP (whose own signature is the
/// 8 bytes "RSD PTR ").
pub const RSDP_SIGNATURE: [u8; 4] = *b"RSDP";

/// One table with its guest-physical address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedTable {
    /// Its signature ([`RSDP_SIGNATURE`] for the RSDP).
    pub signature: [u8; 4],
    /// Guest-physical address of its first byte.
    pub address: u64,
    /// Its bytes, checksummed.
    pub bytes: Vec<u8>,
}

/// A complete set of guest ACPI tables, ready to copy into guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    base: u64,
    end: u64,
    tables: Vec<PlacedTable>,
}

impl AcpiTables {
    /// Guest-physical address of the RSDP (the placement's base); hand it to the guest
    /// (PVH `rsdp_paddr`, EFI configuration table) or put the tables where a BIOS scan
    /// finds it (0xE0000..0xFFFFF).
    pub fn rsdp_address(&self) -> u64 {
        self.base
    }

    /// Bytes from the RSDP to the end of the last table.
    pub fn len(&self) -> u64 {
        self.end - self.base
    }

    /// Never true: there is always an RSDP.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Every table, in address order, the RSDP first.
    pub fn tables(&self) -> &[PlacedTable] {
        &self.tables
    }

    /// The table with `signature`, if generated.
    pub fn table(&self, signature: &[u8; 4]) -> Option<&PlacedTable> {
        self.tables.iter().find(|t| &t.signature == signature)
    }

    /// All tables as one image to copy to [`Self::rsdp_address`], gaps zeroed.
    pub fn image(&self) -> Vec<u8> {
        let mut image = alloc::vec![0; self.len() as usize];
        for table in &self.tables {
            let start = (table.address - self.base) as usize;
            image[start..start + table.bytes.len()].copy_from_slice(&table.bytes);
        }
        image
    }
}

/// Places the tables of a checked platform: `dsdt` and `listed` (the tables the XSDT
/// points at besides the FADT, with their signatures) are already built.
pub(crate) fn place(
    platform: &GuestPlatform,
    dsdt: Vec<u8>,
    listed: Vec<([u8; 4], Vec<u8>)>,
) -> Result<AcpiTables, AcpiError> {
    let base = platform.placement.base;
    let facs = fadt::build_facs();
    let entries = listed.len() + 1; // and the FADT
    let mut cursor = Cursor { next: base };
    let rsdp_at = cursor.take(RSDP_LEN, 16)?;
    let xsdt_at = cursor.take(root::xsdt_len(entries), 8)?;
    let rsdt_at = cursor.take(root::rsdt_len(entries), 8)?;
    let fadt_at = cursor.take(FADT_LEN, 8)?;
    let facs_at = cursor.take(facs.len(), 64)?;
    let dsdt_at = cursor.take(dsdt.len(), 8)?;
    let mut listed_at = Vec::with_capacity(listed.len());
    for (_, bytes) in &listed {
        listed_at.push(cursor.take(bytes.len(), 8)?);
    }
    let end = cursor.next;
    let needed = end - base;
    if needed > platform.placement.size {
        return Err(AcpiError::TablesDoNotFit {
            needed,
            available: platform.placement.size,
        });
    }
    let below_4g =
        |address: u64| u32::try_from(address).map_err(|_| AcpiError::TablesAbove4GiB { end });
    if end > 1 << 32 {
        return Err(AcpiError::TablesAbove4GiB { end });
    }

    let fadt = fadt::build(&platform.devices, below_4g(facs_at)?, below_4g(dsdt_at)?);
    let mut pointed: Vec<u64> = alloc::vec![fadt_at];
    pointed.extend_from_slice(&listed_at);
    let pointed32 = pointed
        .iter()
        .map(|&a| below_4g(a))
        .collect::<Result<Vec<u32>, _>>()?;
    let xsdt = root::build_xsdt(&pointed);
    let rsdt = root::build_rsdt(&pointed32);
    let rsdp = root::build_rsdp(below_4g(rsdt_at)?, xsdt_at);

    let mut tables = alloc::vec![
        PlacedTable {
            signature: RSDP_SIGNATURE,
            address: rsdp_at,
            bytes: rsdp.to_vec()
        },
        PlacedTable {
            signature: *b"XSDT",
            address: xsdt_at,
            bytes: xsdt
        },
        PlacedTable {
            signature: *b"RSDT",
            address: rsdt_at,
            bytes: rsdt
        },
        PlacedTable {
            signature: *b"FACP",
            address: fadt_at,
            bytes: fadt
        },
        PlacedTable {
            signature: *b"FACS",
            address: facs_at,
            bytes: facs
        },
        PlacedTable {
            signature: *b"DSDT",
            address: dsdt_at,
            bytes: dsdt
        },
    ];
    for ((signature, bytes), address) in listed.into_iter().zip(listed_at) {
        tables.push(PlacedTable {
            signature,
            address,
            bytes,
        });
    }
    Ok(AcpiTables { base, end, tables })
}

/// Hands out aligned, consecutive address ranges, refusing to wrap around.
struct Cursor {
    next: u64,
}

impl Cursor {
    fn take(&mut self, len: usize, align: u64) -> Result<u64, AcpiError> {
        let overflow = AcpiError::TablesAbove4GiB { end: u64::MAX };
        let start = self.next.checked_next_multiple_of(align).ok_or(overflow)?;
        self.next = start.checked_add(len as u64).ok_or(overflow)?;
        Ok(start)
    }
}
