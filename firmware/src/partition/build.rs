//! Building one partition: place it, fund its pool, back its RAM, build its nested page
//! tables and VMCBs, and load its guest with PVH boot data and its own ACPI tables.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use numavisor_acpi_tables as guest_acpi;
use numavisor_layout::{PartitionSpec, VcpuGroup};
use numavisor_policy::devices::lapic::LocalApic;
use numavisor_policy::guest::{bzimage, elf, start_info};
use numavisor_policy::iommu::amd_vi::AmdViPageTable;
use numavisor_policy::iommu::vtd::VtdSecondLevel;
use numavisor_policy::memory::BlockSize;
use numavisor_policy::memory::FrameAllocator;
use numavisor_policy::partition::guest_ram::GuestRam;
use numavisor_policy::partition::memory_sync::MemoryGenerations;
use numavisor_policy::partition::placement::GuestBlock;
use numavisor_policy::partition::placement::{self, CpuRequest, PlacementError};
use numavisor_policy::partition::pool::{PartitionPool, PoolError};
use numavisor_policy::partition::{cost, zeroing};
use numavisor_policy::pci::passthrough::PassthroughRefusal;
use numavisor_policy::pci::RemappingKind;
use numavisor_policy::report::events::{self, PartitionReport, SlatFigures, VnodeReport};
use numavisor_policy::slat::{
    Ept, Npt, Permissions, SlatBuilder, SlatError, SlatFormat, SlatStats,
};
use numavisor_policy::topology::Topology;
use numavisor_policy::vmm::cpuid::{self, CpuidPolicy, Vendor};
use numavisor_policy::vmm::platform::{
    MemWindow, NicWindow, PlatformConfig, PlatformDevices, MAX_NICS, MAX_VIRTIO_MEM,
};
use numavisor_policy::vmm::vcpu::EntryState;
use spin::Mutex;

use super::control::{halt_a_while, Control, VcpuSlot};
use super::guest_memory::{GuestMemory, IdentityTables};
use super::hot_add;
use super::{Hypervisor, Partition, PartitionState};
use crate::platform::cpu::tsc;
use crate::virt::{Active, Arch, NoTlbTag};

/// The virtual local APIC timer's input clock (QEMU's and many real parts' 1 GHz; Linux
/// measures it, or uses the TSC-deadline mode and never needs it), but never faster than the
/// TSC, as on hardware, where it runs from the bus or crystal clock: under Bochs the TSC runs
/// at about 50 MHz, and kvm-unit-tests' "APIC LVT timer one shot" checks that a count of N
/// takes at least N TSC ticks.
const APIC_TIMER_HZ: u64 = 1_000_000_000;
/// The guest RTC's time at its start when nothing better is known: 2026-01-01 00:00:00 UTC.
const RTC_EPOCH_SECONDS: u64 = 1_767_225_600;
/// The guest's debug-exit port (QEMU's isa-debug-exit default), which test guests use.
const DEBUG_EXIT_PORT: u16 = 0xF4;

/// Why a partition was refused at boot.
pub enum BuildError {
    Placement(PlacementError),
    Pool(PoolError),
    Slat(SlatError),
    Image(elf::ImageError),
    Linux(bzimage::BzImageError),
    Platform(alloc::string::String),
    GuestAcpi(guest_acpi::AcpiError),
    TooLittleRam { size: u64 },
    NoTlbTag(NoTlbTag),
    ImageOutsideRam { gpa: u64 },
    Passthrough(super::passthrough::Refused),
    Dma(alloc::string::String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Placement(e) => write!(f, "{e}"),
            BuildError::Pool(e) => write!(f, "pool: {e}"),
            BuildError::Slat(e) => write!(f, "nested page tables: {e}"),
            BuildError::Image(e) => write!(f, "image: {e}"),
            BuildError::Linux(e) => write!(f, "image (Linux bzImage): {e}"),
            BuildError::Platform(e) => write!(f, "virtual platform: {e}"),
            BuildError::GuestAcpi(e) => write!(f, "guest ACPI tables: {e}"),
            BuildError::TooLittleRam { size } => write!(
                f,
                "memory: vnode 0 has {size} bytes; a PVH guest needs at least {} (boot data, ACPI tables, image at 1 MiB)",
                start_info::MINIMUM_RAM
            ),
            BuildError::NoTlbTag(NoTlbTag { wanted, available }) => write!(
                f,
                "the CPU offers {available} TLB tags (ASIDs/VPIDs; 0 is the host's); this partition would need tag {wanted}"
            ),
            BuildError::Passthrough(refused) => write!(f, "{refused}"),
            BuildError::Dma(e) => write!(f, "DMA remapping: {e}"),
            BuildError::ImageOutsideRam { gpa } => {
                write!(f, "image: a segment at guest-physical {gpa:#x} lies outside the partition's RAM")
            }
        }
    }
}

