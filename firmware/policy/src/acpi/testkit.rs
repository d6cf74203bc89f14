//! Test-only builders for ACPI table bytes (ACPI 6.5 §5.2 layouts), and the loader for the
//! tables captured from QEMU under `tests/data/`.

use alloc::vec::Vec;

use super::MemoryImage;

/// Where [`Machine::image`] puts things.
pub const RSDP_ADDRESS: u64 = 0xF_5A00;
const ROOT_ADDRESS: u64 = 0x7FFE_0003; // deliberately unaligned
const FIRST_TABLE: u64 = 0x7FFE_1000;

/// Set byte 9 so that `table` sums to zero.
pub fn fix_checksum(table: &mut [u8]) {
    table[9] = 0;
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[9] = 0u8.wrapping_sub(sum);
}

/// A table: 36-byte header (OEM "NVTEST") followed by `body`, length and checksum filled in.
pub fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"NVTEST");
    t.extend_from_slice(b"NUMATEST");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"TEST");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t);
    t
}

/// A revision 0 RSDP.
pub fn rsdp_v0(rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"NVTEST");
    r.push(0);
    r.extend_from_slice(&rsdt.to_le_bytes());
    r[8] = 0u8.wrapping_sub(r.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
    r
}

/// A revision 2 RSDP naming both roots.
pub fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = rsdp_v0(rsdt);
    r[15] = 2;
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0; 4]);
    r[8] = 0;
    r[8] = 0u8.wrapping_sub(r[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b)));
    r[32] = 0u8.wrapping_sub(r.iter().fold(0u8, |s, b| s.wrapping_add(*b)));
    r
}

/// MADT type 0.
pub fn lapic(uid: u8, apic_id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, uid, apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

/// MADT type 9.
pub fn x2apic(apic_id: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    for v in [apic_id, flags, apic_id] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e
}

/// A MADT (revision 5) with local APIC address 0xFEE00000, PC-AT flag set.
pub fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    madt_rev(5, entries)
}

/// A MADT of the given revision.
pub fn madt_rev(revision: u8, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = 0xFEE0_0000u32.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    entries.iter().for_each(|e| body.extend_from_slice(e));
    table(b"APIC", revision, &body)
}

/// SRAT type 0 (all 32 pxm bits written, as revision ≥ 2 lays them out).
pub fn cpu_affinity(pxm: u32, apic_id: u8, flags: u32) -> Vec<u8> {
    let p = pxm.to_le_bytes();
    let mut e = vec![0, 16, p[0], apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&[0, p[1], p[2], p[3]]);
    e.extend_from_slice(&0u32.to_le_bytes());
    e
}

/// SRAT type 2.
pub fn x2apic_affinity(pxm: u32, apic_id: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![2, 24, 0, 0];
    for v in [pxm, apic_id, flags, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e
}

/// SRAT type 1.
pub fn memory_affinity(pxm: u32, base: u64, length: u64, flags: u32) -> Vec<u8> {
    let mut e = vec![1, 40];
    e.extend_from_slice(&pxm.to_le_bytes());
    e.extend_from_slice(&[0; 2]);
    e.extend_from_slice(&base.to_le_bytes());
    e.extend_from_slice(&length.to_le_bytes());
    e.extend_from_slice(&[0; 4]);
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&[0; 8]);
    e
}

/// SRAT type 5.
pub fn generic_initiator(pxm: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![5, 32, 0, 0];
    e.extend_from_slice(&pxm.to_le_bytes());
    e.extend_from_slice(&[0; 20]);
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

/// An SRAT of the given revision.
pub fn srat(revision: u8, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 8]);
    entries.iter().for_each(|e| body.extend_from_slice(e));
    table(b"SRAT", revision, &body)
}

/// A SLIT with `n` localities and the given row-major matrix.
pub fn slit(n: u64, matrix: &[u8]) -> Vec<u8> {
    let mut body = n.to_le_bytes().to_vec();
    body.extend_from_slice(matrix);
    table(b"SLIT", 1, &body)
}

/// HMAT type 1 structure.
pub fn hmat_locality(
    data_type: u8,
    initiators: &[u32],
    targets: &[u32],
    entries: &[u16],
) -> Vec<u8> {
    let length = 32 + 4 * (initiators.len() + targets.len()) + 2 * entries.len();
    let mut e = 1u16.to_le_bytes().to_vec();
    e.extend_from_slice(&[0; 2]);
    e.extend_from_slice(&(length as u32).to_le_bytes());
    e.extend_from_slice(&[0, data_type, 0, 0]);
    e.extend_from_slice(&(initiators.len() as u32).to_le_bytes());
    e.extend_from_slice(&(targets.len() as u32).to_le_bytes());
    e.extend_from_slice(&[0; 4]);
    e.extend_from_slice(&1000u64.to_le_bytes());
    initiators
        .iter()
        .chain(targets)
        .for_each(|p| e.extend_from_slice(&p.to_le_bytes()));
    entries
        .iter()
        .for_each(|v| e.extend_from_slice(&v.to_le_bytes()));
    e
}

