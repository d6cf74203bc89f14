//! Dynamic Memory above `size` (`docs/dynamic-memory.md`, "Growing past size"): each vnode
//! whose `memory_max` exceeds its `size` has a virtio-mem device (VIRTIO 1.2 §5.15,
//! `devices::virtio::mem`) over a region of guest-physical space above the partition's RAM.
//! The guest's driver plugs blocks of it, which this module backs with 2 MiB blocks of the
//! host node backing the vnode (zeroed first; 512 pages of 4 KiB each where the node has no
//! free 2 MiB block), and unplugs them, which leave the SLAT, wait for every vCPU's flush and
//! go back to that node's free memory.
//!
//! Locks: like the balloon's (`dynamic`), the devices lock is held only to drive the device's
//! registers and queue, never while blocks move; moving takes the state lock, then the frame
//! allocator's, and no lock is held across the memory catch-up wait.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use numavisor_layout::PartitionSpec;
use numavisor_policy::devices::device::DeviceId;
use numavisor_policy::devices::virtio::mem::{MemConfig, MemEvent, MemRequest};
use numavisor_policy::memory::{BlockSize, Usage, PAGE_SIZE};
use numavisor_policy::partition::cost;
use numavisor_policy::partition::placement::GuestBlock;
use numavisor_policy::report::events::{self, HotAddMove};

use super::interrupts::deliver_ioapic;
use super::{memory_sync, page_moves, Partition, PartitionState};
use crate::platform::console::report;
use crate::platform::cpu::tsc;

/// The host block that backs one plugged device block: the device's block size, so that the
/// SLAT maps each with one 2 MiB leaf.
const BLOCK: BlockSize = BlockSize::Size2M;
/// [`BLOCK`] in bytes: the device's block size, in which every target above `size` is set.
pub const BLOCK_BYTES: u64 = BLOCK.bytes();

/// The most device requests one notify serves before the vCPU goes back to its guest (each is
/// at most one queue's worth: the device takes one request at a time).
const REQUESTS_PER_NOTIFY: usize = 16;
/// How often a driver whose plug was refused is told to try again while refusals last: memory
/// may have come free since (Linux's own retry timer starts at 50 s).
const PLUG_RETRY_MICROS: u64 = 500_000;

/// The vnodes that can grow (`memory_max` above `size`), in order: virtio-mem device `k`
/// serves the `k`-th of them.
pub fn growing_vnodes(spec: &PartitionSpec) -> Vec<usize> {
    (0..spec.memory.len())
        .filter(|&v| spec.memory[v].growth() > 0)
        .collect()
}

/// The device configuration of each growing vnode, in device order: its region above the
/// partition's RAM ([`cost::hot_add_regions`]), the block size, and its proximity domain (the
/// vnode's index, as the guest's SRAT numbers them).
pub fn device_configs(spec: &PartitionSpec) -> Vec<MemConfig> {
    let sizes: Vec<u64> = spec.memory.iter().map(|v| v.size).collect();
    let growths: Vec<u64> = spec.memory.iter().map(|v| v.growth()).collect();
    cost::hot_add_regions(&sizes, &growths)
        .into_iter()
        .enumerate()
        .filter_map(|(vnode, region)| {
            let (addr, region_size) = region?;
            Some(MemConfig {
                addr,
                region_size,
                block_size: BLOCK.bytes(),
                node_id: vnode as u16,
            })
        })
        .collect()
}

/// Sets what device `index` should have plugged (its `requested_size`), raising its
/// configuration interrupt when that changes.
pub fn set_requested(partition: &Partition, index: usize, bytes: u64) {
    let id = DeviceId::VirtioMem(index as u8);
    let delivery = {
        let mut devices = partition.devices.lock();
        let Some(device) = devices.mem.get_mut(index) else {
            return;
        };
        device.set_requested_size(bytes);
        devices.sync_line(id)
    };
    if let Some(delivery) = delivery {
        deliver_ioapic(partition, delivery);
    }
}

