//! Dynamic Memory's policy, after Hyper-V's: how much RAM each `dynamic` partition should
//! hold, from what its own guest reports through the balloon's statistics.
//!
//! Partitions are balanced per host node and never across nodes: each member is one
//! partition whose RAM is on one node. A member's *demand* is what its guest uses (total
//! less available memory, both from the guest); it should hold that plus a buffer
//! (Hyper-V's "memory buffer", 20 % by default), within its layout bounds. Growth comes from
//! the node's free memory; when that is short, members above their bare demand are squeezed
//! toward it (never below their minimum), and the growth follows as their balloons give the
//! memory back. Every round grows a member by at most one step and shrinks it by at most a
//! smaller one, and never shrinks one whose use is rising, so a spike is followed, not chased,
//! and memory is not taken from a guest while it fills it.
//!
//! Above the RAM a member booted with (its `size`), memory comes by hot-add (virtio-mem): there
//! it grows in whole Linux memory blocks and keeps a fixed headroom beyond its use (see
//! [`Policy`]), and [`split`] divides a target between the balloon and the hot-add devices.

use alloc::vec::Vec;

use crate::memory::PAGE_SIZE;

/// What a guest reports about its memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    /// Memory the guest has now (its total, less what it has ballooned away).
    pub total: u64,
    /// Memory it could use without swapping (Linux's `MemAvailable`).
    pub available: u64,
}

impl Demand {
    /// What the guest uses.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// One dynamic partition on one host node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its host node (dense index).
    pub node: usize,
    /// Bytes of RAM it holds now.
    pub current: u64,
    /// Bytes of RAM it booted with (its vnodes' `size`): above that it grows by hot-add.
    pub size: u64,
    /// Its bounds from the layout (`memory_min`, `memory_max`), in bytes.
    pub min: u64,
    pub max: u64,
    /// The last statistics of its guest; `None`: none yet (it is left as it is).
    pub demand: Option<Demand>,
    /// A target an operator or its parent set, which the policy keeps (clamped to bounds).
    pub fixed: Option<u64>,
    /// Its guest's use grew since its report before: it is not shrunk this round (its last
    /// statistics may already be stale, and taking memory from a guest that is filling it
    /// races its own allocations).
    pub rising: bool,
}

/// The policy's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Memory held beyond demand, in percent of demand.
    pub buffer_percent: u64,
    /// The most one round grows a member, in bytes.
    pub step: u64,
    /// The most one round shrinks a member, in bytes: memory is taken back slowly, given
    /// quickly (as Hyper-V does).
    pub shrink_step: u64,
    /// Above a member's `size`, targets are whole multiples of this above `size` where the
    /// node's free memory allows (0: no rounding). Linux adds hot-plugged memory a memory block
    /// (128 MiB) at a time and pays for the block's `struct page` array (2 MiB) out of the
    /// memory it has already: plugging a little into a new block on a nearly full guest gains
    /// it nothing and can fail. Whole blocks, plugged while the buffer still has room, pay
    /// that once per 128 MiB and keep the guest clear of it.
    pub hot_add_quantum: u64,
    /// The least a member that can grow by hot-add keeps beyond its use, in bytes, whatever
    /// its buffer in percent says. Growth above `size` is slower to arrive than a balloon's
    /// (statistics up to 500 ms old, the guest's own work to add a memory block) and costs
    /// the guest memory of its own to take (the block's `struct page` array), while a guest
    /// without swap fills memory as fast as it writes it: a small guest's 20 % is a few MiB,
    /// and one filling 25 MiB a second (QEMU test (c)) ran out inside the kernel before its
    /// growth arrived.
    pub hot_add_headroom: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            buffer_percent: 20,
            step: 64 << 20,
            shrink_step: 16 << 20,
            hot_add_quantum: 128 << 20,
            hot_add_headroom: 64 << 20,
        }
    }
}

/// Each member's target in bytes (a multiple of 4 KiB, within its bounds), given the free
/// memory of every node (`free[node]`, bytes).
pub fn targets(members: &[Member], free: &[u64], policy: &Policy) -> Vec<u64> {
    let mut targets: Vec<u64> = members.iter().map(|m| m.current).collect();
    let nodes: alloc::collections::BTreeSet<usize> = members.iter().map(|m| m.node).collect();
    for node in nodes {
        let group: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].node == node)
            .collect();
        let free = free.get(node).copied().unwrap_or(0);
        balance_node(members, &group, free, policy, &mut targets);
    }
    targets
}

