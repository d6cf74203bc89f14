//! The boot-time passthrough checks over hand-made inventories.

use alloc::vec;
use alloc::vec::Vec;

use super::passthrough::{
    check_requests, far_device, vnode_for_device, FarDevice, PassthroughRefusal, PassthroughRequest,
};
use super::{Bar, BarKind, Capabilities, HeaderKind, PciAddress, PciDevice, PciFunction};
use super::{PciInventory, RemappingKind, RemappingUnit};

fn at(text: &str) -> PciAddress {
    text.parse().unwrap()
}

fn memory_bar(index: u8, base: u64, size: u64) -> Bar {
    Bar {
        index,
        kind: BarKind::Memory64,
        prefetchable: false,
        base,
        size,
    }
}

fn function(address: &str, class: u32, header: HeaderKind, bars: Vec<Bar>) -> PciFunction {
    PciFunction {
        address: at(address),
        vendor: 0x1b36,
        device: 0x0010,
        class,
        revision: 0,
        header,
        bars,
        capabilities: Capabilities {
            express_type: Some(0),
            ..Capabilities::default()
        },
    }
}

fn device(function: PciFunction, unit: Option<usize>) -> PciDevice {
    PciDevice {
        function,
        host_bridge: Some(0),
        node: Some(1),
        unit,
        reserved_memory: Vec::new(),
    }
}

fn nvme(address: &str, bar_base: u64) -> PciDevice {
    let bars = vec![memory_bar(0, bar_base, 0x4000)];
    device(
        function(address, 0x010802, HeaderKind::Endpoint, bars),
        Some(0),
    )
}

fn machine(devices: Vec<PciDevice>) -> PciInventory {
    PciInventory {
        windows: Vec::new(),
        host_bridges: Vec::new(),
        units: vec![RemappingUnit {
            kind: RemappingKind::VtD,
            base: 0xfed9_0000,
            segment: 0,
            pxm: None,
            node: None,
            interrupt_remapping: true,
        }],
        devices,
    }
}

fn request(partition: usize, host: &str) -> PassthroughRequest {
    PassthroughRequest {
        partition,
        host: at(host),
    }
}

#[test]
fn an_isolated_endpoint_is_given() {
    let inventory = machine(vec![
        nvme("00:03.0", 0xfe00_0000),
        nvme("00:04.0", 0xfe00_4000),
    ]);
    let results = check_requests(
        &inventory,
        &[request(0, "00:03.0"), request(1, "0000:00:04.0")],
    );
    assert_eq!(results, vec![Ok(0), Ok(1)]);
}

#[test]
fn what_cannot_be_isolated_is_refused_with_its_reason() {
    let bridge = function(
        "00:1c.0",
        0x060400,
        HeaderKind::Bridge {
            primary: 0,
            secondary: 1,
            subordinate: 1,
        },
        Vec::new(),
    );
    let isa = function("00:1f.0", 0x060100, HeaderKind::Endpoint, Vec::new());
    let mut reserved = nvme("00:05.0", 0xfe01_0000);
    reserved.reserved_memory.push((0x7f00_0000, 0x7f10_0000));
    let uncovered = device(
        function(
            "00:06.0",
            0x020000,
            HeaderKind::Endpoint,
            vec![memory_bar(0, 0xfe02_0000, 0x1000)],
        ),
        None,
    );
    let small_bar = device(
        function(
            "00:07.0",
            0x020000,
            HeaderKind::Endpoint,
            vec![memory_bar(1, 0xfe03_0000, 0x100)],
        ),
        Some(0),
    );
    // 00:08.0's 256-byte BAR lies in page 0xfe041, which 00:09.0's 16 KiB BAR covers.
    let neighbour = device(
        function(
            "00:08.0",
            0x020000,
            HeaderKind::Endpoint,
            vec![memory_bar(0, 0xfe04_1f00, 0x100)],
        ),
        Some(0),
    );
    let sharing = nvme("00:09.0", 0xfe04_0000); // 16 KiB: pages 0xfe040..=0xfe043.
    let inventory = machine(vec![
        device(bridge, Some(0)),
        device(isa, Some(0)),
        reserved,
        uncovered,
        small_bar,
        neighbour,
        sharing,
    ]);
    let results = check_requests(
        &inventory,
        &[
            request(0, "00:02.0"),
            request(0, "00:1c.0"),
            request(0, "00:1f.0"),
            request(0, "00:05.0"),
            request(0, "00:06.0"),
            request(0, "00:07.0"),
            request(0, "00:09.0"),
        ],
    );
    assert_eq!(
        results,
        vec![
            Err(PassthroughRefusal::Missing),
            Err(PassthroughRefusal::NotEndpoint("a PCI-to-PCI bridge")),
            Err(PassthroughRefusal::NotEndpoint(
                "a host, ISA or other platform bridge (class 06)"
            )),
            Err(PassthroughRefusal::ReservedMemory(0x7f00_0000, 0x7f10_0000)),
            Err(PassthroughRefusal::NoRemappingUnit),
            Err(PassthroughRefusal::BarNotPageAligned {
                bar: 1,
                base: 0xfe03_0000,
                size: 0x100
            }),
            Err(PassthroughRefusal::BarSharesPage {
                bar: 0,
                other: at("00:08.0")
            }),
        ]
    );
    for refusal in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(!alloc::format!("{refusal}").is_empty());
    }
}