impl From<PoolError> for BuildError {
    fn from(e: PoolError) -> Self {
        BuildError::Pool(e)
    }
}
impl From<PlacementError> for BuildError {
    fn from(e: PlacementError) -> Self {
        BuildError::Placement(e)
    }
}
impl From<SlatError> for BuildError {
    fn from(e: SlatError) -> Self {
        BuildError::Slat(e)
    }
}

fn cpu_requests(spec: &PartitionSpec) -> Vec<CpuRequest> {
    spec.vcpus
        .iter()
        .map(|group| match *group {
            VcpuGroup::OnNode { node, count, vnode } => CpuRequest::OnNode {
                node: node as usize,
                count: count as usize,
                vnode: vnode.map(|v| v as usize),
            },
            VcpuGroup::ApicIds { ids, vnode } => CpuRequest::ApicIds {
                ids: ids.to_vec(),
                vnode: vnode.map(|v| v as usize),
            },
        })
        .collect()
}

/// Builds partition `index` from `spec`, or says why it cannot run here. On error every page
/// taken is given back.
pub fn build(
    hv: &'static Hypervisor,
    index: usize,
    spec: &'static PartitionSpec,
    passthrough: &[Result<usize, PassthroughRefusal>],
    topology: &Topology,
    frames: &mut FrameAllocator,
    available: &mut BTreeSet<u32>,
) -> Result<Partition, BuildError> {
    // Refuse a bad image before anything is allocated (load_guest reads it on every start).
    if bzimage::is_bzimage(spec.image) {
        bzimage::parse(spec.image).map_err(BuildError::Linux)?;
    } else {
        elf::parse(spec.image).map_err(BuildError::Image)?;
    }
    let tlb_tag = Active::tlb_tag(index).map_err(BuildError::NoTlbTag)?;
    let vnodes: Vec<(u64, usize)> = spec
        .memory
        .iter()
        .map(|v| (v.size, v.node as usize))
        .collect();
    let vnode_nodes: Vec<usize> = vnodes.iter().map(|&(_, node)| node).collect();
    let pci_devices =
        super::passthrough::accept(spec, passthrough).map_err(BuildError::Passthrough)?;
    super::passthrough::report_far(&hv.pci, spec, &pci_devices, &vnode_nodes, &hv.distances);
    placement::check_memory(&vnodes, frames)?;
    if vnodes
        .first()
        .is_none_or(|&(size, _)| size < start_info::MINIMUM_RAM)
    {
        return Err(BuildError::TooLittleRam {
            size: vnodes.first().map_or(0, |v| v.0),
        });
    }
    let mut cpus_left = available.clone();
    let vcpus =
        placement::assign_cpus(&cpu_requests(spec), &vnode_nodes, topology, &mut cpus_left)?;

    let home = vnode_nodes[0];
    let mut pool = PartitionPool::new(spec.name, home);
    pool.deposit(frames, spec.pool_bytes)?;
    if spec.dynamic {
        // The tables its balloon may split, so that inflating never fails for want of them,
        // and those of growth plugged in 4 KiB pieces, so that a plug on a node without a free
        // 2 MiB block does not: in its SLAT, and in its DMA remapping tables too when it owns
        // PCI functions.
        let table_sets = if spec.pci.is_empty() { 1 } else { 2 };
        let split_pages: u64 = spec
            .memory
            .iter()
            .map(|v| {
                let pages = cost::balloon_split_pages(v.size, v.min)
                    + cost::hot_add_piece_pages(v.growth());
                pages * table_sets
            })
            .sum();
        if let Err(e) = pool.deposit(frames, split_pages * numavisor_policy::memory::PAGE_SIZE) {
            let _ = pool.release(frames);
            return Err(e.into());
        }
    }
    let mut state = PartitionState {
        pool: Some(pool),
        ram: Default::default(),
        ballooned: BTreeSet::new(),
        owed: BTreeSet::new(),
        vcpus,
        controls: None,
        slat_root: 0,
        tlb_tag,
        restarts: 0,
        slat: SlatStats::default(),
        entry: EntryState::Startup { vector: 0 },
        tsc_offset: 0,
        first_entry_tsc: None,
        exits: 0,
        stop_tsc: 0,
        dma: None,
        pci_mapped: Default::default(),
    };
    // The DMA remapping tables take the format of the functions' unit (one kind per machine:
    // a DMAR wins over an IVRS).
    let dma_kind = pci_devices
        .first()
        .and_then(|&i| hv.pci.unit_of(i))
        .map(|u| u.kind);
    if let Err(e) = fund(spec, dma_kind, frames, &mut state) {
        release(&mut state, frames);
        return Err(e);
    }
    let devices = match new_platform(hv, spec, &pci_devices) {
        Ok(devices) => devices,
        Err(e) => {
            release(&mut state, frames);
            return Err(BuildError::Platform(e));
        }
    };
    let vcpus: alloc::vec::Vec<VcpuSlot> = state
        .vcpus
        .iter()
        .map(|plan| {
            let lapic = new_lapic(guest_apic_id(&state.vcpus, plan.vcpu), plan.vcpu);
            VcpuSlot::new(lapic, plan.apic_id)
        })
        .collect();
    let memory = MemoryGenerations::new(vcpus.len());
    let partition = Partition {
        hv,
        index,
        spec,
        state: Mutex::new(state),
        devices: Mutex::new(devices),
        vcpus,
        control: Control::default(),
        exit_counts: Default::default(),
        zeroed_shares: AtomicUsize::new(0),
        memory,
        dynamic: Mutex::new(Default::default()),
        nic_backlog: core::sync::atomic::AtomicU8::new(0),
        pci_devices,
        pci_vectors: Default::default(),
        dma_faults: Default::default(),
    };
    let loaded = {
        let mut state = partition.state.lock();
        check_guest(&partition, &mut state)
    };
    if let Err(e) = loaded {
        release(&mut partition.state.lock(), frames);
        return Err(e);
    }
    let dma_root = partition.state.lock().dma.map(|dma| dma.root);
    if let Some(root) = dma_root {
        // The frame allocator is this build's: the remapping lock takes it by itself.
        let attached = super::passthrough::attach_all_with(&partition, root, frames);
        if let Err(e) = attached {
            super::passthrough::detach_all(&partition);
            release(&mut partition.state.lock(), frames);
            return Err(BuildError::Dma(e));
        }
    }
    *available = cpus_left;
    Ok(partition)
}

