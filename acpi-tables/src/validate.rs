//! Checks a [`GuestPlatform`] before any table is built, so the builders can rely on it.
//!
//! The rules come from ACPI 6.5 §5.2.12 (MADT: unique APIC IDs), §5.2.16 (SRAT: every
//! processor and memory range in a proximity domain) and §5.2.17 (SLIT: one row and one
//! column per locality), plus the limits of the structures we emit (ISA IRQs 0..15 for
//! interrupt source overrides, 32-bit table pointers in the RSDT and FADT).

use alloc::vec::Vec;

use crate::{AcpiError, GuestPlatform};

/// Most vCPUs per partition: the DSDT names processors `C000`..`CFFF`.
pub const MAX_VCPUS: usize = 4096;
/// Most vNUMA nodes per partition.
pub const MAX_NODES: usize = 256;
/// Most memory ranges per partition, all nodes together.
pub const MAX_RANGES: usize = 1024;

/// Checks everything but the final size, which is known only once the tables are built.
pub(crate) fn check(platform: &GuestPlatform) -> Result<(), AcpiError> {
    check_vcpus(platform)?;
    check_memory(platform)?;
    check_matrices(platform)?;
    check_devices(platform)?;
    let base = platform.placement.base;
    if !base.is_multiple_of(16) {
        return Err(AcpiError::MisalignedBase { base });
    }
    Ok(())
}

fn check_vcpus(platform: &GuestPlatform) -> Result<(), AcpiError> {
    let (vcpus, nodes) = (&platform.vcpus, platform.nodes.len());
    if vcpus.is_empty() {
        return Err(AcpiError::NoVcpus);
    }
    too_many("vCPUs", vcpus.len(), MAX_VCPUS)?;
    too_many("vNUMA nodes", nodes, MAX_NODES)?;
    let mut by_id: Vec<(u32, usize)> = Vec::with_capacity(vcpus.len());
    for (index, vcpu) in vcpus.iter().enumerate() {
        if usize::try_from(vcpu.node).map_or(true, |node| node >= nodes) {
            return Err(AcpiError::VcpuOnMissingNode {
                vcpu: index,
                node: vcpu.node,
                nodes,
            });
        }
        if vcpu.apic_id == u32::MAX {
            return Err(AcpiError::ReservedApicId { vcpu: index });
        }
        by_id.push((vcpu.apic_id, index));
    }
    by_id.sort_unstable();
    for pair in by_id.windows(2) {
        if let [(id_a, first), (id_b, second)] = *pair {
            if id_a == id_b {
                let (first, second) = (first.min(second), first.max(second));
                return Err(AcpiError::DuplicateApicId {
                    first,
                    second,
                    apic_id: id_a,
                });
            }
        }
    }
    Ok(())
}

fn check_memory(platform: &GuestPlatform) -> Result<(), AcpiError> {
    // (base, end exclusive, node, range)
    let mut ranges: Vec<(u64, u64, usize, usize)> = Vec::new();
    for (node, vnode) in platform.nodes.iter().enumerate() {
        for (index, range) in vnode.memory.iter().enumerate() {
            if range.length == 0 {
                return Err(AcpiError::EmptyRange { node, range: index });
            }
            let end = range
                .base
                .checked_add(range.length)
                .ok_or(AcpiError::RangeOverflows { node, range: index })?;
            ranges.push((range.base, end, node, index));
        }
    }
    too_many("memory ranges", ranges.len(), MAX_RANGES)?;
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if let [(_, end_a, node_a, range_a), (base_b, _, node_b, range_b)] = *pair {
            if base_b < end_a {
                return Err(AcpiError::OverlappingRanges {
                    node_a,
                    range_a,
                    node_b,
                    range_b,
                });
            }
        }
    }
    Ok(())
}

fn check_matrices(platform: &GuestPlatform) -> Result<(), AcpiError> {
    let nodes = platform.nodes.len();
    if let Some(distances) = &platform.distances {
        if distances.order() != nodes {
            return Err(AcpiError::DistanceMatrixSize {
                expected: nodes,
                found: distances.order(),
            });
        }
    }
    if let Some(hmat) = &platform.hmat {
        square("latency_ns", &hmat.latency_ns, nodes)?;
        square("bandwidth_mb_s", &hmat.bandwidth_mb_s, nodes)?;
    }
    Ok(())
}

fn square(which: &'static str, rows: &[Vec<u32>], order: usize) -> Result<(), AcpiError> {
    if rows.len() != order {
        return Err(AcpiError::HmatMatrixSize {
            which,
            row: None,
            expected: order,
            found: rows.len(),
        });
    }
    for (row, entries) in rows.iter().enumerate() {
        if entries.len() != order {
            let found = entries.len();
            return Err(AcpiError::HmatMatrixSize {
                which,
                row: Some(row),
                expected: order,
                found,
            });
        }
    }
    Ok(())
}

