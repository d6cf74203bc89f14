//! The I/O Virtualization Reporting Structure, "IVRS" (AMD I/O Virtualization Technology
//! (IOMMU) Specification 48882 rev 3.x §5.2).
//!
//! After the 36-byte header come IVinfo (u32) and 8 reserved bytes (§5.2.1), then blocks with
//! a u8 type, u8 flags and u16 length: IVHDs (§5.2.2) of type 0x10 (24-byte header), 0x11 and
//! 0x40 (40-byte header, with the EFR image), and IVMDs (§5.2.3) of types 0x20, 0x21 and 0x22
//! (32 bytes). Other block types are skipped by their length and listed in [`Ivrs::skipped`].
//!
//! Firmware describes one IOMMU with several IVHDs of different types, so that an OS takes the
//! newest it understands; Linux uses the highest type it supports (one type for the whole
//! table, chosen from the blocks sharing the first block's device ID). We choose per IOMMU,
//! which also holds where IOMMUs are listed with different types: for each segment and base
//! address [`Ivrs::units`] keeps only the block of the highest type (0x40 over 0x11 over
//! 0x10), at the place where that IOMMU's first block was; the others are listed as skipped.
//! Two blocks of one type for one IOMMU are a problem: the first is kept.
//!
//! An IVHD's device entries (§5.2.2.2) are normalised into device ID ranges: select entries
//! become one-ID ranges, "all" 0..=0xFFFF, and a start-of-range entry (3, 0x43 alias, 0x47
//! extended) is closed by the next end-of-range entry (4). A start that nothing closes, an end
//! with no start and an end below its start are problems, and the range is dropped (a device
//! then counts as covered by no IOMMU, rather than by a guessed one). An entry type of 128 or
//! more other than 0xF0 (ACPI HID device) has a size we cannot know, so it ends its block's
//! entry walk, as an entry running past its block does. Entry types below 128 we do not
//! decode are skipped by the size their type encodes (bits 7:6, §5.2.2.2). ACPI HID entries
//! are accepted in any IVHD type, as Linux does, though the spec lists them for 0x40 only.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::bytes::{u16_at, u32_at, u64_at, u8_at};
use super::problem::{AcpiProblem, IvrsFault};
use super::sdt::{Structure, StructureHeader, Structures, SDT_HEADER_LENGTH};

/// Bytes before the first block: header, IVinfo, 8 reserved (§5.2.1).
pub const IVRS_FIXED_LENGTH: usize = SDT_HEADER_LENGTH + 12;

/// The offset bits inside a 4 KiB page.
const PAGE_MASK: u64 = 0xFFF;

/// The decoded IVRS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ivrs {
    /// IVinfo, raw; see the accessors.
    pub info: u32,
    /// One IVHD per IOMMU: the block of the highest type that describes it.
    pub units: Vec<Ivhd>,
    /// IVMDs in table order.
    pub memory: Vec<Ivmd>,
    /// Blocks passed over: unknown types, and IVHDs a higher type supersedes.
    pub skipped: Vec<SkippedBlock>,
}

/// An I/O virtualization hardware definition: one IOMMU and the devices behind it (§5.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ivhd {
    /// Block type: 0x10, 0x11 or 0x40.
    pub kind: u8,
    /// Flags: bit 0 HtTunEn, 1 PassPW, 2 ResPassPW, 3 Isoc, 4 IotlbSup, 5 Coherent,
    /// 6 PreFSup, 7 PPRSup.
    pub flags: u8,
    /// The IOMMU's own requester ID (bus << 8 | device << 3 | function).
    pub iommu_device_id: u16,
    /// Offset of the IOMMU's capability block in its PCI configuration space.
    pub capability_offset: u16,
    /// Physical address of the IOMMU's MMIO registers.
    pub base: u64,
    pub segment: u16,
    /// IOMMU info: bits 4:0 MSI number, 12:8 unit ID.
    pub info: u16,
    /// Type 0x10: IOMMU feature reporting; 0x11 and 0x40: IOMMU attributes.
    pub features: u32,
    /// Type 0x11 and 0x40: the image of the Extended Feature Register.
    pub efr: Option<u64>,
    /// Device ID ranges behind the IOMMU, in entry order.
    pub ranges: Vec<IvhdRange>,
    /// I/O APICs and HPETs (entry type 0x48).
    pub specials: Vec<IvhdSpecial>,
    /// ACPI devices named by _HID (entry type 0xF0).
    pub acpi_devices: Vec<IvhdAcpiDevice>,
}