/// vCPU 0's look at its partition, each pass of its loop: after a refused plug, its devices'
/// drivers are told to try again every [`PLUG_RETRY_MICROS`] until a plug succeeds.
pub fn poll(partition: &Partition) {
    // No lock for a partition that cannot grow: this runs on every timer pass.
    if partition.spec.memory.iter().all(|v| v.growth() == 0) {
        return;
    }
    let due = partition
        .dynamic
        .lock()
        .plug_retry_due(tsc::now(), || tsc::deadline_after_micros(PLUG_RETRY_MICROS));
    if !due {
        return;
    }
    let deliveries: Vec<_> = {
        let mut devices = partition.devices.lock();
        let count = devices.mem.len();
        (0..count)
            .filter_map(|index| {
                devices.mem[index].retry_refused();
                devices.sync_line(DeviceId::VirtioMem(index as u8))
            })
            .collect()
    };
    for delivery in deliveries {
        deliver_ioapic(partition, delivery);
    }
}

/// What device `index`'s driver asked of vCPU `vcpu` with its last register write. A driver
/// reset leaves the blocks as they are (the device keeps its plugged state over a reset; the
/// next driver finds it in `plugged_size` and unplugs what it does not know).
pub fn serve(partition: &Partition, vcpu: usize, index: u8, reset: bool) {
    if reset {
        return;
    }
    let id = DeviceId::VirtioMem(index);
    for _ in 0..REQUESTS_PER_NOTIFY {
        let request = {
            let ram = partition.current_ram();
            let mut devices = partition.devices.lock();
            let request = devices
                .mem
                .get_mut(usize::from(index))
                .and_then(|device| device.process(&ram));
            let delivery = devices.sync_line(id);
            drop(devices);
            if let Some(delivery) = delivery {
                deliver_ioapic(partition, delivery);
            }
            request
        };
        let Some(request) = request else {
            return;
        };
        let vnode = growing_vnodes(partition.spec)
            .get(usize::from(index))
            .copied()
            .unwrap_or(0);
        let (completion, done) = match request {
            MemRequest::Plug {
                gpa,
                bytes,
                completion,
            } => (completion, plug(partition, vcpu, vnode, gpa, bytes)),
            MemRequest::Unplug {
                gpa,
                bytes,
                completion,
            } => (completion, unplug(partition, vcpu, vnode, &[(gpa, bytes)])),
            MemRequest::UnplugAll { ranges, completion } => {
                (completion, unplug(partition, vcpu, vnode, &ranges))
            }
        };
        let ram = partition.current_ram();
        let mut devices = partition.devices.lock();
        let event = devices
            .mem
            .get_mut(usize::from(index))
            .map_or(MemEvent::None, |device| {
                device.complete(completion, done, &ram)
            });
        let delivery = devices.sync_line(id);
        drop(devices);
        if let Some(delivery) = delivery {
            deliver_ioapic(partition, delivery);
        }
        if event != MemEvent::QueueWork {
            return;
        }
    }
}