/// An HMAT (revision 2).
pub fn hmat(structures: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![0; 4];
    structures.iter().for_each(|s| body.extend_from_slice(s));
    table(b"HMAT", 2, &body)
}

/// A DMAR (revision 1): host address width field `width - 1`, `flags`, then `structures`.
pub fn dmar(width: u8, flags: u8, structures: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![width - 1, flags];
    body.extend_from_slice(&[0; 10]);
    structures.iter().for_each(|s| body.extend_from_slice(s));
    table(b"DMAR", 1, &body)
}

/// A DMAR structure: u16 type, u16 length, then `fixed` and `scopes`.
pub fn dmar_structure(kind: u16, fixed: &[u8], scopes: &[Vec<u8>]) -> Vec<u8> {
    let length = 4 + fixed.len() + scopes.iter().map(Vec::len).sum::<usize>();
    let mut s = kind.to_le_bytes().to_vec();
    s.extend_from_slice(&(length as u16).to_le_bytes());
    s.extend_from_slice(fixed);
    scopes.iter().for_each(|e| s.extend_from_slice(e));
    s
}

/// A DMAR device scope (VT-d §8.3.1).
pub fn scope(kind: u8, enumeration_id: u8, start_bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut e = vec![
        kind,
        (6 + 2 * path.len()) as u8,
        0,
        0,
        enumeration_id,
        start_bus,
    ];
    path.iter().for_each(|&(d, f)| e.extend_from_slice(&[d, f]));
    e
}

/// DMAR type 0 (DRHD) with a size field of 0 (one page).
pub fn drhd(flags: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut fixed = vec![flags, 0];
    fixed.extend_from_slice(&segment.to_le_bytes());
    fixed.extend_from_slice(&base.to_le_bytes());
    dmar_structure(0, &fixed, scopes)
}

/// DMAR type 1 (RMRR).
pub fn rmrr(segment: u16, base: u64, limit: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut fixed = vec![0, 0];
    fixed.extend_from_slice(&segment.to_le_bytes());
    fixed.extend_from_slice(&base.to_le_bytes());
    fixed.extend_from_slice(&limit.to_le_bytes());
    dmar_structure(1, &fixed, scopes)
}

/// DMAR type 2 (ATSR).
pub fn atsr(flags: u8, segment: u16, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut fixed = vec![flags, 0];
    fixed.extend_from_slice(&segment.to_le_bytes());
    dmar_structure(2, &fixed, scopes)
}

/// DMAR type 3 (RHSA).
pub fn rhsa(base: u64, pxm: u32) -> Vec<u8> {
    let mut fixed = vec![0; 4];
    fixed.extend_from_slice(&base.to_le_bytes());
    fixed.extend_from_slice(&pxm.to_le_bytes());
    dmar_structure(3, &fixed, &[])
}

/// DMAR type 4 (ANDD), the name NUL-terminated.
pub fn andd(number: u8, name: &[u8]) -> Vec<u8> {
    let mut fixed = vec![0, 0, 0, number];
    fixed.extend_from_slice(name);
    fixed.push(0);
    dmar_structure(4, &fixed, &[])
}

/// An IVRS (revision 2) with `info`, then `blocks`.
pub fn ivrs(info: u32, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut body = info.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 8]);
    blocks.iter().for_each(|b| body.extend_from_slice(b));
    table(b"IVRS", 2, &body)
}

