//! The documented limits a layout is checked against (`docs/layout.md`, "Limits"). The
//! firmware may rely on them: a layout that passed the build never exceeds them.

use numavisor_policy::partition::cost::{
    GUEST_PHYSICAL_LIMIT, HOT_ADD_BLOCK, MMIO_HOLE_END, MMIO_HOLE_START,
};

/// The most partitions one layout holds.
pub const MAX_PARTITIONS: usize = 64;
/// The longest partition name, in bytes (names are `[a-z0-9-]`).
pub const MAX_NAME_LEN: usize = 32;
/// The longest guest command line, in bytes (it goes into the PVH `start_info` cmdline, which
/// is NUL-terminated, so it may not contain NUL).
pub const MAX_COMMAND_LINE: usize = 1024;
/// The most vCPUs one partition has: guest xAPIC IDs are 0..=254 (255 is broadcast).
pub const MAX_VCPUS_PER_PARTITION: u32 = 255;
/// The most network cards one partition has (each is a virtio-mmio window and an I/O APIC
/// pin of its own).
pub const MAX_NICS_PER_PARTITION: usize = numavisor_policy::vmm::platform::MAX_NICS;
/// The most host PCI functions one partition owns: each is a device of its own on the
/// guest's virtual bus 0 (devices 1..=31; device 0 is the host bridge), and a BAR window of
/// the guest's PCI hole holds them all.
pub const MAX_PCI_PER_PARTITION: usize = 8;
/// The most networks one layout holds.
pub const MAX_NETWORKS: usize = 64;
/// The most vNUMA nodes one partition has.
pub const MAX_VNODES: usize = 64;
/// The most guest memory one partition has, summed over its vnodes: 1 TiB. A vnode counts
/// with the most it may hold: its `size`, or its `memory_max` where hot-add grows it above.
pub const MAX_PARTITION_MEMORY: u64 = 1 << 40;
/// The most vnodes of one partition that grow by hot-add (`memory_max` above `size`, with
/// `dynamic = true`): each growing vnode is one virtio-mem device, which takes a virtio-mmio
/// window and an I/O APIC pin of its own (slots 5..=8, GSIs 20..=23, after the balloon's and
/// the NICs').
pub const MAX_GROWING_VNODES: usize = 4;
/// The largest pool one partition is given: 1 TiB (the largest real need, 1 TiB mapped with
/// 4 KiB pages and 255 vCPUs, is about 2 GiB).
pub const MAX_POOL_BYTES: u64 = 1 << 40;
/// The most guest memory all partitions together may place on one host node: 16 TiB, well
/// above the largest NUMA node of today's servers.
pub const MAX_NODE_MEMORY: u64 = 16 << 40;

// A partition at the memory limit, placed after the MMIO hole, still ends inside the 48-bit
// guest-physical space, so the per-partition limit implies the address-space limit.
const _: () =
    assert!(MAX_PARTITION_MEMORY + (MMIO_HOLE_END - MMIO_HOLE_START) <= GUEST_PHYSICAL_LIMIT);

// Likewise with hot-add: RAM and every hot-add region together are at most the partition
// limit, placed above 4 GiB with at most one hot-add block of padding, so the regions too end
// inside the guest-physical space (the layout still checks it).
const _: () = assert!(MAX_PARTITION_MEMORY + MMIO_HOLE_END + HOT_ADD_BLOCK <= GUEST_PHYSICAL_LIMIT);
