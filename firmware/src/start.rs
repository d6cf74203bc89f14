//! The boot CPU's path from entry to `ready`: boot info, console, ACPI, topology, memory,
//! the other CPUs, and the boot report.

use alloc::vec::Vec;

use log::{error, info, warn};
use numavisor_policy::acpi::{self, AcpiFindings};
use numavisor_policy::bootinfo::{BootInfo, Module, RsdpSource};
use numavisor_policy::memory::{FrameAllocator, Usage, PAGE_SIZE};
use numavisor_policy::pci;
use numavisor_policy::report::events::{self, CpuReport, Timing};
use numavisor_policy::topology::Topology;

use crate::partition;
use crate::platform::boot::{self, pvh_entry};
use crate::platform::console::{log as console_log, report, serial};
use crate::platform::cpu::{apic, gdt, idt, paging, smp, stacks, tsc};
use crate::platform::debug_exit;
use crate::platform::pci_config::Ecam;
use crate::platform::phys_memory::IdentityMapped;

/// Bytes of stack each application processor gets, from its own domain: as much as the boot
/// CPU's, since vCPUs (and their exits' error and restart paths) run on both; `all_stopped`
/// reports the deepest any has been (`stacks`).
const AP_STACK_BYTES: u64 = pvh_entry::BSP_STACK_BYTES as u64;
/// Port of QEMU's isa-debug-exit device unless `debug-exit-port=` says otherwise.
const DEFAULT_DEBUG_EXIT_PORT: u16 = 0xF4;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The physical range the image occupies, heap and boot stack included.
fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}

/// Entered from the entry code on the boot CPU with the loader's boot information address,
/// which entry ran (PVH, multiboot2 or coreboot) and the loader's magic register (the entry code calls
/// it by this symbol name, so the boot layer does not depend on this one).
#[unsafe(no_mangle)]
pub extern "C" fn numavisor_bsp_main(boot_info: u32, entry: u32, magic: u32) -> ! {
    serial::init();
    idt::load();
    // SAFETY: the boot CPU's own static task area, loaded once.
    unsafe { gdt::load_task(gdt::bsp_task_area()) };
    apic::mask_legacy_pic();
    let mut boot = match boot::read_boot_info(boot_info, entry, magic) {
        Ok(boot) => boot,
        Err(problem) => panic!("cannot start: {problem}"),
    };
    if boot.command_line.is_empty() {
        // No command line (coreboot gives ELF payloads none) or an empty one: the layout's
        // `boot_options` apply.
        boot.command_line = crate::embedded_layout::LAYOUT.boot_options.into();
    }
    configure_from_command_line(&boot);
    let calibrated = tsc::calibrate();
    run_self_test(&boot);
    info!(
        "numavisor {} booted by {:?}; command line \"{}\"",
        env!("CARGO_PKG_VERSION"),
        boot.protocol,
        boot.command_line
    );
    if !calibrated {
        warn!("the PIT did not count: assuming a 1 GHz TSC for timeouts");
    }

    // SAFETY: called once, by the boot CPU, before any other CPU runs.
    let tables = unsafe { pvh_entry::boot_page_tables() };
    let identity = paging::finish_identity_map(tables, &boot.memory_map);
    info!(
        "identity map up to {:#x} ({} pages above 4 GiB)",
        identity.top,
        if identity.used_1g_pages {
            "1 GiB"
        } else {
            "2 MiB"
        }
    );

    let t_acpi = tsc::now();
    // SAFETY: `identity` is the map just built over all of RAM below its top; the ACPI
    // tables and boot data read through it are the firmware's, written by no one now.
    let memory = unsafe { IdentityMapped::new(identity.top) };
    let findings = discover_acpi(&boot, &memory);
    let usable_ram = boot.usable_ram();
    let topology = build_topology(findings.as_ref(), &usable_ram);
    let pci = pci_inventory(findings.as_ref(), &topology);
    let t_pmm = tsc::now();
    let mut frames = build_frame_allocator(&topology, &boot.modules);
    let t_smp = tsc::now();

    let x2apic = choose_apic_mode(&topology);
    apic::calibrate_timer();
    let present = findings
        .as_ref()
        .and_then(|f| f.madt.as_ref())
        .map(|madt| madt.present_apic_ids())
        .unwrap_or_default();
    let cpus = start_cpus(&topology, &mut frames, &present, x2apic);
    let t_done = tsc::now();

    report::emit(&events::cpus(&cpus));
    report::emit(&events::pci(&pci));
    report::emit(&events::memory(&frames.ledger()));
    if let Some(hmat) = findings.as_ref().and_then(|f| f.hmat.as_ref()) {
        report::emit(&events::hmat(hmat));
    }
    report::emit(&events::timing(&Timing {
        tsc_hz: tsc::hz(),
        entry_to_ready: t_done.wrapping_sub(tsc::entry()),
        acpi_and_topology: t_pmm - t_acpi,
        memory_setup: t_smp - t_pmm,
        cpu_startup: t_done - t_smp,
        waiting: tsc::wait_ticks(),
    }));
    let ready_tsc = tsc::now();
    report::emit(&events::ready());
    info!("ready");
    if boot.option("exit") == Some("ready") {
        debug_exit::exit(debug_exit::READY);
        error!("exit=ready given but no isa-debug-exit device answered at the port");
    }
    run_partitions(&boot, &topology, frames, pci, &cpus, ready_tsc);
}