fn check_devices(platform: &GuestPlatform) -> Result<(), AcpiError> {
    let devices = &platform.devices;
    let nodes = platform.nodes.len();
    if let Some(uart) = devices.uart {
        if uart.port > 0xFFF8 || uart.irq > 15 {
            return Err(AcpiError::BadUart {
                port: uart.port,
                irq: uart.irq,
            });
        }
        if let Some(node) = uart.node {
            if usize::try_from(node).map_or(true, |n| n >= nodes) {
                return Err(AcpiError::DeviceOnMissingNode {
                    device: "UART",
                    node,
                    nodes,
                });
            }
        }
    }
    if devices.io_apic.id > 15 {
        return Err(AcpiError::BadIoApicId {
            id: devices.io_apic.id,
        });
    }
    let pm = devices.pm;
    // IRQ 0 is the timer and IRQ 2 the cascade: neither can carry the SCI.
    if pm.port > 0xFFF4 || pm.sci_irq == 0 || pm.sci_irq == 2 || pm.sci_irq > 15 {
        return Err(AcpiError::BadPmBlock {
            port: pm.port,
            sci_irq: pm.sci_irq,
        });
    }
    if let Some(bridge) = devices.pci_host {
        check_pci_host(&bridge, nodes)?;
    }
    check_virtio_mmio(devices)
}

/// The ECAM window 1 MiB aligned, both windows non-empty, below 4 GiB and apart, the node
/// one of the description's.
fn check_pci_host(bridge: &crate::PciHostBridge, nodes: usize) -> Result<(), AcpiError> {
    let bad = |reason| Err(AcpiError::BadPciHost { reason });
    let ecam = (
        u64::from(bridge.ecam_base),
        u64::from(bridge.ecam_base) + u64::from(bridge.ecam_length()),
    );
    let window = (
        u64::from(bridge.window_base),
        u64::from(bridge.window_base) + u64::from(bridge.window_length),
    );
    if !bridge.ecam_base.is_multiple_of(crate::ECAM_BUS_SIZE) {
        return bad("the ECAM window is not 1 MiB aligned");
    }
    if bridge.window_length == 0 {
        return bad("the BAR window is empty");
    }
    if ecam.1 > 1 << 32 || window.1 > 1 << 32 {
        return bad("a window runs past 4 GiB");
    }
    if ecam.0 < window.1 && window.0 < ecam.1 {
        return bad("the ECAM and BAR windows overlap");
    }
    if let Some(node) = bridge.node {
        if usize::try_from(node).map_or(true, |n| n >= nodes) {
            return Err(AcpiError::DeviceOnMissingNode {
                device: "PCI host bridge",
                node,
                nodes,
            });
        }
    }
    Ok(())
}

/// The I/O APIC's inputs: GSIs 0..23.
const IOAPIC_PINS: u32 = 24;
/// The I/O APIC's and a local APIC's register pages, which no window may overlap.
const APIC_PAGE: u64 = 0x1000;

fn check_virtio_mmio(devices: &crate::Devices) -> Result<(), AcpiError> {
    let mut taken_gsis = alloc::vec![0, 2, u32::from(devices.pm.sci_irq)];
    if let Some(uart) = devices.uart {
        taken_gsis.push(u32::from(uart.irq));
    }
    if devices.cmos_rtc {
        taken_gsis.push(8);
    }
    let mut windows = alloc::vec![
        (u64::from(devices.io_apic.address), APIC_PAGE),
        (u64::from(devices.local_apic_base), APIC_PAGE),
    ];
    for (index, device) in devices.virtio_mmio_devices() {
        let fail = |reason| {
            Err(AcpiError::BadVirtioMmio {
                index,
                base: device.base,
                gsi: device.gsi,
                reason,
            })
        };
        let (base, size) = (u64::from(device.base), u64::from(device.size));
        if size < u64::from(crate::VIRTIO_MMIO_SIZE) || base + size > 1 << 32 {
            return fail("the window needs 0x200 bytes below 4 GiB");
        }
        if !base.is_multiple_of(u64::from(crate::VIRTIO_MMIO_SIZE)) {
            return fail("the window is not 0x200-aligned");
        }
        if windows
            .iter()
            .any(|&(other, len)| base < other + len && other < base + size)
        {
            return fail("the window overlaps the APICs or another virtio-mmio window");
        }
        if device.gsi >= IOAPIC_PINS {
            return fail("the GSI is not an I/O APIC input (0..23)");
        }
        if taken_gsis.contains(&device.gsi) {
            return fail(
                "the GSI is taken by the timer, cascade, COM1, RTC, SCI or another device",
            );
        }
        windows.push((base, size));
        taken_gsis.push(device.gsi);
    }
    Ok(())
}

fn too_many(what: &'static str, count: usize, max: usize) -> Result<(), AcpiError> {
    if count > max {
        return Err(AcpiError::TooMany { what, count, max });
    }
    Ok(())
}