/// Bytes rounded down to whole pages.
fn pages(bytes: u64) -> u64 {
    bytes - bytes % PAGE_SIZE
}

fn clamp(member: &Member, bytes: u64) -> u64 {
    pages(bytes.clamp(member.min, member.max.max(member.min)))
}

/// What `member` should hold with its buffer, and at the least (its bare demand).
fn wanted(member: &Member, policy: &Policy) -> (u64, u64) {
    if let Some(fixed) = member.fixed {
        let fixed = clamp(member, fixed);
        return (fixed, fixed);
    }
    match member.demand {
        None => (member.current, member.current),
        Some(demand) => {
            let used = demand.used();
            let mut buffered = used.saturating_add(used / 100 * policy.buffer_percent);
            if member.max > member.size {
                buffered = buffered.max(used.saturating_add(policy.hot_add_headroom));
            }
            (clamp(member, buffered), clamp(member, used))
        }
    }
}

fn balance_node(
    members: &[Member],
    group: &[usize],
    free: u64,
    policy: &Policy,
    targets: &mut [u64],
) {
    let wants: Vec<(u64, u64)> = group.iter().map(|&i| wanted(&members[i], policy)).collect();
    let growth: u64 = group
        .iter()
        .zip(&wants)
        .map(|(&i, w)| w.0.saturating_sub(members[i].current))
        .sum();
    let short = growth > free;
    // Growth is granted in proportion to what each member asks, up to the free memory.
    for (&i, &(want, least)) in group.iter().zip(&wants) {
        let member = &members[i];
        let target = if want > member.current {
            let ask = want - member.current;
            let granted = if short {
                (ask as u128 * free as u128 / growth as u128) as u64
            } else {
                ask
            };
            member.current + pages(granted.min(policy.step))
        } else if member.rising && member.fixed.is_none() {
            member.current
        } else {
            // Short of memory, members with more than their bare demand give back the rest.
            let keep = if short && member.fixed.is_none() {
                least
            } else {
                want
            };
            let shrink = (member.current - keep.min(member.current)).min(policy.shrink_step);
            member.current - pages(shrink)
        };
        targets[i] = clamp(member, target);
    }
    // Then whole hot-add blocks, paid from what the growth above left of the free memory.
    let mut free_left = free.saturating_sub(
        group
            .iter()
            .map(|&i| targets[i].saturating_sub(members[i].current))
            .sum(),
    );
    for &i in group {
        let unrounded = targets[i];
        targets[i] = whole_hot_add_blocks(&members[i], unrounded, free_left, policy);
        free_left = free_left.saturating_sub(targets[i] - unrounded);
    }
}

/// `target`, when above the member's `size` and not where it is, rounded up to a whole
/// number of [`Policy::hot_add_quantum`]s above `size` (within `memory_max`): a growing member
/// only if `free` pays for the extra, a shrinking one never past where it is (it keeps the
/// block it is in). A fixed target is kept as it was set.
fn whole_hot_add_blocks(member: &Member, target: u64, free: u64, policy: &Policy) -> u64 {
    let quantum = policy.hot_add_quantum;
    if quantum == 0 || target <= member.size || target == member.current || member.fixed.is_some() {
        return target;
    }
    let above = target - member.size;
    let rounded = member
        .size
        .saturating_add(above.div_ceil(quantum).saturating_mul(quantum))
        .min(member.max);
    if target < member.current {
        rounded.min(member.current)
    } else if rounded - target <= free {
        rounded
    } else {
        target
    }
}

/// One vnode's sizes, for [`split`]: what it boots with and the most it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VnodeRoom {
    /// Its `size` in bytes: RAM built at boot, which the balloon takes from and gives back.
    pub size: u64,
    /// Its `memory_max` in bytes; above `size`, memory comes only by virtio-mem.
    pub max: u64,
}

/// How a partition's target is carried out: the balloon below the RAM it boots with,
/// virtio-mem above it, never both moving against each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// What the partition should hold of the RAM it booted with (the balloon holds the rest).
    pub built: u64,
    /// Per vnode, the bytes virtio-mem should have plugged (its `requested_size`).
    pub plugged: Vec<u64>,
}