/// Backs `[gpa, gpa + bytes)` of `vnode`'s region with zeroed memory of its host node and
/// maps it: each 2 MiB block with a 2 MiB host block (one SLAT leaf), or, where the node has
/// no free 2 MiB block left (its free memory in pieces, as a neighbour's balloon leaves it),
/// with 512 host pages of 4 KiB (a page table of leaves: the table pages for it were
/// deposited at build, `cost::hot_add_piece_pages`). False (nothing changed: the driver is
/// answered BUSY and asked again later) if the node has too little free memory or the pool
/// too few table pages.
fn plug(partition: &Partition, vcpu: usize, vnode: usize, gpa: u64, bytes: u64) -> bool {
    let start = tsc::now();
    let node = partition.spec.memory[vnode].node as usize;
    let count = bytes / BLOCK.bytes();
    let mut blocks = Vec::with_capacity(count as usize);
    {
        let mut frames = partition.hv.frames.lock();
        for i in 0..count {
            let at = gpa + i * BLOCK.bytes();
            // `selftest=hot-add-pieces`: every other block as if none were free whole.
            let whole = match PIECES.load(Ordering::Relaxed) && i % 2 == 1 {
                true => None,
                false => frames.allocate_on(node, BLOCK, Usage::Guest).ok(),
            };
            let backed = match whole {
                Some(spa) => {
                    blocks.push(guest_block(at, spa, BLOCK, vnode, node));
                    Ok(())
                }
                None => back_in_pieces(&mut frames, at, vnode, node, &mut blocks),
            };
            if let Err(e) = backed {
                free_blocks(&mut frames, &blocks);
                drop(frames);
                if partition.dynamic.lock().plug_refused() {
                    log::warn!(
                        "partition \"{}\": vnode {vnode} cannot grow by {} KiB: {e} \
                         (its driver's further tries are not logged until one succeeds)",
                        partition.name(),
                        bytes >> 10
                    );
                }
                return false;
            }
        }
    }
    // Zeroed before they enter the guest's address space, without the frame allocator's lock.
    for block in &blocks {
        // SAFETY: a block just taken from free memory for this move alone: identity mapped,
        // in no guest's address space yet, and nothing else writes it.
        unsafe { core::ptr::write_bytes(block.spa as *mut u8, 0, block.size.bytes() as usize) };
    }
    let mut state = partition.state.lock();
    if let Err(e) = page_moves::plug_blocks(partition, &mut state, &blocks) {
        drop(state);
        log::warn!(
            "partition \"{}\": vnode {vnode} cannot map plugged memory: {e}",
            partition.name()
        );
        free_blocks(&mut partition.hv.frames.lock(), &blocks);
        return false;
    }
    let generation = memory_sync::bump(partition, &mut state);
    drop(state);
    memory_sync::wait_caught_up(partition, vcpu, generation);
    report_move(partition, true, vnode, &blocks, tsc::now() - start);
    let refused = partition.dynamic.lock().plug_done();
    if refused > 0 {
        log::info!(
            "partition \"{}\": vnode {vnode} grew after {refused} refused tries",
            partition.name()
        );
    }
    true
}

/// Unplugs every plugged block of `vnode` in `ranges`: out of the SLAT and the RAM, every vCPU
/// caught up, then back to the node's free memory. False if a range names memory that is not
/// plugged (the device checked it: the books disagree), with nothing changed.
fn unplug(partition: &Partition, vcpu: usize, vnode: usize, ranges: &[(u64, u64)]) -> bool {
    let start = tsc::now();
    let mut state = partition.state.lock();
    let blocks: Vec<GuestBlock> = state
        .ram
        .plugged_blocks()
        .iter()
        .filter(|b| b.vnode == vnode)
        .filter(|b| {
            ranges
                .iter()
                .any(|&(gpa, bytes)| b.gpa >= gpa && b.gpa - gpa < bytes)
        })
        .copied()
        .collect();
    let wanted: u64 = ranges.iter().map(|&(_, bytes)| bytes).sum();
    let found: u64 = blocks.iter().map(|b| b.size.bytes()).sum();
    if found != wanted {
        log::error!(
            "partition \"{}\": vnode {vnode}: virtio-mem unplugs {} KiB, of which the RAM holds {} KiB",
            partition.name(),
            wanted >> 10,
            found >> 10
        );
        return false;
    }
    if blocks.is_empty() {
        return true;
    }
    if let Err(e) = page_moves::unplug_blocks(partition, &mut state, &blocks) {
        log::error!("partition \"{}\": unplugging: {e}", partition.name());
        return false;
    }
    let generation = memory_sync::bump(partition, &mut state);
    drop(state);
    // The blocks go to free memory only once no CPU can reach them through the partition.
    memory_sync::wait_caught_up(partition, vcpu, generation);
    free_blocks(&mut partition.hv.frames.lock(), &blocks);
    report_move(partition, false, vnode, &blocks, tsc::now() - start);
    true
}

