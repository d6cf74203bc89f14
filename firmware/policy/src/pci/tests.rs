use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::register::*;
use super::*;
use crate::acpi::EcamWindow;

/// A function of the fake machine: its configuration dwords, and for each BAR the bits a
/// write can set (zero: not implemented).
#[derive(Clone)]
struct FakeFunction {
    dwords: [u32; 1024],
    bar_writable: [u32; 6],
}

impl FakeFunction {
    fn new(vendor: u16, device: u16, class: u32, header_type: u8) -> FakeFunction {
        let mut dwords = [0u32; 1024];
        dwords[0] = u32::from(device) << 16 | u32::from(vendor);
        dwords[2] = class << 8 | 1;
        dwords[3] = u32::from(header_type) << 16;
        dwords[1] = DECODE_MEMORY | DECODE_IO;
        FakeFunction {
            dwords,
            bar_writable: [0; 6],
        }
    }

    /// A memory BAR `index` of `size` bytes at `base` (64-bit if `wide`).
    fn memory_bar(mut self, index: usize, base: u64, size: u64, wide: bool) -> FakeFunction {
        let flags = if wide { 0b1100 } else { 0 };
        self.dwords[4 + index] = (base as u32 & !0xF) | flags;
        self.bar_writable[index] = !(size as u32 - 1) & !0xF;
        if wide {
            self.dwords[5 + index] = (base >> 32) as u32;
            self.bar_writable[index + 1] = (!(size - 1) >> 32) as u32;
        }
        self
    }

    fn io_bar(mut self, index: usize, base: u32, size: u32) -> FakeFunction {
        self.dwords[4 + index] = base | 1;
        self.bar_writable[index] = !(size - 1) & 0xFFFC;
        self
    }

    fn bridge(mut self, primary: u8, secondary: u8, subordinate: u8) -> FakeFunction {
        self.dwords[6] =
            u32::from(subordinate) << 16 | u32::from(secondary) << 8 | u32::from(primary);
        self
    }

    /// Capabilities chained in order at 0x40, 0x50, …; each `(id, upper 16 bits)`.
    fn capabilities(mut self, list: &[(u8, u16)]) -> FakeFunction {
        self.dwords[1] |= STATUS_CAPABILITIES;
        self.dwords[0x34 / 4] = 0x40;
        for (i, &(id, upper)) in list.iter().enumerate() {
            let at = 0x40 + 0x10 * i;
            let next = if i + 1 < list.len() { at + 0x10 } else { 0 };
            self.dwords[at / 4] = u32::from(upper) << 16 | (next as u32) << 8 | u32::from(id);
        }
        self
    }
}

#[derive(Default)]
struct FakeMachine {
    functions: BTreeMap<PciAddress, FakeFunction>,
    /// Reads of BAR registers while the function's memory decoding was on.
    bar_writes_while_decoding: usize,
}

impl FakeMachine {
    fn with(mut self, at: &str, function: FakeFunction) -> FakeMachine {
        self.functions.insert(at.parse().unwrap(), function);
        self
    }
}

impl ConfigSpace for FakeMachine {
    fn read32(&mut self, function: PciAddress, offset: u16) -> u32 {
        self.functions
            .get(&function)
            .map_or(u32::MAX, |f| f.dwords[usize::from(offset / 4)])
    }

    fn write32(&mut self, function: PciAddress, offset: u16, value: u32) {
        let Some(f) = self.functions.get_mut(&function) else {
            return;
        };
        let index = usize::from(offset / 4);
        match index {
            1 => f.dwords[1] = f.dwords[1] & 0xFFFF_0000 | value & 0xFFFF,
            4..=9 => {
                if f.dwords[1] & (DECODE_MEMORY | DECODE_IO) != 0 {
                    self.bar_writes_while_decoding += 1;
                }
                let writable = f.bar_writable[index - 4];
                f.dwords[index] = f.dwords[index] & !writable | value & writable;
            }
            _ => f.dwords[index] = value,
        }
    }
}

/// A q35 machine with a pxb-pcie host bridge at bus 0x40, a root port and an NVMe behind it.
fn q35_with_expander() -> FakeMachine {
    FakeMachine::default()
        .with("00:00.0", FakeFunction::new(0x8086, 0x29c0, 0x060000, 0))
        .with(
            "00:02.0",
            FakeFunction::new(0x1af4, 0x1000, 0x020000, 0)
                .io_bar(0, 0xc000, 0x20)
                .memory_bar(1, 0xfebd_1000, 0x1000, false)
                .memory_bar(4, 0xfe00_0000, 0x4000, true),
        )
        .with("00:1f.0", FakeFunction::new(0x8086, 0x2918, 0x060100, 0x80))
        .with("00:1f.2", FakeFunction::new(0x8086, 0x2922, 0x010601, 0))
        .with("00:1f.3", FakeFunction::new(0x8086, 0x2930, 0x0c0500, 0))
        .with(
            "40:00.0",
            FakeFunction::new(0x1b36, 0x000c, 0x060400, 1).bridge(0x40, 0x41, 0x41),
        )
        .with(
            "41:00.0",
            FakeFunction::new(0x1b36, 0x0010, 0x010802, 0)
                .memory_bar(0, 0x8_0000_0000, 0x4000, true)
                .capabilities(&[(0x11, 0x0040), (0x10, 0x0002), (0x01, 0)]),
        )
}