/// Backs the guest RAM and draws the SLAT, bitmaps and VMCBs from the pool.
fn fund(
    spec: &PartitionSpec,
    dma_kind: Option<RemappingKind>,
    frames: &mut FrameAllocator,
    state: &mut PartitionState,
) -> Result<(), BuildError> {
    let sizes: Vec<u64> = spec.memory.iter().map(|v| v.size).collect();
    let max_page = Active::clamp_page(spec.max_page);
    let mut blocks = Vec::new();
    for (vnode, ranges) in cost::guest_physical_ranges(&sizes).into_iter().enumerate() {
        let node = spec.memory[vnode].node as usize;
        let backed = placement::back_guest_ranges(frames, vnode, node, &ranges, max_page);
        match backed {
            Ok(backed) => blocks.extend(backed),
            Err(e) => {
                // Given back by `release` with the rest.
                state.ram = Arc::new(GuestRam::new(blocks));
                return Err(e.into());
            }
        }
    }
    state.ram = Arc::new(GuestRam::new(blocks));
    let pool = state.pool.as_mut().expect("pool deposited above");
    let (root, stats) = match Active::arch() {
        Arch::Svm => map_guest_memory::<Npt>(state.ram.blocks(), pool, max_page)?,
        Arch::Vmx => map_guest_memory::<Ept>(state.ram.blocks(), pool, max_page)?,
    };
    state.slat_root = root;
    state.slat = stats;
    if let Some(kind) = dma_kind {
        // The DMA remapping domain maps exactly the guest RAM, from the same pool; 2 MiB
        // leaves at most, which every VT-d unit with super-pages and every AMD-Vi unit take.
        let page = match max_page {
            BlockSize::Size1G => BlockSize::Size2M,
            other => other,
        };
        let blocks = state.ram.blocks();
        let (root, stats) = match kind {
            RemappingKind::VtD => map_guest_memory::<VtdSecondLevel>(blocks, pool, page)?,
            RemappingKind::AmdVi => map_guest_memory::<AmdViPageTable>(blocks, pool, page)?,
        };
        state.dma = Some(super::DmaTables {
            root,
            kind,
            max_page: page,
            stats,
        });
    }
    state.controls = Some(Active::control_pages(pool, state.vcpus.len())?);
    Ok(())
}