/// Builds the embedded layout's partitions, starts them on their CPUs, and serves this CPU's
/// own vCPU (if it has one) — the boot CPU joins the pool of vCPU hosts once set-up is done.
fn run_partitions(
    boot: &BootInfo,
    topology: &Topology,
    frames: FrameAllocator,
    pci: pci::PciInventory,
    cpus: &[CpuReport],
    ready_tsc: u64,
) -> ! {
    let layout = &crate::embedded_layout::LAYOUT;
    let exit_stats_period = boot
        .option("exit-stats")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |ms| ms.saturating_mul(tsc::hz() / 1000));
    // The one context every CPU shares from now on.
    let hv = partition::Hypervisor::new(partition::Boot {
        frames,
        distances: topology.distances(),
        exit_when_all_stopped: boot.option("exit") == Some("partitions"),
        ready_tsc,
        exit_stats_period,
        pci,
    });
    match crate::virt::select() {
        Ok(selection) => {
            info!("{}", selection.summary);
            report::emit(&events::virtualization(
                selection.arch.name(),
                crate::virt::Active::slat_name(),
                selection.arch.tag_name(),
                &selection.summary,
            ));
            let online: Vec<u32> = cpus
                .iter()
                .filter(|c| c.failure.is_none())
                .map(|c| c.apic_id)
                .collect();
            partition::build_all(hv, layout, topology, &online);
        }
        Err(why) => {
            for spec in layout.partitions {
                report::emit(&events::partition_refused(
                    spec.name,
                    &alloc::format!("this machine cannot run partitions: {why}"),
                ));
            }
            error!("partitions cannot run: {why}");
            partition::build_all(hv, &EMPTY_LAYOUT, topology, &[]);
        }
    }
    smp::register_work(alloc::boxed::Box::leak(alloc::boxed::Box::new(
        move |apic_id| partition::run_assigned_vcpu(hv, apic_id),
    )));
    partition::start_all(hv, apic::wake);
    smp::serve_vcpus()
}

static EMPTY_LAYOUT: numavisor_layout::Layout = numavisor_layout::Layout {
    name: "none",
    partitions: &[],
    networks: &[],
    boot_options: "",
};

