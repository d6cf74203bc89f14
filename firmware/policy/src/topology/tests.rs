//! Host tests for the NUMA topology (ACPI 6.5 §5.2.16–§5.2.17), on synthetic tables and on
//! tables captured from QEMU 7.2.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::*;
use crate::acpi::testkit::*;
use crate::acpi::{discover, AcpiFindings};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn findings(tables: Vec<Vec<u8>>) -> AcpiFindings {
    let (image, rsdp) = Machine::new(tables).image();
    let f = discover(&image, rsdp);
    assert!(f.problems.is_empty(), "{:?}", f.problems);
    f
}

fn build(tables: Vec<Vec<u8>>, ram: &[(u64, u64)]) -> (Topology, Vec<String>) {
    let (t, problems) = Topology::build(&findings(tables), ram);
    (t, problems.iter().map(|p| p.to_string()).collect())
}

fn cpus(t: &Topology) -> Vec<Vec<u32>> {
    t.domains.iter().map(|d| d.apic_ids.clone()).collect()
}

fn usable(t: &Topology) -> Vec<Vec<(u64, u64)>> {
    t.domains.iter().map(|d| d.usable.clone()).collect()
}

fn madt4() -> Vec<u8> {
    madt(&[
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        lapic(2, 2, 1),
        lapic(3, 3, 1),
    ])
}

#[test]
fn no_srat_is_one_domain() {
    let ram = [(0x1000, 0x9_FC00), (MIB, 512 * MIB)];
    let (t, p) = build(vec![madt4()], &ram);
    assert!(p.is_empty());
    assert_eq!(
        (t.source, t.node_count(), t.distance(0, 0)),
        (TopologySource::None, 1, 10)
    );
    assert_eq!(cpus(&t), [[0, 1, 2, 3]]);
    assert_eq!(usable(&t), [[(0x1000, 0x9_F000), (MIB, 512 * MIB)]]);
    assert_eq!(t.domain_of_address(0x2000), Some(0));
    assert_eq!(t.nearest_first(0), [0]);
}

#[test]
fn srat_without_slit_uses_default_distances() {
    let s = srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(1, 1, 1),
            memory_affinity(0, 0, GIB, 1),
            memory_affinity(1, GIB, GIB, 1),
        ],
    );
    let (t, p) = build(
        vec![madt(&[lapic(0, 0, 1), lapic(1, 1, 1)]), s],
        &[(0, 2 * GIB)],
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(t.distance_source, DistanceSource::Default);
    assert_eq!(t.distances(), [[10, 20], [20, 10]]);
    assert_eq!(usable(&t), [[(0, GIB)], [(GIB, 2 * GIB)]]);
    assert_eq!(
        (t.domain_of_apic_id(1), t.domain_of_apic_id(7)),
        (Some(1), None)
    );
    assert_eq!(t.domain_of_address(GIB + 5), Some(1));
    assert_eq!(t.distance(0, 9), 255);
}

#[test]
fn memoryless_cpuless_and_several_ranges_above_4g() {
    // pxm 4: CPUs only; pxm 7: memory only, in two ranges above 4 GiB; dense nodes 0, 1, 2.
    let s = srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(4, 1, 1),
            memory_affinity(0, 0, 2 * GIB, 1),
            memory_affinity(7, 6 * GIB, GIB, 1),
            memory_affinity(7, 4 * GIB, GIB, 0b11),
        ],
    );
    let ram = [(0, 2 * GIB), (4 * GIB, 5 * GIB), (6 * GIB, 7 * GIB)];
    let (t, p) = build(vec![madt(&[lapic(0, 0, 1), lapic(1, 1, 1)]), s], &ram);
    assert!(p.is_empty(), "{p:?}");
    let pxms: Vec<u32> = t.domains.iter().map(|d| d.pxm).collect();
    assert_eq!(pxms, [0, 4, 7]);
    assert_eq!(cpus(&t), [vec![0], vec![1], vec![]]);
    assert_eq!(
        usable(&t),
        [
            vec![(0, 2 * GIB)],
            vec![],
            vec![(4 * GIB, 5 * GIB), (6 * GIB, 7 * GIB)]
        ]
    );
    assert!(t.domains[2].memory[0].hot_pluggable && t.domains[2].memory[0].base == 4 * GIB);
    assert_eq!(t.domain_of_address(6 * GIB), Some(2));
}

