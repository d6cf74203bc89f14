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