/// Device IDs `first..=last` behind an IOMMU, with the settings its entries gave them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IvhdRange {
    pub first: u16,
    /// Inclusive; never below `first`.
    pub last: u16,
    /// Device table entry settings: bit 0 INITPass, 1 EIntPass, 2 NMIPass, 5:4 SysMgt,
    /// 6 Lint0Pass, 7 Lint1Pass.
    pub settings: u8,
    /// Alias entries (0x42, 0x43): the requester ID the devices' DMA arrives with.
    pub alias: Option<u16>,
    /// Extended entries (0x46, 0x47): extended settings (bit 31 ATS disabled); else 0.
    pub extended: u32,
}

/// What a special device entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialVariety {
    /// 1: an I/O APIC; the handle is its APIC ID.
    IoApic,
    /// 2: an HPET; the handle is its HPET number.
    Hpet,
    /// Any other value.
    Other(u8),
}

/// An I/O APIC or HPET behind an IOMMU (entry type 0x48).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IvhdSpecial {
    pub variety: SpecialVariety,
    pub handle: u8,
    /// The requester ID its interrupts arrive with.
    pub device_id: u16,
    pub settings: u8,
}

/// An ACPI device behind an IOMMU, named by its _HID (entry type 0xF0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IvhdAcpiDevice {
    pub device_id: u16,
    pub settings: u8,
    pub hid: [u8; 8],
    pub cid: [u8; 8],
    /// 0 none, 1 integer, 2 string.
    pub uid_format: u8,
    pub uid: Vec<u8>,
}

/// An I/O virtualization memory definition (§5.2.3): memory some devices need mapped (unity)
/// or kept untranslated (exclusion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ivmd {
    /// Block type: 0x20 all devices, 0x21 one device, 0x22 a range of devices.
    pub kind: u8,
    /// Bit 0 Unity, 1 IR (read), 2 IW (write), 3 ExclusionRange.
    pub flags: u8,
    pub segment: u16,
    /// Device IDs it applies to, inclusive (0..=0xFFFF for type 0x20).
    pub first: u16,
    pub last: u16,
    /// First byte (4 KiB aligned; widened if the table's was not).
    pub base: u64,
    /// Last byte, inclusive (so a block may end at 2^64).
    pub limit: u64,
}

impl Ivmd {
    /// Flags bit 0: the block must be identity mapped for the devices.
    pub fn unity(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Flags bit 1: the devices may read the block.
    pub fn readable(&self) -> bool {
        self.flags & 2 != 0
    }

    /// Flags bit 2: the devices may write the block.
    pub fn writable(&self) -> bool {
        self.flags & 4 != 0
    }

    /// Flags bit 3: the block is an exclusion range (DMA to it is not translated).
    pub fn exclusion(&self) -> bool {
        self.flags & 8 != 0
    }
}

/// A block passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkippedBlock {
    pub kind: u8,
    /// Its offset in the table.
    pub offset: usize,
}

impl Ivrs {
    /// IVinfo bit 0, EFRSup: the IVHDs' EFR images are valid.
    pub fn efr_supported(&self) -> bool {
        self.info & 1 != 0
    }

    /// IVinfo bit 1: firmware asks for DMA remapping to be kept on (pre-boot DMA protection).
    pub fn dma_remap_support(&self) -> bool {
        self.info & 2 != 0
    }

    /// IVinfo bits 7:5, GVASize: guest virtual address size (2 means 48 bits).
    pub fn guest_virtual_size(&self) -> u8 {
        ((self.info >> 5) & 0x7) as u8
    }