/// Maps every block of guest RAM read-write-execute in a SLAT of format `F` drawn from the
/// pool: (root, statistics).
fn map_guest_memory<F: SlatFormat>(
    blocks: &[GuestBlock],
    pool: &mut PartitionPool,
    max_page: BlockSize,
) -> Result<(u64, SlatStats), BuildError> {
    // SAFETY: the builder names only the tables of this new SLAT, drawn from `pool`, which
    // this build owns.
    let mut tables = unsafe { IdentityTables::new() };
    let mut slat = SlatBuilder::<F>::new(&mut tables, pool, max_page)?;
    let rwx = Permissions {
        read: true,
        write: true,
        execute: true,
    };
    for block in blocks {
        slat.map(
            &mut tables,
            pool,
            block.gpa,
            block.spa,
            block.size.bytes(),
            rwx,
        )?;
    }
    Ok((slat.root(), slat.stats()))
}

/// Writes the guest's image, boot data and ACPI tables into its (zeroed) RAM, or with a
/// checking `memory` only checks that they fit; returns where vCPU 0 starts.
fn write_guest(
    partition: &Partition,
    state: &PartitionState,
    memory: &GuestMemory,
) -> Result<EntryState, BuildError> {
    let spec = partition.spec;
    let sizes: Vec<u64> = spec.memory.iter().map(|v| v.size).collect();
    let ranges = cost::all_guest_physical_ranges(&sizes);
    let map = start_info::memory_map(&ranges);
    let tables =
        guest_acpi::generate(&guest_platform(partition, state)).map_err(BuildError::GuestAcpi)?;
    if !memory.write(start_info::ACPI_GPA, &tables.image()) {
        return Err(BuildError::TooLittleRam { size: sizes[0] });
    }
    if bzimage::is_bzimage(spec.image) {
        load_linux(spec, memory, &map, tables.rsdp_address())
    } else {
        load_pvh(spec, memory, &map, tables.rsdp_address(), sizes[0])
    }
}

/// Sets up every vCPU's control block and the guest clock for a (re)start from `entry`.
fn prepare_start(state: &mut PartitionState, entry: EntryState) {
    state.entry = entry;
    let (tag, root) = (state.tlb_tag, state.slat_root);
    if let Some(controls) = state.controls.as_mut() {
        Active::prepare(controls, tag, root);
    }
    // The guest's clock starts near 0, the same on every vCPU.
    state.tsc_offset = 0u64.wrapping_sub(tsc::now());
}

/// At build: checks that the guest's contents fit its RAM, writing nothing (its own CPUs zero
/// and load it when it first starts: [`first_start_share`]), and prepares the first start.
fn check_guest(partition: &Partition, state: &mut PartitionState) -> Result<(), BuildError> {
    let entry = write_guest(partition, state, &GuestMemory::checking(state.ram.clone()))?;
    prepare_start(state, entry);
    Ok(())
}

/// Before a partition's first start, on the CPU of its vCPU `vcpu`: zeroes this vCPU's share
/// of the guest RAM (`zeroing::shares`: its part of the RAM on this CPU's own node), in
/// parallel with the partition's other CPUs. vCPU 0's CPU then waits for the others and writes the guest's
/// contents, so each partition starts as soon as its own memory is ready.
pub fn first_start_share(partition: &Partition, vcpu: usize) -> Result<(), BuildError> {
    let (ram, share) = {
        let state = partition.state.lock();
        let mut shares = zeroing::shares(state.ram.blocks(), &state.vcpus);
        let share = if vcpu < shares.len() {
            shares.swap_remove(vcpu)
        } else {
            Vec::new()
        };
        (state.ram.clone(), share)
    };
    let memory = GuestMemory::new(ram);
    for span in share {
        memory.zero(span);
    }
    partition.zeroed_shares.fetch_add(1, Ordering::SeqCst);
    if vcpu != 0 {
        return Ok(());
    }
    while partition.zeroed_shares.load(Ordering::SeqCst) < partition.vcpus.len() {
        halt_a_while();
    }
    // Checked at build with the same inputs: an error here is a bug, and stops the partition.
    let state = partition.state.lock();
    write_guest(partition, &state, &memory).map(|_| ())
}