fn windows() -> Vec<EcamWindow> {
    vec![EcamWindow {
        base: 0xB000_0000,
        segment: 0,
        start_bus: 0,
        end_bus: 0xFF,
    }]
}

#[test]
fn addresses_read_and_print_as_linux_writes_them() {
    let a: PciAddress = "0000:03:00.0".parse().unwrap();
    assert_eq!(a, PciAddress::new(0, 3, 0, 0).unwrap());
    assert_eq!(alloc::format!("{a}"), "0000:03:00.0");
    let b: PciAddress = "12:1f.7".parse().unwrap();
    assert_eq!(alloc::format!("{b}"), "0000:12:1f.7");
    assert_eq!(b.requester_id(), 0x12FF);
    let c: PciAddress = "ffff:ff:1F.7".parse().unwrap();
    assert_eq!(c.segment, 0xFFFF);
    for bad in [
        "",
        "03:00",
        "0000:03:00",
        "3.0",
        "0:0:0:0.0",
        "g0:00.0",
        "00:00.8",
        "00000:00:00.0",
        "00:20.0",
        "000:00.0",
        "00:00.00",
        "+1:00.0",
    ] {
        assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} was accepted");
    }
    assert_eq!(
        "00:20.0".parse::<PciAddress>(),
        Err(PciAddressError::OutOfRange)
    );
    assert_eq!(
        "00:00.8".parse::<PciAddress>(),
        Err(PciAddressError::OutOfRange)
    );
}

#[test]
fn every_function_is_found_with_its_header() {
    let mut machine = q35_with_expander();
    let found = enumerate(&windows(), &mut machine);
    let names: Vec<String> = found
        .iter()
        .map(|f| alloc::format!("{}", f.address))
        .collect();
    assert_eq!(
        names,
        [
            "0000:00:00.0",
            "0000:00:02.0",
            "0000:00:1f.0",
            "0000:00:1f.2",
            "0000:00:1f.3",
            "0000:40:00.0",
            "0000:41:00.0"
        ]
    );
    let host = &found[0];
    assert!(
        !host.is_endpoint(),
        "a host bridge function is not an endpoint"
    );
    let port = &found[5];
    assert_eq!(
        port.header,
        HeaderKind::Bridge {
            primary: 0x40,
            secondary: 0x41,
            subordinate: 0x41
        }
    );
    assert!(!port.is_endpoint());
    let nvme = &found[6];
    assert!(nvme.is_endpoint());
    assert_eq!(
        (nvme.vendor, nvme.device, nvme.class),
        (0x1b36, 0x0010, 0x010802)
    );
    assert_eq!(nvme.capabilities.msix, Some((0x40, 0x41)));
    assert_eq!(nvme.capabilities.express_type, Some(0));
    assert_eq!(nvme.capabilities.msi, None);
}

use alloc::string::String;

#[test]
fn bars_are_sized_with_decoding_off_and_restored() {
    let mut machine = q35_with_expander();
    let before: Vec<[u32; 1024]> = machine.functions.values().map(|f| f.dwords).collect();
    let found = enumerate(&windows(), &mut machine);
    let after: Vec<[u32; 1024]> = machine.functions.values().map(|f| f.dwords).collect();
    assert!(before == after, "configuration space changed by the walk");
    assert_eq!(machine.bar_writes_while_decoding, 0);
    let net = &found[1];
    assert_eq!(
        net.bars,
        [
            Bar {
                index: 0,
                kind: BarKind::Io,
                prefetchable: false,
                base: 0xc000,
                size: 0x20
            },
            Bar {
                index: 1,
                kind: BarKind::Memory32,
                prefetchable: false,
                base: 0xfebd_1000,
                size: 0x1000
            },
            Bar {
                index: 4,
                kind: BarKind::Memory64,
                prefetchable: true,
                base: 0xfe00_0000,
                size: 0x4000
            },
        ]
    );
    let nvme = &found[6];
    assert_eq!(
        nvme.bars,
        [Bar {
            index: 0,
            kind: BarKind::Memory64,
            prefetchable: true,
            base: 0x8_0000_0000,
            size: 0x4000
        }]
    );
}