    /// IVinfo bits 14:8, PASize: physical address bits.
    pub fn physical_address_bits(&self) -> u8 {
        ((self.info >> 8) & 0x7F) as u8
    }

    /// IVinfo bits 21:15, VASize: virtual address bits.
    pub fn virtual_address_bits(&self) -> u8 {
        ((self.info >> 15) & 0x7F) as u8
    }

    /// IVinfo bit 22, HtAtsResv: the HyperTransport ATS address range is reserved.
    pub fn ht_ats_reserved(&self) -> bool {
        self.info & (1 << 22) != 0
    }

    /// The IOMMU that translates DMA with `requester_id` on `segment`, as an index in
    /// [`Ivrs::units`], with the alias the device's DMA arrives with if an alias entry names
    /// it. The last range in table order that holds the ID decides, as Linux fills its
    /// lookup tables entry by entry. `None`: covered by no IOMMU. Special devices and ACPI
    /// HID devices are not consulted: see [`Ivhd::specials`] and [`Ivhd::acpi_devices`].
    pub fn unit_for(&self, segment: u16, requester_id: u16) -> Option<(usize, Option<u16>)> {
        let mut found = None;
        for (i, unit) in self.units.iter().enumerate() {
            if unit.segment != segment {
                continue;
            }
            for range in &unit.ranges {
                if range.first <= requester_id && requester_id <= range.last {
                    found = Some((i, range.alias));
                }
            }
        }
        found
    }

    /// The IVMDs that apply to `requester_id` on `segment`, in table order. Pass the ID the
    /// DMA arrives with (the alias, if [`Ivrs::unit_for`] gave one).
    pub fn memory_for(&self, segment: u16, requester_id: u16) -> Vec<&Ivmd> {
        self.memory
            .iter()
            .filter(|m| m.segment == segment && m.first <= requester_id && requester_id <= m.last)
            .collect()
    }
}

/// Rank of the IVHD types, higher wins; `None` for other types.
fn ivhd_rank(kind: u8) -> Option<u8> {
    match kind {
        0x10 => Some(0),
        0x11 => Some(1),
        0x40 => Some(2),
        _ => None,
    }
}

/// Decode an IVRS: `table` is the whole table, header included. Never fails: what is wrong
/// goes to `problems`, with the fallback the module documentation describes.
pub fn parse(table: &[u8], problems: &mut Vec<AcpiProblem>) -> Ivrs {
    let mut ivrs = Ivrs::default();
    if table.len() < IVRS_FIXED_LENGTH {
        problems.push(AcpiProblem::FixedPartShort {
            table: *b"IVRS",
            length: table.len(),
            minimum: IVRS_FIXED_LENGTH,
        });
        return ivrs;
    }
    ivrs.info = u32_at(table, SDT_HEADER_LENGTH).unwrap_or(0);
    // Each IOMMU's (segment, base) → its position in `units` and the index and offset of the
    // block kept there. A map keeps this n log n however many blocks a hostile table holds.
    let mut seen: BTreeMap<(u16, u64), (usize, usize, usize)> = BTreeMap::new();
    let mut walk = Structures::new(table, IVRS_FIXED_LENGTH, StructureHeader::Ivrs, problems);
    while let Some(s) = walk.next() {
        let kind = u8_at(s.bytes, 0).unwrap_or(0);
        let header = match kind {
            0x10 => 24,
            0x11 | 0x40 => 40,
            0x20..=0x22 => {
                if walk.fits(&s, 32) {
                    if let Some(m) = decode_ivmd(&s, &mut walk) {
                        ivrs.memory.push(m);
                    }
                }
                continue;
            }
            _ => {
                let offset = s.offset;
                ivrs.skipped.push(SkippedBlock { kind, offset });
                continue;
            }
        };
        if !walk.fits(&s, header) {
            continue;
        }
        let unit = decode_ivhd(&s, header, &mut walk);
        let key = (unit.segment, unit.base);
        let rank = ivhd_rank(kind);
        let Some(&(at, first, first_offset)) = seen.get(&key) else {
            seen.insert(key, (ivrs.units.len(), s.index, s.offset));
            ivrs.units.push(unit);
            continue;
        };
        let Some(kept) = ivrs.units.get_mut(at) else {
            continue;
        };
        let kept_rank = ivhd_rank(kept.kind);
        let offset = s.offset;
        if rank > kept_rank {
            let old = core::mem::replace(kept, unit);
            ivrs.skipped.push(SkippedBlock {
                kind: old.kind,
                offset: first_offset,
            });
            seen.insert(key, (at, s.index, offset));
        } else if rank == kept_rank {
            walk.table_problem(problem(&s, IvrsFault::DuplicateBlock { first }));
        } else {
            ivrs.skipped.push(SkippedBlock { kind, offset });
        }
    }
    ivrs
}