/// A PVH ELF: its segments, `hvm_start_info`, memory map and command line.
fn load_pvh(
    spec: &PartitionSpec,
    memory: &GuestMemory,
    map: &[(u64, u64, u32)],
    rsdp: u64,
    vnode0_size: u64,
) -> Result<EntryState, BuildError> {
    let image = elf::parse(spec.image).map_err(BuildError::Image)?;
    for segment in &image.segments {
        let bytes = &spec.image[segment.offset..segment.offset + segment.file_size];
        // Zero-filled tail (.bss) is already zero; check it lies in RAM too.
        let end = segment.gpa + segment.memory_size - 1;
        if !memory.write(segment.gpa, bytes) || memory.read_u64(end & !7).is_none() {
            return Err(BuildError::ImageOutsideRam { gpa: segment.gpa });
        }
    }
    let mut command_line: Vec<u8> = spec.command_line.as_bytes().to_vec();
    command_line.truncate(start_info::CMDLINE_BYTES - 1);
    command_line.push(0);
    let written = memory.write(
        start_info::START_INFO_GPA,
        &start_info::start_info(map.len() as u32, rsdp),
    ) && memory.write(start_info::MEMMAP_GPA, &start_info::encode_memory_map(map))
        && memory.write(start_info::CMDLINE_GPA, &command_line);
    if !written {
        return Err(BuildError::TooLittleRam { size: vnode0_size });
    }
    Ok(EntryState::Pvh32 {
        rip: image.pvh_entry as u64,
        rbx: start_info::START_INFO_GPA,
    })
}

/// A Linux bzImage (64-bit boot protocol): kernel, initramfs, zero page, command line, boot
/// GDT and page tables where [`bzimage::plan`] puts them.
fn load_linux(
    spec: &PartitionSpec,
    memory: &GuestMemory,
    map: &[(u64, u64, u32)],
    rsdp: u64,
) -> Result<EntryState, BuildError> {
    let image = bzimage::parse(spec.image).map_err(BuildError::Linux)?;
    let initrd = spec.initrd.unwrap_or(&[]);
    let ram: Vec<(u64, u64)> = map
        .iter()
        .filter(|e| e.2 == start_info::E820_RAM)
        .map(|e| (e.0, e.1))
        .collect();
    let command_line = linux_command_line(spec);
    let plan = bzimage::plan(
        &image,
        &ram,
        command_line.as_bytes(),
        initrd.len() as u64,
        rsdp,
        map,
    )
    .map_err(BuildError::Linux)?;
    let written = memory.write(plan.kernel_gpa, image.kernel)
        && (initrd.is_empty() || memory.write(plan.initrd_gpa, initrd))
        && memory.write(plan.zero_page_gpa, &plan.zero_page)
        && memory.write(plan.cmdline_gpa, &plan.cmdline)
        && memory.write(plan.gdt_gpa, &plan.gdt)
        && memory.write(plan.page_tables_gpa, &plan.page_tables);
    if !written {
        return Err(BuildError::ImageOutsideRam {
            gpa: plan.kernel_gpa,
        });
    }
    Ok(EntryState::Linux64 {
        rip: plan.entry_rip,
        rsi: plan.rsi,
        cr3: plan.cr3,
        gdt_base: plan.gdt_gpa,
        gdt_limit: (plan.gdt.len() as u16).saturating_sub(1),
    })
}