/// An IVHD of `kind` (0x10: 24-byte header; 0x11, 0x40: 40 bytes with EFR `0x5a`) for the
/// IOMMU at `base`, device ID `device_id`, capability offset 0x40, then `entries`.
pub fn ivhd(
    kind: u8,
    flags: u8,
    device_id: u16,
    base: u64,
    segment: u16,
    entries: &[Vec<u8>],
) -> Vec<u8> {
    let header = if kind == 0x10 { 24 } else { 40 };
    let length = header + entries.iter().map(Vec::len).sum::<usize>();
    let mut b = vec![kind, flags];
    b.extend_from_slice(&(length as u16).to_le_bytes());
    b.extend_from_slice(&device_id.to_le_bytes());
    b.extend_from_slice(&0x40u16.to_le_bytes());
    b.extend_from_slice(&base.to_le_bytes());
    b.extend_from_slice(&segment.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    if header == 40 {
        b.extend_from_slice(&0x5au64.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
    }
    entries.iter().for_each(|e| b.extend_from_slice(e));
    b
}

/// A 4-byte IVHD device entry.
pub fn ivhd4(kind: u8, id: u16, settings: u8) -> Vec<u8> {
    let mut e = vec![kind];
    e.extend_from_slice(&id.to_le_bytes());
    e.push(settings);
    e
}

/// An 8-byte IVHD device entry whose last four bytes are `tail`.
pub fn ivhd8(kind: u8, id: u16, settings: u8, tail: [u8; 4]) -> Vec<u8> {
    let mut e = ivhd4(kind, id, settings);
    e.extend_from_slice(&tail);
    e
}

/// IVHD entry 0x42 or 0x43: `id` aliased to `alias`.
pub fn ivhd_alias(kind: u8, id: u16, settings: u8, alias: u16) -> Vec<u8> {
    let a = alias.to_le_bytes();
    ivhd8(kind, id, settings, [0, a[0], a[1], 0])
}

/// IVHD entry 0x48: a special device (`variety` 1 I/O APIC, 2 HPET).
pub fn ivhd_special(handle: u8, device_id: u16, variety: u8, settings: u8) -> Vec<u8> {
    let d = device_id.to_le_bytes();
    ivhd8(0x48, 0, settings, [handle, d[0], d[1], variety])
}

/// IVHD entry 0xF0: an ACPI HID device with a string UID.
pub fn ivhd_acpi(id: u16, hid: &[u8; 8], cid: &[u8; 8], uid: &[u8]) -> Vec<u8> {
    let mut e = ivhd4(0xF0, id, 0);
    e.extend_from_slice(hid);
    e.extend_from_slice(cid);
    e.extend_from_slice(&[2, uid.len() as u8]);
    e.extend_from_slice(uid);
    e
}

/// An IVMD block (32 bytes).
pub fn ivmd(kind: u8, flags: u8, id: u16, aux: u16, start: u64, length: u64) -> Vec<u8> {
    let mut b = vec![kind, flags, 32, 0];
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&aux.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&start.to_le_bytes());
    b.extend_from_slice(&length.to_le_bytes());
    b
}

/// A machine's tables, laid out in a [`MemoryImage`] behind an RSDP at [`RSDP_ADDRESS`].
pub struct Machine {
    pub tables: Vec<Vec<u8>>,
    /// Revision 2 RSDP with an XSDT (at an unaligned address) as well as the RSDT.
    pub xsdt: bool,
}

impl Machine {
    /// A revision 0 machine (RSDT only) holding `tables`.
    pub fn new(tables: Vec<Vec<u8>>) -> Machine {
        Machine {
            tables,
            xsdt: false,
        }
    }

    /// The addresses tables get, in order.
    pub fn table_address(i: usize) -> u64 {
        FIRST_TABLE + 0x1000 * i as u64
    }

    /// The memory image and the RSDP address.
    pub fn image(&self) -> (MemoryImage, u64) {
        let addresses: Vec<u64> = (0..self.tables.len()).map(Self::table_address).collect();
        let rsdt_body: Vec<u8> = addresses
            .iter()
            .flat_map(|a| (*a as u32).to_le_bytes())
            .collect();
        let xsdt_body: Vec<u8> = addresses.iter().flat_map(|a| a.to_le_bytes()).collect();
        let rsdt_address = ROOT_ADDRESS;
        let xsdt_address = ROOT_ADDRESS + 0x801;
        let mut image = MemoryImage::new()
            .with(rsdt_address, table(b"RSDT", 1, &rsdt_body))
            .with(xsdt_address, table(b"XSDT", 1, &xsdt_body));
        let rsdp = if self.xsdt {
            rsdp_v2(rsdt_address as u32, xsdt_address)
        } else {
            rsdp_v0(rsdt_address as u32)
        };
        image.insert(RSDP_ADDRESS, rsdp);
        for (t, a) in self.tables.iter().zip(addresses) {
            image.insert(a, t.clone());
        }
        (image, RSDP_ADDRESS)
    }
}

/// The names `tests/data/capture.py` captured.
pub const QEMU_CAPTURES: [&str; 7] = [
    "q35-nonuma",
    "q35-2node",
    "q35-4node-asym",
    "q35-memoryless",
    "q35-6g-cpuless",
    "q35-hmat",
    "ovmf-q35-2node",
];

/// A captured machine's pieces: the RSDP address and every (address, bytes) it holds.
pub fn qemu_chunks(name: &str) -> (u64, Vec<(u64, Vec<u8>)>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let listing = std::fs::read_to_string(alloc::format!("{dir}/qemu72-{name}.addr"))
        .expect("captured table listing");
    let mut chunks = Vec::new();
    let mut rsdp = 0;
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        let (Some(sig), Some(addr)) = (words.next(), words.next()) else {
            continue;
        };
        let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).expect("hex address");
        let bytes = std::fs::read(alloc::format!("{dir}/qemu72-{name}-{sig}.bin")).expect("table");
        if sig == "RSDP" {
            rsdp = addr;
        }
        chunks.push((addr, bytes));
    }
    (rsdp, chunks)
}

/// A machine captured by `tests/data/capture.py`: every table back at its QEMU address.
pub fn qemu(name: &str) -> (MemoryImage, u64) {
    let (rsdp, chunks) = qemu_chunks(name);
    let mut image = MemoryImage::new();
    for (address, bytes) in chunks {
        image.insert(address, bytes);
    }
    (image, rsdp)
}