#[test]
fn a_looping_capability_list_ends() {
    let mut f =
        FakeFunction::new(0x1234, 0x5678, 0x020000, 0).capabilities(&[(0x05, 0), (0x09, 0)]);
    // The second capability points back at the first.
    f.dwords[0x50 / 4] = 0x40 << 8 | 0x09;
    let mut machine = FakeMachine::default().with("00:03.0", f);
    let found = enumerate(&windows(), &mut machine);
    assert_eq!(found[0].capabilities.msi, Some(0x40));
}

#[test]
fn functions_hang_under_the_host_bridge_that_reaches_them() {
    let mut machine = q35_with_expander()
        // A bridge the firmware left unconfigured (secondary 0) and a function on bus 0x42
        // no bridge reaches: only the expander's _CRS range places it.
        .with(
            "40:01.0",
            FakeFunction::new(0x1b36, 0x000c, 0x060400, 1).bridge(0, 0, 0),
        )
        .with("42:00.0", FakeFunction::new(0x1af4, 0x1041, 0x020000, 0))
        .with("80:00.0", FakeFunction::new(0x1af4, 0x1041, 0x020000, 0));
    let found = enumerate(&windows(), &mut machine);
    let roots = [
        HostBridgeRoot {
            segment: 0,
            bus: 0,
            bus_range: None,
        },
        HostBridgeRoot {
            segment: 0,
            bus: 0x40,
            bus_range: Some((0x40, 0x42)),
        },
    ];
    let owners = attribute_roots(&found, &roots);
    let by_address: Vec<(String, Option<usize>)> = found
        .iter()
        .zip(owners)
        .map(|(f, o)| (alloc::format!("{}", f.address), o))
        .collect();
    let expect = |at: &str| by_address.iter().find(|(a, _)| a.ends_with(at)).unwrap().1;
    assert_eq!(expect("00:1f.3"), Some(0));
    assert_eq!(expect("40:00.0"), Some(1));
    assert_eq!(expect("41:00.0"), Some(1));
    assert_eq!(expect("42:00.0"), Some(1));
    assert_eq!(expect("80:00.0"), None);
}

#[test]
fn a_bridge_pointing_back_up_does_not_loop() {
    let mut machine = FakeMachine::default()
        .with(
            "00:01.0",
            FakeFunction::new(0x1b36, 0x000c, 0x060400, 1).bridge(0, 1, 1),
        )
        .with(
            "01:00.0",
            FakeFunction::new(0x1b36, 0x000c, 0x060400, 1).bridge(1, 0, 0),
        );
    let found = enumerate(&windows(), &mut machine);
    let owners = attribute_roots(
        &found,
        &[HostBridgeRoot {
            segment: 0,
            bus: 0,
            bus_range: None,
        }],
    );
    assert_eq!(owners, [Some(0), Some(0)]);
}

proptest::proptest! {
    /// Whatever a function's registers hold (a broken or hostile device), the walk ends, sizes
    /// only power-of-two BARs, and leaves every register as it found it.
    #[test]
    fn any_configuration_space_is_walked_safely(
        functions in proptest::collection::vec(
            (0u8..4, 0u8..32, 0u8..8, proptest::collection::vec(proptest::num::u32::ANY, 64), proptest::collection::vec(proptest::num::u32::ANY, 6)),
            1..12,
        ),
    ) {
        let mut machine = FakeMachine::default();
        for (bus, device, function, dwords, writable) in functions {
            let mut f = FakeFunction::new(0x1234, 0x5678, 0, 0);
            f.dwords[..64].copy_from_slice(&dwords);
            // A present vendor, so the function is read at all.
            f.dwords[0] = f.dwords[0] & 0xFFFF_0000 | 0x1af4;
            f.bar_writable.copy_from_slice(&writable);
            machine.functions.insert(PciAddress::new(0, bus, device, function).unwrap(), f);
        }
        let before: Vec<[u32; 1024]> = machine.functions.values().map(|f| f.dwords).collect();
        let found = enumerate(&windows(), &mut machine);
        let after: Vec<[u32; 1024]> = machine.functions.values().map(|f| f.dwords).collect();
        proptest::prop_assert!(before == after, "registers changed");
        for f in &found {
            for bar in &f.bars {
                proptest::prop_assert!(bar.size.is_power_of_two(), "{bar:?}");
                proptest::prop_assert!(bar.index < 6);
            }
        }
        let roots = [HostBridgeRoot { segment: 0, bus: 0, bus_range: Some((0, 3)) }];
        proptest::prop_assert_eq!(attribute_roots(&found, &roots).len(), found.len());
    }
}