/// What numavisor adds to a Linux guest's command line, and why.
///
/// `tsc_early_khz`: on an AMD-vendor CPU Linux has no CPUID leaf for the TSC rate and
/// measures it against the PIT (channel 2) or the ACPI PM timer. Both are emulated from the
/// guest TSC, but Linux also requires each port read to take less than 50,000 TSC cycles
/// (`tsc_read_refs`) or the polling loop to run at least 1,000 times in 10 ms
/// (`pit_calibrate_tsc`): true on hardware virtualization, not under an emulator such as
/// QEMU's TCG, where a VM exit costs tens of microseconds. The hypervisor knows the rate
/// exactly (the guest TSC runs at the host's), so it says it.
///
/// `tsc=reliable`: the guest TSC is the host's, at one rate on every vCPU (the hypervisor
/// keeps time by it too), but Linux's clocksource watchdog judges it against the jiffies its
/// timer ticks count until the PM timer registers. Under an emulator a busy neighbour delays
/// those ticks, the watchdog marks the TSC unstable, and the guest then reads the time from
/// the ACPI PM timer, one port exit a read: about 2,000 exits per MiB in the network
/// benchmark. Saying the TSC is reliable turns the watchdog off for it.
///
/// With virtio-mem (a vnode whose `memory_max` exceeds its `size`):
/// `memhp_default_state=online`, because Debian's kernel leaves hot-added memory offline
/// until something onlines it (`CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE` is not set) and a
/// partition has no udev; `memory_hotplug.online_policy=auto-movable`, so that plugged memory
/// goes to ZONE_MOVABLE (which Linux can empty again to unplug it) while a node's movable
/// memory stays within Linux's default ratio to its other memory (301 %), and to the kernel's
/// zones beyond that, so a guest that grew far never runs short of kernel memory.
pub fn linux_added_options(spec: &PartitionSpec) -> alloc::string::String {
    let hot_add = if hot_add::growing_vnodes(spec).is_empty() {
        ""
    } else {
        " memhp_default_state=online memory_hotplug.online_policy=auto-movable"
    };
    alloc::format!("tsc_early_khz={} tsc=reliable{hot_add}", tsc::hz() / 1000)
}

fn linux_command_line(spec: &PartitionSpec) -> alloc::string::String {
    let user = spec.command_line;
    let added = linux_added_options(spec);
    if user.is_empty() {
        added
    } else {
        alloc::format!("{user} {added}")
    }
}

/// The virtio-mmio slot of the memory balloon; network card `n` takes slot `NIC_SLOT + n`
/// (the guest's DSDT lists them in slot order, so Linux names the cards eth0, eth1, … in the
/// layout's order).
const BALLOON_SLOT: usize = 0;
const NIC_SLOT: usize = 1;

/// The devices the guest's ACPI tables describe: a PC, with a memory balloon under Dynamic
/// Memory and a virtio-net card per `nics` entry.
fn guest_devices(spec: &PartitionSpec) -> guest_acpi::Devices {
    let mut devices = guest_acpi::Devices::pc();
    if spec.dynamic {
        devices.virtio_mmio[BALLOON_SLOT] = Some(guest_acpi::VirtioMmio::at_slot(BALLOON_SLOT));
    }
    // The layout allows at most MAX_NICS_PER_PARTITION (4) cards: slots 1..=4 of 9.
    for slot in (NIC_SLOT..).take(spec.nics.len()) {
        devices.virtio_mmio[slot] = Some(guest_acpi::VirtioMmio::at_slot(slot));
    }
    // And at most MAX_GROWING_VNODES (4) virtio-mem devices: slots 5..=8.
    let growing = hot_add::growing_vnodes(spec).len();
    for slot in (guest_acpi::VIRTIO_MEM_FIRST_SLOT..).take(growing) {
        devices.virtio_mmio[slot] = Some(guest_acpi::VirtioMmio::at_slot(slot));
    }
    devices
}

/// Where the virtual devices sit: the values the guest's ACPI tables describe.
fn platform_config(spec: &PartitionSpec) -> PlatformConfig {
    let devices = guest_devices(spec);
    let window = |slot: usize| devices.virtio_mmio[slot].map(|v| (u64::from(v.base), v.gsi as u8));
    let mut nics = [None; MAX_NICS];
    for (index, nic) in spec.nics.iter().enumerate().take(MAX_NICS) {
        nics[index] = window(NIC_SLOT + index).map(|(base, pin)| NicWindow {
            base,
            pin,
            mac: nic.mac,
        });
    }
    let mut virtio_mem = [None; MAX_VIRTIO_MEM];
    for (index, config) in hot_add::device_configs(spec)
        .into_iter()
        .enumerate()
        .take(MAX_VIRTIO_MEM)
    {
        virtio_mem[index] = window(guest_acpi::VIRTIO_MEM_FIRST_SLOT + index)
            .map(|(base, pin)| MemWindow { base, pin, config });
    }
    let uart = devices.uart.unwrap_or(guest_acpi::Uart16550 {
        port: 0x3F8,
        irq: 4,
        node: None,
    });
    PlatformConfig {
        uart_port: uart.port,
        uart_irq: uart.irq,
        ioapic_id: devices.io_apic.id,
        ioapic_base: devices.io_apic.address as u64,
        lapic_base: devices.local_apic_base as u64,
        pm_port: devices.pm.port,
        debug_exit_port: DEBUG_EXIT_PORT,
        tsc_hz: tsc::hz(),
        rtc_epoch_seconds: RTC_EPOCH_SECONDS,
        virtio_balloon: window(BALLOON_SLOT),
        nics,
        virtio_mem,
    }
}