/// Two NICs behind one PCIe-to-PCI bridge: their DMA carries the bridge's (bus 2, 00.0).
fn behind_a_pci_bridge() -> PciInventory {
    let root_port = function(
        "00:1c.0",
        0x060400,
        HeaderKind::Bridge {
            primary: 0,
            secondary: 1,
            subordinate: 2,
        },
        Vec::new(),
    );
    let mut pci_bridge = function(
        "01:00.0",
        0x060400,
        HeaderKind::Bridge {
            primary: 1,
            secondary: 2,
            subordinate: 2,
        },
        Vec::new(),
    );
    pci_bridge.capabilities.express_type = Some(7);
    let mut first = nvme("02:01.0", 0xfe10_0000);
    let mut second = nvme("02:02.0", 0xfe20_0000);
    first.function.capabilities.express_type = None;
    second.function.capabilities.express_type = None;
    machine(vec![
        device(root_port, Some(0)),
        device(pci_bridge, Some(0)),
        first,
        second,
    ])
}

#[test]
fn functions_sharing_a_bridge_alias_go_to_one_partition_only() {
    let inventory = behind_a_pci_bridge();
    let apart = check_requests(&inventory, &[request(0, "02:01.0"), request(1, "02:02.0")]);
    let alias = PassthroughRefusal::AliasShared {
        alias: 0x0200,
        other: at("02:02.0"),
    };
    assert_eq!(apart[0], Err(alias));
    assert!(apart[1].is_err());
    let together = check_requests(&inventory, &[request(0, "02:01.0"), request(0, "02:02.0")]);
    assert_eq!(together, vec![Ok(2), Ok(3)]);
}

#[test]
fn a_device_belongs_to_the_vnode_on_its_node_else_the_nearest() {
    // Four nodes, distance 10 local, 20 to a neighbour (n ± 1), 30 otherwise.
    let distance = |a: usize, b: usize| match a.abs_diff(b) {
        0 => 10,
        1 => 20,
        _ => 30,
    };
    assert_eq!(vnode_for_device(Some(1), &[0, 1], distance), Some(1));
    assert_eq!(vnode_for_device(Some(3), &[0, 2], distance), Some(1));
    assert_eq!(vnode_for_device(Some(1), &[0, 2], distance), Some(0)); // A tie: vnode order.
    assert_eq!(vnode_for_device(None, &[0, 2], distance), None);
    assert_eq!(vnode_for_device(Some(1), &[], distance), None);
    assert_eq!(far_device(Some(1), &[0, 1], distance), None);
    assert_eq!(
        far_device(Some(3), &[0, 2], distance),
        Some(FarDevice {
            device_node: 3,
            nearest: 2,
            distance: 20
        })
    );
}

#[test]
fn a_unit_that_cannot_remap_interrupts_refuses_its_functions() {
    let mut inventory = machine(vec![nvme("00:03.0", 0xfe00_0000)]);
    assert_eq!(
        check_requests(&inventory, &[request(0, "00:03.0")]),
        vec![Ok(0)]
    );
    inventory.units[0].interrupt_remapping = false;
    let refusal = check_requests(&inventory, &[request(0, "00:03.0")]).remove(0);
    assert_eq!(
        refusal,
        Err(PassthroughRefusal::NoInterruptRemapping { unit: 0xfed9_0000 })
    );
    assert!(alloc::format!("{}", refusal.unwrap_err()).contains("0xfed90000"));
}