#[test]
fn madt_cpu_missing_from_srat_goes_to_node_0() {
    let s = srat(3, &[cpu_affinity(1, 0, 1), memory_affinity(1, 0, GIB, 1)]);
    let m = madt(&[lapic(0, 0, 1), lapic(1, 5, 1), lapic(2, 6, 0)]);
    let (t, p) = build(vec![m, s], &[(0, GIB)]);
    assert_eq!(cpus(&t), [[0, 5]]);
    assert_eq!(
        p,
        ["CPU with APIC ID 5 is not in the SRAT; placed in node 0"]
    );
}

#[test]
fn x2apic_ids_duplicates_and_cpus_the_madt_lacks() {
    let s = srat(
        3,
        &[
            x2apic_affinity(0, 256, 1),
            x2apic_affinity(1, 0x1_0000, 1),
            x2apic_affinity(0, 0x1_0000, 1), // duplicate: first wins
            x2apic_affinity(1, 999, 1),      // not in the MADT
            x2apic_affinity(1, 300, 1),      // an empty socket: quietly left out
            memory_affinity(0, 0, GIB, 1),
        ],
    );
    let m = madt(&[x2apic(256, 1), x2apic(0x1_0000, 1), x2apic(300, 0)]);
    let (t, p) = build(vec![m, s], &[(0, GIB)]);
    assert_eq!(cpus(&t), [vec![256], vec![0x1_0000]]);
    assert_eq!(t.domain_of_apic_id(0x1_0000), Some(1));
    assert_eq!(
        p,
        [
            "SRAT places APIC ID 65536 in domain 1 and again in domain 0; the first wins",
            "SRAT places APIC ID 999 in domain 1 but the MADT does not list it; ignored",
        ]
    );
}

#[test]
fn overlaps_first_wins_and_uncovered_ram_goes_to_node_0() {
    let s = srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            memory_affinity(1, GIB, GIB, 1),
            memory_affinity(0, 0, GIB + 4096 * 3 + 100, 1), // overlaps pxm 1's first pages
        ],
    );
    // RAM past 2 GiB is in no SRAT range; odd edges get trimmed to pages.
    let ram = [(0x800, GIB), (GIB, 2 * GIB + 0x1_0000 + 7)];
    let (t, p) = build(vec![madt(&[lapic(0, 0, 1)]), s], &ram);
    assert_eq!(t.domains[0].memory[0].size, GIB);
    assert_eq!(
        usable(&t),
        [
            vec![(0x1000, GIB), (2 * GIB, 2 * GIB + 0x1_0000)],
            vec![(GIB, 2 * GIB)]
        ]
    );
    assert_eq!(
        p,
        [
            "SRAT memory 0x40000000..0x40003064 is claimed by domain 1 and domain 0; domain 1 \
             (listed first) keeps it",
            "usable RAM 0x80000000..0x80010007 is in no SRAT range; given to node 0",
        ]
    );
}

#[test]
fn slit_by_pxm_and_nearest_first() {
    let s = srat(
        3,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(1, 1, 1),
            cpu_affinity(2, 2, 1),
            cpu_affinity(3, 3, 1),
        ],
    );
    #[rustfmt::skip]
    let matrix = [
        10, 30, 20, 255,
        30, 10, 20, 255,
        20, 25, 10, 255,
        255, 255, 255, 10,
    ];
    let (t, p) = build(vec![madt4(), s, slit(4, &matrix)], &[]);
    assert!(p.is_empty());
    assert_eq!(t.distance_source, DistanceSource::Slit);
    assert_eq!((t.distance(0, 3), t.distance(2, 1)), (255, 25));
    assert_eq!(t.nearest_first(0), [0, 2, 1, 3]);
    assert_eq!(t.nearest_first(1), [1, 2, 0, 3]);
    assert_eq!(t.nearest_first(3), [3, 0, 1, 2]);
    assert!(t.nearest_first(4).is_empty());
}

#[test]
fn slit_not_covering_a_domain_falls_back() {
    let s = srat(3, &[cpu_affinity(0, 0, 1), cpu_affinity(2, 1, 1)]);
    let m = madt(&[lapic(0, 0, 1), lapic(1, 1, 1)]);
    let (t, p) = build(vec![m, s, slit(2, &[10, 40, 40, 10])], &[]);
    assert_eq!(t.distances(), [[10, 20], [20, 10]]);
    assert_eq!(
        p,
        ["SLIT covers domains 0..2 but SRAT names domain 2; distances fall back to 10 local / 20 remote"]
    );
}