/// `selftest=panic|page-fault|divide-error`: provokes the failure so tests can check that it
/// is reported and ends the run with the failure status (never a reboot).
fn run_self_test(boot: &BootInfo) {
    match boot.option("selftest") {
        None => {}
        Some("panic") => panic!("self-test panic requested on the command line"),
        Some("page-fault") => {
            // SAFETY: deliberately touches an address no mapping covers (past the canonical
            // identity map) to raise #PF; the handler never returns.
            unsafe { core::ptr::read_volatile(0x7fff_dead_b000 as *const u64) };
        }
        Some("divide-error") => {
            // SAFETY: a deliberate #DE; the handler never returns.
            unsafe {
                core::arch::asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _)
            };
        }
        Some("bad-stack") => {
            // SAFETY: a deliberate push through a non-canonical stack pointer: the #SS it
            // raises cannot be delivered on that stack, so it becomes a double fault, taken on
            // this CPU's IST1 stack (`gdt::load_task`); the handler never returns.
            unsafe {
                core::arch::asm!(
                    "mov rsp, {}",
                    "push rax",
                    in(reg) 0x8000_0000_0000_0000u64,
                    options(noreturn)
                )
            };
        }
        // Checked after every VM exit (see `virt::host_state`).
        Some("host-state") => crate::virt::host_state::enable_check(),
        // virtio-mem plugs every other block in 4 KiB pieces (`partition::hot_add`).
        Some("hot-add-pieces") => crate::partition::force_hot_add_pieces(),
        Some(other) => {
            warn!("selftest={other}: unknown (panic, page-fault, divide-error, bad-stack, host-state, hot-add-pieces)")
        }
    }
}

fn configure_from_command_line(boot: &BootInfo) {
    let level = boot.option("log").and_then(console_log::parse_level);
    console_log::init(level.unwrap_or(log::LevelFilter::Info));
    if boot.option("log").is_some() && level.is_none() {
        warn!(
            "log={} is not a level (error, warn, info, debug, trace, off)",
            boot.option("log").unwrap_or("")
        );
    }
    // Where the instructions of each VM exit go (`exit_profile` event at the end).
    if boot.option("profile") == Some("exits") {
        crate::partition::enable_profile();
    }
    if boot.option("exit").is_some() {
        if boot.option("debug-exit") == Some("bochs") {
            debug_exit::enable_bochs();
        } else {
            let port = boot
                .option("debug-exit-port")
                .and_then(|p| u16::from_str_radix(p.trim_start_matches("0x"), 16).ok())
                .unwrap_or(DEFAULT_DEBUG_EXIT_PORT);
            debug_exit::enable(port);
        }
    }
}

/// Finds and parses the ACPI tables, boot modules holding tables overriding the firmware's;
/// `None` when the machine has no RSDP at all.
fn discover_acpi(boot: &BootInfo, memory: &IdentityMapped) -> Option<AcpiFindings> {
    let rsdp = boot
        .rsdp
        .clone()
        .or_else(|| acpi::find_rsdp_in_bios_areas(memory).map(RsdpSource::At));
    let Some(rsdp) = rsdp else {
        warn!("ACPI: no RSDP from the loader nor in the BIOS areas; assuming one domain and only this CPU");
        return None;
    };
    let candidates: Vec<acpi::OverrideCandidate> = boot
        .modules
        .iter()
        .map(|m| acpi::OverrideCandidate {
            address: m.start,
            length: m.len(),
        })
        .collect();
    let findings = match &rsdp {
        RsdpSource::At(address) => acpi::discover_with_overrides(memory, *address, &candidates),
        RsdpSource::Copied { address, bytes } => {
            // The loader's copy, read where it was, over the memory holding the tables.
            let copy = acpi::MemoryImage::new().with(*address, bytes.clone());
            let layered = acpi::Overlay {
                top: &copy,
                below: memory,
            };
            acpi::discover_with_overrides(&layered, *address, &candidates)
        }
    };
    let rsdp = rsdp.address();
    for done in &findings.overrides {
        let name = boot
            .modules
            .iter()
            .find(|m| m.start == done.module && !m.name.is_empty())
            .map_or(alloc::format!("at {:#x}", done.module), |m| m.name.clone());
        match done.replaced {
            Some(table) => info!(
                "ACPI: {} from boot module {name} replaces the firmware's at {table:#x}",
                core::str::from_utf8(&done.signature).unwrap_or("????")
            ),
            None => info!(
                "ACPI: {} from boot module {name} added (the firmware has none)",
                core::str::from_utf8(&done.signature).unwrap_or("????")
            ),
        }
    }
    for problem in &findings.problems {
        warn!("ACPI: {problem}");
    }
    report::emit(&events::acpi(rsdp, &findings));
    if boot.flag("acpi-dump") {
        for table in &findings.tables {
            if let Some(bytes) =
                acpi::PhysicalMemory::read(memory, table.address, table.length as usize)
            {
                report::emit(&events::acpi_table(table, bytes));
            }
        }
    }
    Some(findings)
}

