//! Guest platforms the unit tests share (the integration tests keep their own copies).

use alloc::vec;

use crate::{Devices, DistanceMatrix, GuestPlatform, MemoryRange, TablePlacement, Vcpu, VnumaNode};

const MIB: u64 = 1 << 20;

fn ram(base: u64, length: u64) -> MemoryRange {
    MemoryRange {
        base,
        length,
        hot_pluggable: false,
    }
}

/// Tables at 0xE0000, 64 KiB of room.
pub(crate) const PLACEMENT: TablePlacement = TablePlacement {
    base: 0xE_0000,
    size: 0x1_0000,
};

/// One node of 128 MiB, one vCPU with APIC ID 0, no SLIT.
pub(crate) fn one_node_one_vcpu() -> GuestPlatform {
    GuestPlatform {
        vcpus: vec![Vcpu {
            apic_id: 0,
            node: 0,
        }],
        nodes: vec![VnumaNode {
            memory: vec![ram(0, 128 * MIB)],
        }],
        distances: None,
        hmat: None,
        devices: Devices::pc(),
        placement: PLACEMENT,
    }
}

/// QEMU's `-smp 4 -numa node,cpus=0-1 -numa node,cpus=2-3 -numa dist,val=21` with
/// 256 MiB per node.
pub(crate) fn two_nodes_four_vcpus() -> GuestPlatform {
    GuestPlatform {
        vcpus: (0..4)
            .map(|i| Vcpu {
                apic_id: i,
                node: i / 2,
            })
            .collect(),
        nodes: vec![
            VnumaNode {
                memory: vec![ram(0, 256 * MIB)],
            },
            VnumaNode {
                memory: vec![ram(256 * MIB, 256 * MIB)],
            },
        ],
        distances: Some(DistanceMatrix::from_rows(&[[10u8, 21], [21, 10]]).unwrap()),
        hmat: None,
        devices: Devices::pc(),
        placement: PLACEMENT,
    }
}

/// Two nodes; vCPU 1 has x2APIC ID 300 and sits on node 1.
pub(crate) fn with_x2apic_vcpu() -> GuestPlatform {
    let mut platform = two_nodes_four_vcpus();
    platform.vcpus = vec![
        Vcpu {
            apic_id: 0,
            node: 0,
        },
        Vcpu {
            apic_id: 300,
            node: 1,
        },
    ];
    platform
}