#[test]
fn empty_srat_and_missing_madt() {
    let s = srat(3, &[cpu_affinity(0, 0, 0), memory_affinity(0, 0, 0, 1)]);
    let (t, p) = build(vec![s], &[(0, GIB)]);
    assert_eq!(t.source, TopologySource::None);
    assert!(t.domains[0].apic_ids.is_empty());
    assert_eq!(
        p,
        [
            "no usable MADT; the topology lists no CPUs besides the boot CPU",
            "SRAT has no enabled entries; using one domain",
        ]
    );
}

#[test]
fn qemu_topologies() {
    let boot_ram = |below_4g: u64, above: u64| {
        let mut r = alloc::vec![(0, 0x9_FC00), (MIB, below_4g)];
        if above > 0 {
            r.push((4 * GIB, 4 * GIB + above));
        }
        r
    };
    let qemu_build = |name: &str, ram: &[(u64, u64)]| {
        let (image, rsdp) = qemu(name);
        let (t, p) = Topology::build(&discover(&image, rsdp), ram);
        assert!(p.is_empty(), "{name}: {p:?}");
        t
    };

    let t = qemu_build("q35-nonuma", &boot_ram(512 * MIB - 0x2_0000, 0));
    assert_eq!(
        (t.source, cpus(&t)),
        (TopologySource::None, alloc::vec![alloc::vec![0, 1]])
    );

    let t = qemu_build("q35-2node", &boot_ram(512 * MIB - 0x2_0000, 0));
    assert_eq!(cpus(&t), [[0, 1], [2, 3]]);
    assert_eq!(t.distances(), [[10, 21], [21, 10]]);
    assert_eq!(usable(&t)[1], [(256 * MIB, 512 * MIB - 0x2_0000)]);

    let t = qemu_build("q35-4node-asym", &boot_ram(GIB - 0x2_0000, 0));
    assert_eq!(t.nearest_first(0), [0, 1, 2, 3]);
    assert_eq!(t.nearest_first(3), [3, 2, 1, 0]);
    assert_eq!(t.distance(2, 0), 30);

    let t = qemu_build("q35-memoryless", &boot_ram(512 * MIB - 0x2_0000, 0));
    assert_eq!(
        (t.domains[1].usable_bytes(), t.domains[1].apic_ids.len()),
        (0, 2)
    );

    let t = qemu_build("q35-6g-cpuless", &boot_ram(2 * GIB - 0x2_0000, 4 * GIB));
    assert_eq!(cpus(&t), [vec![0, 1], vec![]]);
    assert_eq!(usable(&t)[1], [(5 * GIB, 8 * GIB)]);
    assert_eq!(t.domains[0].usable.last(), Some(&(4 * GIB, 5 * GIB)));
    assert_eq!(t.domain_of_address(7 * GIB), Some(1));

    let t = qemu_build("q35-hmat", &boot_ram(2 * GIB - 0x2_0000, 0));
    assert_eq!(cpus(&t), [vec![0, 1], vec![]]);

    let t = qemu_build("ovmf-q35-2node", &boot_ram(512 * MIB - 0x100_0000, 0));
    assert_eq!(cpus(&t), [[0], [1]]);
}

#[test]
fn disabled_cpus_of_an_old_madt_are_hot_pluggable_and_stay_in_their_domain() {
    // QEMU's `-smp 2,maxcpus=4`: MADT revision 1 lists CPUs 2 and 3 as disabled, the SRAT
    // places them (enabled) in domain 1.
    let s = srat(
        1,
        &[
            cpu_affinity(0, 0, 1),
            cpu_affinity(0, 1, 1),
            cpu_affinity(1, 2, 1),
            cpu_affinity(1, 3, 1),
            memory_affinity(0, 0, GIB, 1),
            memory_affinity(1, GIB, GIB, 1),
        ],
    );
    let m = madt_rev(
        1,
        &[
            lapic(0, 0, 1),
            lapic(1, 1, 1),
            lapic(2, 2, 0),
            lapic(3, 3, 0),
        ],
    );
    let (t, p) = build(vec![m, s], &[(0, 2 * GIB)]);
    assert_eq!(cpus(&t), [vec![0, 1], vec![2, 3]]);
    assert!(p.is_empty(), "{p:?}");
}