/// Every PCI function the MCFG's windows reach, placed under its host bridge, node and
/// remapping unit.
fn pci_inventory(findings: Option<&AcpiFindings>, topology: &Topology) -> pci::PciInventory {
    let windows = findings
        .and_then(|f| f.mcfg.as_ref())
        .map(|m| m.windows.clone())
        .unwrap_or_default();
    // SAFETY: the windows are the firmware's MCFG allocations; nothing else touches
    // configuration space while the boot CPU enumerates it.
    let mut ecam = unsafe { Ecam::new(&windows) };
    let reachable = ecam.windows().to_vec();
    let functions = pci::enumerate(&reachable, &mut ecam);
    info!(
        "PCI: {} function(s) on {} segment window(s)",
        functions.len(),
        reachable.len()
    );
    let node_of_pxm = |pxm: u32| {
        topology
            .domains
            .iter()
            .find(|d| d.pxm == pxm)
            .map(|d| d.node)
    };
    let bridges = findings.map_or(Vec::new(), |f| {
        pci::HostBridgeInfo::from_namespace(&f.host_bridges, node_of_pxm)
    });
    // A machine describes its IOMMUs by DMAR (VT-d) or IVRS (AMD-Vi); QEMU lets an AMD CPU
    // have an Intel IOMMU, so the table decides, not the CPU.
    let remapping = findings.and_then(|f| match (&f.dmar, &f.ivrs) {
        (Some(dmar), _) => Some(pci::Remapping::VtD { dmar, node_of_pxm }),
        (None, Some(ivrs)) => Some(pci::Remapping::AmdVi(ivrs)),
        (None, None) => None,
    });
    pci::inventory::build(
        &reachable,
        functions,
        bridges,
        remapping.as_ref().map(|r| r as &dyn pci::RemappingMap),
    )
}

fn build_topology(findings: Option<&AcpiFindings>, usable_ram: &[(u64, u64)]) -> Topology {
    let topology = match findings {
        Some(findings) => {
            let (topology, problems) = Topology::build(findings, usable_ram);
            for problem in &problems {
                warn!("topology: {problem}");
            }
            topology
        }
        None => Topology::single_domain(&[apic::current_apic_id()], usable_ram),
    };
    let mut topology = topology;
    // Without a MADT the tables list no CPU at all; the one running this code exists anyway.
    let bsp = apic::current_apic_id();
    if topology.domain_of_apic_id(bsp).is_none() {
        warn!("topology: the boot CPU (APIC ID {bsp}) is in no table; placed in node 0");
        if let Some(first) = topology.domains.first_mut() {
            first.apic_ids.push(bsp);
            first.apic_ids.sort_unstable();
        }
    }
    report::emit(&events::topology(&topology));
    topology
}

/// The per-node frame allocator, with the image and the boot modules taken out: the modules
/// were read by ACPI discovery (table overrides) and may be read again (`acpi-dump`), so
/// their memory is never handed out.
fn build_frame_allocator(topology: &Topology, modules: &[Module]) -> FrameAllocator {
    let per_node: Vec<Vec<(u64, u64)>> =
        topology.domains.iter().map(|d| d.usable.clone()).collect();
    let mut frames = FrameAllocator::new(&per_node);
    let (start, end) = image_range();
    if let Err(problem) = frames.reserve(start, end, Usage::Hypervisor) {
        warn!("memory: cannot reserve the image [{start:#x}, {end:#x}): {problem}");
    }
    for module in modules.iter().filter(|m| !m.is_empty()) {
        if let Err(problem) = frames.reserve(module.start, module.end, Usage::Hypervisor) {
            warn!(
                "memory: cannot reserve boot module {} [{:#x}, {:#x}): {problem}",
                module.name, module.start, module.end
            );
        }
    }
    frames
}