/// A problem about block `s`.
fn problem(s: &Structure<'_>, fault: IvrsFault) -> AcpiProblem {
    AcpiProblem::Ivrs {
        index: s.index,
        block_type: u8_at(s.bytes, 0).unwrap_or(0),
        offset: s.offset,
        fault,
    }
}

/// A start-of-range entry waiting for its end: its table offset and the range so far.
struct Pending {
    at: usize,
    range: IvhdRange,
}

/// Decode IVHD block `s`, whose fixed header is `header` bytes (§5.2.2.1), and its device
/// entries (§5.2.2.2).
fn decode_ivhd(s: &Structure<'_>, header: usize, walk: &mut Structures<'_, '_>) -> Ivhd {
    let b = s.bytes;
    let mut unit = Ivhd {
        kind: u8_at(b, 0).unwrap_or(0),
        flags: u8_at(b, 1).unwrap_or(0),
        iommu_device_id: u16_at(b, 4).unwrap_or(0),
        capability_offset: u16_at(b, 6).unwrap_or(0),
        base: u64_at(b, 8).unwrap_or(0),
        segment: u16_at(b, 16).unwrap_or(0),
        info: u16_at(b, 18).unwrap_or(0),
        features: u32_at(b, 20).unwrap_or(0),
        efr: if header >= 40 { u64_at(b, 24) } else { None },
        ranges: Vec::new(),
        specials: Vec::new(),
        acpi_devices: Vec::new(),
    };
    let mut pending: Option<Pending> = None;
    let mut at = header;
    while let Some(room) = b.len().checked_sub(at).filter(|&r| r > 0) {
        let here = s.offset.saturating_add(at);
        let entry_type = u8_at(b, at).unwrap_or(0);
        let length = match entry_type {
            // Bits 7:6 encode the size of types below 128: 4 or 8 bytes.
            0..=0x3F => 4,
            0x40..=0x7F => 8,
            // HID 8, CID 8, UID format, UID length, then the UID; 22 if even that is cut off.
            0xF0 => 22 + usize::from(u8_at(b, at + 21).unwrap_or(0)),
            _ => {
                walk.table_problem(problem(
                    s,
                    IvrsFault::UnknownEntry {
                        at: here,
                        entry_type,
                    },
                ));
                break;
            }
        };
        let Some(e) = b.get(at..at + length) else {
            let fault = IvrsFault::EntryPastEnd {
                at: here,
                entry_type,
                length,
                room,
            };
            walk.table_problem(problem(s, fault));
            break;
        };
        let id = u16_at(e, 1).unwrap_or(0);
        let settings = u8_at(e, 3).unwrap_or(0);
        let one = |alias, extended| IvhdRange {
            first: id,
            last: id,
            settings,
            alias,
            extended,
        };
        let alias = u16_at(e, 5);
        let extended = u32_at(e, 4).unwrap_or(0);
        let start = match entry_type {
            1 => {
                unit.ranges.push(IvhdRange {
                    first: 0,
                    last: 0xFFFF,
                    ..one(None, 0)
                });
                None
            }
            2 => {
                unit.ranges.push(one(None, 0));
                None
            }
            3 => Some(one(None, 0)),
            0x42 => {
                unit.ranges.push(one(alias, 0));
                None
            }
            0x43 => Some(one(alias, 0)),
            0x46 => {
                unit.ranges.push(one(None, extended));
                None
            }
            0x47 => Some(one(None, extended)),
            4 => {
                match pending.take() {
                    None => {
                        let fault = IvrsFault::EndWithoutStart { at: here };
                        walk.table_problem(problem(s, fault));
                    }
                    Some(p) if id < p.range.first => {
                        let (first, last) = (p.range.first, id);
                        let fault = IvrsFault::RangeInverted {
                            at: here,
                            first,
                            last,
                        };
                        walk.table_problem(problem(s, fault));
                    }
                    Some(p) => unit.ranges.push(IvhdRange {
                        last: id,
                        ..p.range
                    }),
                }
                None
            }
            0x48 => {
                unit.specials.push(IvhdSpecial {
                    variety: match u8_at(e, 7).unwrap_or(0) {
                        1 => SpecialVariety::IoApic,
                        2 => SpecialVariety::Hpet,
                        other => SpecialVariety::Other(other),
                    },
                    handle: u8_at(e, 4).unwrap_or(0),
                    device_id: u16_at(e, 5).unwrap_or(0),
                    settings,
                });
                None
            }
            0xF0 => {
                let eight = |from: usize| {
                    e.get(from..from + 8)
                        .and_then(|h| h.try_into().ok())
                        .unwrap_or([0; 8])
                };
                unit.acpi_devices.push(IvhdAcpiDevice {
                    device_id: id,
                    settings,
                    hid: eight(4),
                    cid: eight(12),
                    uid_format: u8_at(e, 20).unwrap_or(0),
                    uid: e.get(22..).unwrap_or(&[]).to_vec(),
                });
                None
            }
            _ => None, // padding (0) or a reserved type of known size
        };
        if let Some(range) = start {
            // A second start before an end: the first is never closed.
            if let Some(old) = pending.replace(Pending { at: here, range }) {
                let fault = IvrsFault::RangeWithoutEnd { at: old.at };
                walk.table_problem(problem(s, fault));
            }
        }
        // length ≥ 4: the loop advances.
        at += length;
    }
    if let Some(p) = pending {
        walk.table_problem(problem(s, IvrsFault::RangeWithoutEnd { at: p.at }));
    }
    unit
}