fn new_lapic(apic_id: u32, vcpu: usize) -> LocalApic {
    LocalApic::new(apic_id, vcpu == 0, tsc::hz(), APIC_TIMER_HZ.min(tsc::hz()))
}

/// Fresh platform devices for a guest about to restart, put in before its RAM is cleared and
/// reloaded (the caller holds its state lock): a frame a switch delivers from then on meets a
/// card with no buffers posted, never the old driver's buffers inside the new guest's image.
pub fn replace_devices(partition: &Partition) {
    // The new functions start with every message masked, and no fault counted.
    super::msi_routes::release(partition);
    partition
        .dma_faults
        .store(0, core::sync::atomic::Ordering::Relaxed);
    match new_platform(partition.hv, partition.spec, &partition.pci_devices) {
        Ok(devices) => *partition.devices.lock() = devices,
        Err(e) => log::error!(
            "partition \"{}\": its devices cannot be built again: {e}",
            partition.name()
        ),
    }
}

/// The partition's virtual platform, with the virtual host bridge of its PCI functions
/// (each reset on the way) when it owns any.
fn new_platform(
    hv: &Hypervisor,
    spec: &PartitionSpec,
    pci_devices: &[usize],
) -> Result<PlatformDevices, alloc::string::String> {
    let mut devices =
        PlatformDevices::new(platform_config(spec)).map_err(|e| alloc::format!("{e}"))?;
    if !pci_devices.is_empty() {
        let bridge = super::passthrough::new_bridge(&hv.pci, pci_devices)?;
        let ecam = u64::from(numavisor_policy::pci::guest_bus::GUEST_ECAM_BASE);
        devices
            .attach_bridge(bridge, ecam)
            .map_err(|e| alloc::format!("{e}"))?;
    }
    Ok(devices)
}

/// Fresh local APICs for a restarted guest, its Dynamic Memory started again and its new
/// cards' links set (its devices were replaced by [`replace_devices`]).
pub fn reset_devices(partition: &Partition) {
    super::dynamic::start(partition);
    let plans = partition.state.lock().vcpus.clone();
    for (index, slot) in partition.vcpus.iter().enumerate() {
        *slot.lapic.lock() = new_lapic(guest_apic_id(&plans, index), index);
        slot.clear_signals();
    }
    // Its new cards start with the link down.
    super::network::refresh_links(partition.hv.networks());
}

/// The CPUID view of vCPU `index`: its APIC ID and a topology whose packages are the
/// partition's vNUMA nodes.
pub fn cpuid_policy(partition: &Partition, index: usize) -> CpuidPolicy {
    let state = partition.state.lock();
    CpuidPolicy {
        vcpu_index: index as u32,
        tsc_hz: tsc::hz(),
        vnode_of_vcpu: vnode_of_vcpu(&state.vcpus),
    }
}

fn vnode_of_vcpu(plans: &[numavisor_policy::partition::placement::VcpuPlan]) -> Vec<u32> {
    plans.iter().map(|p| p.vnode as u32).collect()
}

/// The guest APIC ID of vCPU `index`: what its CPUID, its local APIC and its MADT all say
/// (packages are vNUMA nodes, see `vmm::cpuid::apic_id_of`).
fn guest_apic_id(plans: &[numavisor_policy::partition::placement::VcpuPlan], index: usize) -> u32 {
    cpuid::apic_id_of(&vnode_of_vcpu(plans), index as u32).unwrap_or(index as u32)
}

/// The CPU vendor guests see: the host's (SVM means AMD, VMX Intel), whose MSRs Linux
/// expects by CPUID's vendor string.
pub fn guest_vendor() -> Vendor {
    match Active::arch() {
        Arch::Svm => Vendor::Amd,
        Arch::Vmx => Vendor::Intel,
    }
}