fn choose_apic_mode(topology: &Topology) -> bool {
    let needs_x2apic = topology
        .domains
        .iter()
        .flat_map(|d| d.apic_ids.iter())
        .any(|&id| id > 254);
    let x2apic = apic::x2apic_enabled() || (needs_x2apic && apic::x2apic_supported());
    if needs_x2apic && !x2apic {
        warn!("CPUs with APIC IDs above 254 exist but this CPU has no x2APIC: they stay offline");
    }
    apic::enable(x2apic);
    x2apic
}

/// Starts every enabled CPU the topology lists; returns one report entry per CPU.
fn start_cpus(
    topology: &Topology,
    frames: &mut FrameAllocator,
    present: &[u32],
    x2apic: bool,
) -> Vec<CpuReport> {
    let bsp = apic::current_apic_id();
    let mut cpus = Vec::new();
    cpus.push(CpuReport::online(
        bsp,
        topology.domain_of_apic_id(bsp),
        true,
        None,
    ));
    let candidates: Vec<u32> = present
        .iter()
        .copied()
        .filter(|&id| id != bsp && (x2apic || id <= 254))
        .collect();
    if candidates.is_empty() {
        return cpus;
    }
    let Some(page) = trampoline_page(frames) else {
        error!("SMP: no free page below 1 MiB for the start-up code; only the boot CPU runs");
        cpus.extend(candidates.iter().map(|&id| {
            CpuReport::failed(id, topology.domain_of_apic_id(id), "no trampoline page")
        }));
        return cpus;
    };
    smp::install_trampoline(page, pvh_entry::boot_pml4_address(), x2apic);
    let mut launches = Vec::new();
    for &apic_id in &candidates {
        let node = topology.domain_of_apic_id(apic_id);
        match allocate_stack(topology, frames, node) {
            Ok((stack_base, stack_node)) => {
                stacks::paint(stack_base, AP_STACK_BYTES);
                launches.push((
                    smp::ApLaunch {
                        apic_id,
                        stack_top: stack_base + AP_STACK_BYTES,
                        task_area: stack_base + AP_STACK_BYTES,
                    },
                    stack_node,
                ))
            }
            Err(problem) => {
                error!("SMP: no stack for APIC ID {apic_id}: {problem}");
                cpus.push(CpuReport::failed(apic_id, node, "no memory for its stack"));
            }
        }
    }
    let aps: Vec<smp::ApLaunch> = launches.iter().map(|(launch, _)| *launch).collect();
    smp::start_all(page, &aps, |index, outcome| {
        let (launch, stack_node) = launches[index];
        let node = topology.domain_of_apic_id(launch.apic_id);
        match outcome {
            smp::ApOutcome::Online { reported_apic_id } => {
                if reported_apic_id != launch.apic_id {
                    warn!(
                        "SMP: CPU started as APIC ID {} reports APIC ID {reported_apic_id}",
                        launch.apic_id
                    );
                }
                log::debug!("SMP: APIC ID {} online on node {node:?}", launch.apic_id);
                cpus.push(CpuReport::online(
                    launch.apic_id,
                    node,
                    false,
                    Some(stack_node),
                ));
            }
            smp::ApOutcome::NoResponse => {
                error!(
                    "SMP: APIC ID {} did not answer INIT-SIPI-SIPI in time; left out",
                    launch.apic_id
                );
                cpus.push(CpuReport::failed(
                    launch.apic_id,
                    node,
                    "no response to INIT-SIPI-SIPI",
                ));
            }
        }
    });
    cpus
}

/// A contiguous stack for an AP, with its task area (`gdt::load_task`) above it, on its own
/// domain or the nearest one that has memory.
fn allocate_stack(
    topology: &Topology,
    frames: &mut FrameAllocator,
    node: Option<usize>,
) -> Result<(u64, usize), numavisor_policy::memory::AllocError> {
    let order = topology.nearest_first(node.unwrap_or(0));
    let bytes = AP_STACK_BYTES + gdt::TASK_AREA_BYTES;
    frames.reserve_run_near(&order, bytes / PAGE_SIZE, Usage::Hypervisor)
}

/// Reserves a free 4 KiB page below 1 MiB (not page 0) for the AP start-up code.
fn trampoline_page(frames: &mut FrameAllocator) -> Option<u64> {
    frames.reserve_page_within(0x1000, 0x10_0000, Usage::Hypervisor)
}