/// Decode IVMD block `s` (§5.2.3, 32 bytes); `None` if it describes no memory.
fn decode_ivmd(s: &Structure<'_>, walk: &mut Structures<'_, '_>) -> Option<Ivmd> {
    let b = s.bytes;
    let kind = u8_at(b, 0).unwrap_or(0);
    let id = u16_at(b, 4).unwrap_or(0);
    let aux = u16_at(b, 6).unwrap_or(0);
    let start = u64_at(b, 16).unwrap_or(0);
    let length = u64_at(b, 24).unwrap_or(0);
    let (mut first, mut last) = match kind {
        0x20 => (0, 0xFFFF),
        0x21 => (id, id),
        _ => (id, aux),
    };
    if last < first {
        // An IVMD restricts, so cover every ID it names rather than none.
        walk.table_problem(problem(s, IvrsFault::DeviceRangeInverted { first, last }));
        core::mem::swap(&mut first, &mut last);
    }
    let Some(span) = length.checked_sub(1) else {
        walk.table_problem(problem(s, IvrsFault::MemoryEmpty { start }));
        return None;
    };
    let limit = match start.checked_add(span) {
        Some(limit) => limit,
        None => {
            walk.table_problem(problem(s, IvrsFault::MemoryWraps { start, length }));
            u64::MAX
        }
    };
    if start & PAGE_MASK != 0 || length & PAGE_MASK != 0 {
        // Widening only adds pages to what the devices keep: the safe direction.
        walk.table_problem(problem(s, IvrsFault::MemoryUnaligned { start, length }));
    }
    Some(Ivmd {
        kind,
        flags: u8_at(b, 1).unwrap_or(0),
        segment: u16_at(b, 8).unwrap_or(0),
        first,
        last,
        base: start & !PAGE_MASK,
        limit: limit | PAGE_MASK,
    })
}

#[cfg(test)]
mod tests;