/// Splits a whole-partition `target` (bytes) between the balloon and each vnode's virtio-mem:
/// up to the RAM built (the sum of `size`s) it is all built RAM and nothing is plugged; the
/// rest is plugged, shared among the vnodes in proportion to their room above `size`, in whole
/// blocks of `block` bytes (a power of two) and never past a vnode's `max`.
pub fn split(target: u64, vnodes: &[VnodeRoom], block: u64) -> Split {
    let built_total: u64 = vnodes.iter().map(|v| v.size).sum();
    let rooms: Vec<u64> = vnodes
        .iter()
        .map(|v| {
            let room = v.max.saturating_sub(v.size);
            room - room % block
        })
        .collect();
    let room_total: u64 = rooms.iter().sum();
    let excess = target.saturating_sub(built_total).min(room_total);
    let excess = excess - excess % block;
    let mut plugged: Vec<u64> = rooms
        .iter()
        .map(|&room| {
            let share =
                (u128::from(excess) * u128::from(room) / u128::from(room_total.max(1))) as u64;
            share - share % block
        })
        .collect();
    // What rounding left over goes, a block at a time, to the first vnodes with room.
    let mut left = excess - plugged.iter().sum::<u64>();
    for (given, &room) in plugged.iter_mut().zip(&rooms) {
        let more = (room - *given).min(left);
        *given += more;
        left -= more;
    }
    Split {
        built: target.min(built_total),
        plugged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn above_its_size_a_member_grows_in_whole_hot_add_blocks_while_free_memory_pays() {
        let policy = Policy::default();
        let grower = Member {
            size: 128 * MIB,
            max: 384 * MIB,
            ..member(128, 120)
        };
        // It wants 184 MiB: rounded up to 256 (a whole 128 MiB block above its size).
        assert_eq!(targets(&[grower], &[1 << 30], &policy), vec![256 * MIB]);
        // Not when the node cannot pay for the block: then what it wants (its use and its
        // 64 MiB headroom).
        assert_eq!(targets(&[grower], &[64 * MIB], &policy), vec![184 * MIB]);
        // Within a block it keeps the block: 150 MiB used wants 214 (its 64 MiB headroom),
        // still block one.
        let inside = Member {
            size: 128 * MIB,
            max: 384 * MIB,
            ..member(256, 150)
        };
        assert_eq!(targets(&[inside], &[0], &policy), vec![256 * MIB]);
        // Never past memory_max, and not at all below size.
        let top = Member {
            size: 128 * MIB,
            max: 300 * MIB,
            ..member(256, 240)
        };
        assert_eq!(targets(&[top], &[1 << 30], &policy), vec![300 * MIB]);
        assert_eq!(targets(&[member(512, 100)], &[0], &policy), vec![496 * MIB]);
    }

    #[test]
    fn a_member_that_can_grow_by_hot_add_keeps_its_headroom_beyond_its_use() {
        let policy = Policy {
            hot_add_quantum: 0,
            ..Policy::default()
        };
        // 100 MiB used: 20 % would be 120; with hot-add room it keeps 64 MiB beyond its use.
        let grower = Member {
            size: 128 * MIB,
            max: 512 * MIB,
            ..member(128, 100)
        };
        assert_eq!(targets(&[grower], &[1 << 30], &policy), vec![164 * MIB]);
        // Without hot-add room the percentage alone counts.
        let balloon_only = member(160, 100);
        let buffered = pages(100 * MIB + 100 * MIB / 100 * 20);
        assert_eq!(
            targets(&[balloon_only], &[0], &policy),
            vec![buffered.max(144 * MIB)]
        );
    }

    #[test]
    fn below_the_ram_built_the_balloon_alone_moves_above_it_virtio_mem() {
        let vnodes = [
            VnodeRoom {
                size: 192 * MIB,
                max: 192 * MIB,
            },
            VnodeRoom {
                size: 192 * MIB,
                max: 704 * MIB,
            },
        ];
        let block = 2 * MIB;
        assert_eq!(
            split(300 * MIB, &vnodes, block),
            Split {
                built: 300 * MIB,
                plugged: vec![0, 0]
            }
        );
        assert_eq!(
            split(384 * MIB + 3 * MIB, &vnodes, block),
            Split {
                built: 384 * MIB,
                plugged: vec![0, 2 * MIB]
            }
        );
        // Never past memory_max.
        assert_eq!(split(u64::MAX, &vnodes, block).plugged, vec![0, 512 * MIB]);
        // Two vnodes with room share in proportion to it.
        let both = [
            VnodeRoom {
                size: 128 * MIB,
                max: 256 * MIB,
            },
            VnodeRoom {
                size: 128 * MIB,
                max: 512 * MIB,
            },
        ];
        assert_eq!(
            split(256 * MIB + 200 * MIB, &both, block).plugged,
            vec![50 * MIB, 150 * MIB]
        );
        assert_eq!(
            split(256 * MIB + 6 * MIB, &both, block).plugged,
            vec![2 * MIB, 4 * MIB]
        );
    }

    const MIB: u64 = 1 << 20;

    fn member(current: u64, used: u64) -> Member {
        Member {
            node: 0,
            current: current * MIB,
            size: 512 * MIB,
            min: 64 * MIB,
            max: 512 * MIB,
            demand: Some(Demand {
                total: current * MIB,
                available: (current - used) * MIB,
            }),
            fixed: None,
            rising: false,
        }
    }

    #[test]
    fn an_idle_partition_shrinks_to_its_demand_plus_buffer_a_step_at_a_time() {
        let policy = Policy::default();
        // Memory is taken back 16 MiB a round at most.
        let idle = member(512, 100);
        assert_eq!(targets(&[idle], &[0], &policy), vec![496 * MIB]);
        let idle = member(130, 100);
        assert_eq!(targets(&[idle], &[0], &policy), vec![120 * MIB]);
        // Never below its minimum.
        let idle = member(70, 10);
        assert_eq!(targets(&[idle], &[0], &policy), vec![64 * MIB]);
        // Not while its use rises.
        let rising = Member {
            rising: true,
            ..member(200, 100)
        };
        assert_eq!(targets(&[rising], &[0], &policy), vec![200 * MIB]);
    }

    #[test]
    fn a_busy_partition_grows_from_free_memory_within_its_maximum() {
        let policy = Policy::default();
        let busy = member(128, 126);
        let buffered = pages(126 * MIB + 126 * MIB / 100 * 20);
        assert_eq!(targets(&[busy], &[1 << 30], &policy), vec![buffered]);
        let small_steps = Policy {
            step: 16 * MIB,
            ..policy
        };
        let busy = member(128, 128);
        assert_eq!(targets(&[busy], &[1 << 30], &small_steps), vec![144 * MIB]);
        let busy = member(500, 499);
        assert_eq!(targets(&[busy], &[1 << 30], &policy), vec![512 * MIB]);
    }

    #[test]
    fn short_of_free_memory_the_idle_give_to_the_busy() {
        let policy = Policy::default();
        let busy = member(128, 127);
        let idle = member(384, 120);
        let t = targets(&[busy, idle], &[16 * MIB], &policy);
        // The busy one gets what is free; the idle one goes to its bare demand, a step.
        assert_eq!(t, vec![144 * MIB, 368 * MIB]);
        // One that wants to grow itself keeps what it has.
        let t = targets(&[busy, member(130, 120)], &[0], &policy);
        assert_eq!(t, vec![128 * MIB, 130 * MIB]);
    }

    #[test]
    fn nodes_are_balanced_apart_and_fixed_targets_are_kept() {
        let policy = Policy::default();
        let mut far = member(128, 127);
        far.node = 1;
        let near = member(384, 100);
        // Node 1 has no free memory: the busy partition there cannot grow from node 0's.
        let t = targets(&[far, near], &[1 << 30, 0], &policy);
        assert_eq!(t[0], 128 * MIB);
        let mut pinned = member(384, 100);
        pinned.fixed = Some(300 * MIB + 5);
        assert_eq!(targets(&[pinned], &[0], &policy), vec![368 * MIB]);
        pinned.fixed = Some(1 << 40);
        pinned.current = 500 * MIB;
        assert_eq!(targets(&[pinned], &[1 << 30], &policy), vec![512 * MIB]);
        let unknown = Member {
            demand: None,
            ..member(200, 0)
        };
        assert_eq!(targets(&[unknown], &[1 << 30], &policy), vec![200 * MIB]);
    }
}