/// The guest platform the partition's ACPI tables describe.
fn guest_platform(partition: &Partition, state: &PartitionState) -> guest_acpi::GuestPlatform {
    let spec = partition.spec;
    let sizes: Vec<u64> = spec.memory.iter().map(|v| v.size).collect();
    let nodes = cost::guest_physical_ranges(&sizes)
        .into_iter()
        .map(|ranges| guest_acpi::VnumaNode {
            memory: ranges
                .into_iter()
                .map(|(base, length)| guest_acpi::MemoryRange {
                    base,
                    length,
                    hot_pluggable: false,
                })
                .collect(),
        })
        .collect();
    let vcpus = state
        .vcpus
        .iter()
        .map(|plan| guest_acpi::Vcpu {
            apic_id: guest_apic_id(&state.vcpus, plan.vcpu),
            node: plan.vnode as u32,
        })
        .collect();
    let backing: Vec<u32> = spec.memory.iter().map(|v| v.node).collect();
    let distances = guest_acpi::DistanceMatrix::from_rows(&partition.hv.distances)
        .ok()
        .and_then(|host| guest_acpi::DistanceMatrix::guest_from_host(&host, &backing).ok());
    guest_acpi::GuestPlatform {
        vcpus,
        nodes,
        distances,
        hmat: None,
        devices: guest_acpi::Devices {
            pci_host: super::passthrough::guest_host_bridge(
                &partition.hv.pci,
                &partition.pci_devices,
                &backing.iter().map(|&n| n as usize).collect::<Vec<_>>(),
                &partition.hv.distances,
            ),
            ..guest_devices(spec)
        },
        placement: guest_acpi::TablePlacement {
            base: start_info::ACPI_GPA,
            size: start_info::ACPI_BYTES,
        },
    }
}

/// Puts a stopped guest back to its first instruction: fresh RAM contents, boot data, VMCBs.
pub fn reset_guest(partition: &Partition, state: &mut PartitionState) {
    let memory = GuestMemory::new(state.ram.clone());
    memory.zero_all();
    match write_guest(partition, state, &memory) {
        Ok(entry) => prepare_start(state, entry),
        Err(e) => log::error!(
            "partition \"{}\": cannot reload its guest: {e}",
            partition.name()
        ),
    }
}

/// Gives every page the partition holds back to the free memory of its node.
pub fn release(state: &mut PartitionState, frames: &mut FrameAllocator) {
    // Carved blocks (pages deposited or ballooned away) go back as the pieces still held.
    for (start, end) in core::mem::take(&mut state.ram).host_ranges() {
        if let Err(e) = frames.free_range(start, end) {
            log::error!("returning guest memory [{start:#x}, {end:#x}): {e}");
        }
    }
    if let Some(pool) = state.pool.take() {
        if let Err(e) = pool.release(frames) {
            log::error!("releasing a pool: {e}");
        }
    }
    // The pages themselves went back with the pool.
    state.controls = None;
}

/// The `partition` report event for `partition` in `state`.
pub fn report_event(partition: &Partition, state_name: &str) -> String {
    let state = partition.state.lock();
    let mut memory: Vec<VnodeReport> = Vec::new();
    for block in state.ram.blocks() {
        let size = block.size.bytes();
        match memory.iter_mut().find(|m| m.vnode == block.vnode) {
            Some(report) => {
                report.size += size;
                match report.spa.last_mut() {
                    Some(last) if last.0 + last.1 == block.spa => last.1 += size,
                    _ => report.spa.push((block.spa, size)),
                }
            }
            None => memory.push(VnodeReport {
                vnode: block.vnode,
                node: block.node,
                gpa: block.gpa,
                size,
                spa: alloc::vec![(block.spa, size)],
            }),
        }
    }
    let pool = state.pool.as_ref();
    events::partition(&PartitionReport {
        name: partition.name(),
        state: state_name,
        vcpus: state
            .vcpus
            .iter()
            .map(|p| (p.vcpu, p.apic_id, p.node, p.vnode))
            .collect(),
        memory,
        slat: SlatFigures {
            format: Active::slat_name(),
            tag_kind: Active::arch().tag_name(),
            tag: state.tlb_tag,
            pages_4k: state.slat.pages_4k,
            pages_2m: state.slat.pages_2m,
            pages_1g: state.slat.pages_1g,
            table_bytes: state.slat.table_bytes,
        },
        added_options: if bzimage::is_bzimage(partition.spec.image) {
            linux_added_options(partition.spec)
        } else {
            alloc::string::String::new()
        },
        pool_node: pool.map_or(0, |p| p.node()),
        pool_deposited: pool.map_or(0, |p| p.deposited_bytes()),
        pool_balance: pool.map_or(0, |p| p.balance_bytes()),
    })
}