/// Before a restart or a stop, with every vCPU parked: the plugged blocks leave the SLAT and
/// go back to free memory (a restarted guest starts with its `size` again, and its new device
/// with nothing plugged). Parked vCPUs flush their translations before they enter the guest
/// again (the memory generation moves).
pub fn unplug_all_parked(partition: &Partition, state: &mut PartitionState) {
    let blocks: Vec<GuestBlock> = state.ram.plugged_blocks().to_vec();
    if blocks.is_empty() {
        return;
    }
    if let Err(e) = page_moves::unplug_blocks(partition, state, &blocks) {
        log::error!("partition \"{}\": unplugging all: {e}", partition.name());
        return;
    }
    memory_sync::bump(partition, state);
    free_blocks(&mut partition.hv.frames.lock(), &blocks);
}

/// Whether plugs back every other block in 4 KiB pieces (`selftest=hot-add-pieces`), as
/// they do when the node has no free 2 MiB block: the tests' way to that path.
static PIECES: AtomicBool = AtomicBool::new(false);

/// Backs every other plugged block in 4 KiB pieces from now on (`selftest=hot-add-pieces`).
pub fn force_pieces() {
    PIECES.store(true, Ordering::Relaxed);
}

/// One plugged piece of `vnode`'s region.
fn guest_block(gpa: u64, spa: u64, size: BlockSize, vnode: usize, node: usize) -> GuestBlock {
    GuestBlock {
        gpa,
        spa,
        size,
        vnode,
        node,
    }
}

/// Backs the 2 MiB block at `gpa` with 512 free 4 KiB pages of `node`, added to `blocks`;
/// on failure the pages taken so far go back and the error says why.
fn back_in_pieces(
    frames: &mut numavisor_policy::memory::FrameAllocator,
    gpa: u64,
    vnode: usize,
    node: usize,
    blocks: &mut Vec<GuestBlock>,
) -> Result<(), numavisor_policy::memory::AllocError> {
    let first = blocks.len();
    for page in 0..BLOCK.bytes() / PAGE_SIZE {
        match frames.allocate_on(node, BlockSize::Size4K, Usage::Guest) {
            Ok(spa) => blocks.push(guest_block(
                gpa + page * PAGE_SIZE,
                spa,
                BlockSize::Size4K,
                vnode,
                node,
            )),
            Err(e) => {
                free_blocks(frames, &blocks[first..]);
                blocks.truncate(first);
                return Err(e);
            }
        }
    }
    Ok(())
}

fn free_blocks(frames: &mut numavisor_policy::memory::FrameAllocator, blocks: &[GuestBlock]) {
    for block in blocks {
        if let Err(e) = frames.free(block.spa, block.size) {
            log::error!("plugged block {:#x}: {e}", block.spa);
        }
    }
}

/// The `hot_add` event of one move, then the ledger.
fn report_move(partition: &Partition, plug: bool, vnode: usize, blocks: &[GuestBlock], ticks: u64) {
    let (plugged, size, slat) = {
        let state = partition.state.lock();
        let size = (0..partition.spec.memory.len())
            .map(|v| state.ram.mapped_bytes(v, None))
            .sum();
        (state.ram.plugged_bytes(vnode), size, state.slat)
    };
    report::emit(&events::hot_add(&HotAddMove {
        partition: partition.name(),
        plug,
        vnode,
        node: partition.spec.memory[vnode].node as usize,
        spa: events::merged_spans(blocks.iter().map(|b| (b.spa, b.size.bytes()))),
        plugged,
        size,
        slat_table_bytes: slat.table_bytes,
        slat_leaves_2m: slat.pages_2m,
        // 512 pieces of 4 KiB each per block backed in pieces.
        in_pieces: blocks
            .iter()
            .filter(|b| b.size == BlockSize::Size4K)
            .count() as u64
            / (BLOCK.bytes() / PAGE_SIZE),
        ticks,
        micros: tsc::micros_since_entry(),
    }));
    partition.hv.emit_ledger();
}
