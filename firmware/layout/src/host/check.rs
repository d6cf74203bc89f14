//! The raw form checked into the validated form (`docs/layout.md`, "Validation"): names,
//! images (found and classified in [`files`](super::files)), sizes, vCPU placement, vnode
//! references, pools against the cost model, networks and NICs (in
//! [`network`](super::network)), and the limits in [`crate::limits`]. Every error is collected; a field that could not be read is
//! skipped here, as it was already reported.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use numavisor_policy::memory::PAGE_SIZE;
use numavisor_policy::partition::cost::{
    hot_add_page, hot_add_regions, GUEST_PHYSICAL_LIMIT, HOT_ADD_BLOCK, IO_BITMAP_PAGES,
    MSR_BITMAP_PAGES, VMCB_PAGES_PER_VCPU,
};
use numavisor_policy::pci::PciAddress;

use super::error::{PartitionLabel, Report};
use super::files::{check_linux_fields, image_kind, resolve_image, resolve_initrd};
use super::names::name_problem;
use super::network::Networks;
use super::parse::{parse_partition, RawPartition, RawVcpuGroup};
use super::parse::{UNSET_MAX, UNSET_MIN};
use super::size::{human_size, layout_size};
use super::{CheckedNetwork, CheckedPartition, CheckedVcpuGroup, LoadOptions, PoolCheck};
use crate::limits::{
    MAX_COMMAND_LINE, MAX_GROWING_VNODES, MAX_NODE_MEMORY, MAX_PARTITIONS, MAX_PARTITION_MEMORY,
    MAX_PCI_PER_PARTITION, MAX_POOL_BYTES, MAX_VCPUS_PER_PARTITION, MAX_VNODES,
};
use crate::{NicSpec, VnodeSpec};

/// What checking produced: the partitions that passed (all of them when nothing was
/// reported) and the warnings.
pub(crate) struct Checked {
    pub(crate) partitions: Vec<CheckedPartition>,
    pub(crate) networks: Vec<CheckedNetwork>,
    pub(crate) warnings: Vec<String>,
}

/// Reads and checks the networks, then every partition in file order (so each partition's
/// errors come together), then the layout as a whole.
pub(crate) fn check(
    tables: Option<Vec<(usize, toml::Table)>>,
    network_tables: Option<Vec<(usize, toml::Table)>>,
    layout_dir: &Path,
    options: &LoadOptions,
    report: &mut Report,
) -> Checked {
    let mut checked = Checked {
        partitions: Vec::new(),
        networks: Vec::new(),
        warnings: Vec::new(),
    };
    let Some(tables) = tables else {
        return checked; // Unreadable; already reported.
    };
    if tables.is_empty() {
        report.layout("no partitions; add at least one [[partition]] table");
    }
    if tables.len() > MAX_PARTITIONS {
        report.layout(format!(
            "{} partitions; a layout holds at most {MAX_PARTITIONS}",
            tables.len()
        ));
    }
    let mut networks = Networks::read(network_tables, report);
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut cpus: HashMap<u32, (PartitionLabel, String)> = HashMap::new();
    let mut node_memory: BTreeMap<u32, u64> = BTreeMap::new();
    let mut parents: Vec<(PartitionLabel, String, String)> = Vec::new();
    let mut pci_owners: HashMap<PciAddress, (PartitionLabel, usize)> = HashMap::new();
    for (index, table) in tables {
        let partition = parse_partition(index, table, report);
        let label = partition.label.clone();
        if let (Some(name), Some(Some(parent))) = (&partition.name, &partition.parent) {
            parents.push((label.clone(), name.clone(), parent.clone()));
        }
        if let Some(name) = &partition.name {
            check_name(&label, name, report);
            if let Some(first) = names.get(name) {
                report.field(
                    &label,
                    "name",
                    format!(
                        "{name:?} is already the name of partition[{first}]; names must be unique"
                    ),
                );
            } else {
                names.insert(name.clone(), index);
            }
        }
        if let Some(vcpus) = &partition.vcpus {
            check_cpus_unshared(&label, vcpus, &mut cpus, report);
        }
        let nics = match &partition.nics {
            Some(nics) => networks.check_nics(index, &label, nics, report),
            None => {
                networks.nics_unreadable();
                None
            }
        };
        let pci = partition
            .pci
            .as_deref()
            .and_then(|pci| check_pci_unshared(&label, pci, &mut pci_owners, report));
        // A vnode that hot-add may grow asks its node for its `memory_max`.
        let dynamic = partition.dynamic == Some(true);
        for vnode in partition.memory.iter().flatten() {
            let most = match dynamic && vnode.max != UNSET_MAX {
                true => vnode.size.max(vnode.max),
                false => vnode.size,
            };
            let total = node_memory.entry(vnode.node).or_default();
            *total = total.saturating_add(most);
        }
        if let Some(partition) = check_partition(partition, nics, pci, layout_dir, options, report)
        {
            if partition.pool_check == PoolCheck::Boot {
                checked.warnings.push(format!(
                    "partition {:?}: pool_check = \"boot\": its pool ({}) is not checked at \
                     build time and may be refused at boot",
                    partition.name,
                    human_size(partition.pool_bytes)
                ));
            }
            checked.partitions.push(partition);
        }
    }
    check_parents(&parents, &names, report);
    networks.check_members(report);
    checked.networks = networks.into_checked();
    for (node, total) in node_memory {
        if total > MAX_NODE_MEMORY {
            report.layout(format!(
                "host node {node}: the partitions ask for {} of guest memory on it, more than \
                 the limit of {} per node; move vnodes to other nodes or shrink them",
                human_size(total),
                human_size(MAX_NODE_MEMORY)
            ));
        }
    }
    checked
}

/// Checks every `parent = "NAME"` (partition label, own name, parent's name): the parent is
/// another partition of the layout, and following parents never comes back to where it
/// started. A cycle is reported once, on each partition in it.
fn check_parents(
    parents: &[(PartitionLabel, String, String)],
    names: &HashMap<String, usize>,
    report: &mut Report,
) {
    let parent_of: HashMap<&str, &str> = parents
        .iter()
        .map(|(_, name, parent)| (name.as_str(), parent.as_str()))
        .collect();
    for (label, name, parent) in parents {
        if parent == name {
            report.field(label, "parent", "a partition cannot be its own parent");
            continue;
        }
        if !names.contains_key(parent) {
            report.field(
                label,
                "parent",
                format!("{parent:?} is not the name of a partition of this layout"),
            );
            continue;
        }
        // Follow the chain from the parent: coming back to `name` within as many steps as
        // there are parents is a cycle through it (a cycle elsewhere is reported there).
        let mut chain = vec![name.as_str(), parent.as_str()];
        let mut at = parent.as_str();
        for _ in 0..parents.len() {
            let Some(&next) = parent_of.get(at) else {
                break;
            };
            chain.push(next);
            if next == name {
                report.field(
                    label,
                    "parent",
                    format!(
                        "the parents form a cycle ({}); a parent chain must end at a \
                         partition without a parent",
                        chain.join(" -> ")
                    ),
                );
                break;
            }
            at = next;
        }
    }
}

/// Checks one partition's own fields; `None` if any is missing or wrong (`nics`: its checked
/// NICs, `None` if they were refused).
fn check_partition(
    raw: RawPartition,
    nics: Option<Vec<NicSpec>>,
    pci: Option<Vec<PciAddress>>,
    layout_dir: &Path,
    options: &LoadOptions,
    report: &mut Report,
) -> Option<CheckedPartition> {
    let label = &raw.label;
    let before = report.len();
    let image = raw
        .image
        .as_deref()
        .and_then(|image| resolve_image(label, image, layout_dir, options, report));
    // None: unreadable or not found (reported); Some(None): no initrd.
    let initrd = match &raw.initrd {
        None => None,
        Some(None) => Some(None),
        Some(Some(initrd)) => resolve_initrd(label, initrd, layout_dir, options, report).map(Some),
    };
    let kind = image
        .as_deref()
        .and_then(|image| image_kind(label, image, report));
    if let (Some(kind), Some(image)) = (kind, &image) {
        let initrd_given = matches!(raw.initrd, Some(Some(_)));
        check_linux_fields(
            label,
            kind,
            image,
            initrd_given,
            raw.command_line.as_deref(),
            report,
        );
    }
    if let Some(command_line) = &raw.command_line {
        check_command_line(label, command_line, report);
    }
    let memory = raw
        .memory
        .as_deref()
        .and_then(|memory| check_memory(label, memory, raw.dynamic.unwrap_or(false), report));
    let vcpus = raw
        .vcpus
        .as_deref()
        .and_then(|vcpus| check_vcpus(label, vcpus, raw.memory.as_deref(), report));
    let pool = raw
        .pool
        .filter(|&pool| check_pool_size(label, pool, report));
    if report.len() != before {
        return None;
    }
    let partition = CheckedPartition {
        name: raw.name?,
        vcpus: vcpus?,
        memory: memory?,
        pool_bytes: pool?,
        max_page: raw.max_page?,
        image: image?,
        image_kind: kind?.0,
        initrd: initrd?,
        command_line: raw.command_line?,
        on_fault: raw.on_fault?,
        on_shutdown: raw.on_shutdown?,
        pool_check: raw.pool_check?,
        time_limit_ms: raw.time_limit_ms?,
        restart_limit: raw.restart_limit?,
        parent: raw.parent?,
        dynamic: raw.dynamic?,
        console: raw.console?,
        nics: nics?,
        pci: pci?,
    };
    if partition.pool_check == PoolCheck::Build {
        check_pool_covers_cost(&partition, report);
    }
    (report.len() == before).then_some(partition)
}

fn check_name(label: &PartitionLabel, name: &str, report: &mut Report) {
    if let Some(problem) = name_problem(name) {
        report.field(label, "name", problem);
    }
}

fn check_command_line(label: &PartitionLabel, command_line: &str, report: &mut Report) {
    if command_line.len() > MAX_COMMAND_LINE {
        report.field(
            label,
            "command_line",
            format!(
                "{} bytes long; at most {MAX_COMMAND_LINE} (1 KiB)",
                command_line.len()
            ),
        );
    }
    if command_line.contains('\0') {
        report.field(
            label,
            "command_line",
            "contains a NUL character, which would end it early; remove it",
        );
    }
}

fn check_memory(
    label: &PartitionLabel,
    memory: &[VnodeSpec],
    dynamic: bool,
    report: &mut Report,
) -> Option<Vec<VnodeSpec>> {
    let before = report.len();
    if memory.is_empty() {
        report.field(
            label,
            "memory",
            "empty; give at least one vnode, like [{ size = \"64M\", node = 0 }]",
        );
    }
    if memory.len() > MAX_VNODES {
        report.field(
            label,
            "memory",
            format!("{} vnodes; at most {MAX_VNODES}", memory.len()),
        );
    }
    let mut resolved = Vec::with_capacity(memory.len());
    for (i, vnode) in memory.iter().enumerate() {
        check_page_multiple(label, &format!("memory[{i}].size"), vnode.size, report);
        resolved.push(check_bounds(label, i, vnode, dynamic, report));
    }
    // Each vnode counts with the most it may hold: its size, or its memory_max above it.
    let total = resolved
        .iter()
        .fold(0u64, |sum, v| sum.saturating_add(v.size.max(v.max)));
    let grows = resolved.iter().any(|v| v.growth() > 0);
    if total > MAX_PARTITION_MEMORY {
        report.field(
            label,
            "memory",
            format!(
                "{} in all{}; a partition has at most {} of guest memory",
                human_size(total),
                if grows {
                    " (memory_max where hot-add grows a vnode above its size)"
                } else {
                    ""
                },
                human_size(MAX_PARTITION_MEMORY)
            ),
        );
    } else if grows {
        check_hot_add(label, &resolved, report);
    }
    (report.len() == before).then_some(resolved)
}

/// The hot-add rules of a partition whose vnodes' bounds are resolved and whose memory is
/// within [`MAX_PARTITION_MEMORY`]: at most [`MAX_GROWING_VNODES`] vnodes grow, and every
/// hot-add region ([`hot_add_regions`]) ends inside the guest-physical space (which the
/// limits imply; checked all the same, as the firmware maps them).
fn check_hot_add(label: &PartitionLabel, memory: &[VnodeSpec], report: &mut Report) {
    let growing: Vec<String> = memory
        .iter()
        .enumerate()
        .filter(|(_, v)| v.growth() > 0)
        .map(|(k, _)| format!("memory[{k}]"))
        .collect();
    if growing.len() > MAX_GROWING_VNODES {
        report.field(
            label,
            "memory",
            format!(
                "{} vnodes grow above their size by hot-add ({}); at most \
                 {MAX_GROWING_VNODES} may, as each is a virtio-mem device with a virtio-mmio \
                 window and an I/O APIC pin of its own: set memory_max = size on the others",
                growing.len(),
                growing.join(", ")
            ),
        );
    }
    let sizes: Vec<u64> = memory.iter().map(|v| v.size).collect();
    let growths: Vec<u64> = memory.iter().map(VnodeSpec::growth).collect();
    for (k, region) in hot_add_regions(&sizes, &growths).into_iter().enumerate() {
        let Some((gpa, len)) = region else {
            continue;
        };
        if gpa.saturating_add(len) > GUEST_PHYSICAL_LIMIT {
            report.field(
                label,
                format!("memory[{k}].memory_max"),
                format!(
                    "its hot-add region of {} at {gpa:#x} ends beyond the {} of \
                     guest-physical space a 4-level SLAT maps; lower memory_max",
                    human_size(len),
                    human_size(GUEST_PHYSICAL_LIMIT)
                ),
            );
        }
    }
}

/// A vnode's Dynamic Memory bounds, only with `dynamic = true`, each a multiple of 4 KiB:
/// `memory_min` ≤ `memory_max` and `memory_min` ≤ `size` (the balloon works below what the
/// guest boots with); `memory_max` may exceed `size` (hot-add), by a multiple of
/// [`HOT_ADD_BLOCK`]. Unset, `memory_max` is the size and `memory_min` a quarter of it
/// (rounded up to 4 KiB); without `dynamic` both are the size.
fn check_bounds(
    label: &PartitionLabel,
    index: usize,
    vnode: &VnodeSpec,
    dynamic: bool,
    report: &mut Report,
) -> VnodeSpec {
    let given_min = (vnode.min != UNSET_MIN).then_some(vnode.min);
    let given_max = (vnode.max != UNSET_MAX).then_some(vnode.max);
    if !dynamic {
        for (name, given) in [("memory_min", given_min), ("memory_max", given_max)] {
            if given.is_some() {
                report.field(
                    label,
                    format!("memory[{index}].{name}"),
                    "only a partition with Dynamic Memory has bounds; add dynamic = true",
                );
            }
        }
        return VnodeSpec {
            min: vnode.size,
            max: vnode.size,
            ..*vnode
        };
    }
    let max = given_max.unwrap_or(vnode.size);
    let min = given_min.unwrap_or_else(|| (vnode.size / 4).div_ceil(PAGE_SIZE) * PAGE_SIZE);
    for (name, given) in [("memory_min", given_min), ("memory_max", given_max)] {
        if let Some(bytes) = given {
            check_page_multiple(label, &format!("memory[{index}].{name}"), bytes, report);
        }
    }
    // Growth by hot-add (a memory_max not in whole pages is reported above alone).
    let growth = max.saturating_sub(vnode.size);
    if max.is_multiple_of(PAGE_SIZE) && !growth.is_multiple_of(HOT_ADD_BLOCK) {
        let up = vnode
            .size
            .saturating_add(growth.div_ceil(HOT_ADD_BLOCK).saturating_mul(HOT_ADD_BLOCK));
        report.field(
            label,
            format!("memory[{index}].memory_max"),
            format!(
                "{} grows the vnode by {} above its size ({}); hot-add grows it by whole \
                 blocks of {} (Linux's x86-64 memory block), so make memory_max − size a \
                 multiple of that, like memory_max = {}",
                human_size(max),
                human_size(growth),
                human_size(vnode.size),
                human_size(HOT_ADD_BLOCK),
                layout_size(up)
            ),
        );
    }
    if min <= max && min > vnode.size {
        report.field(
            label,
            format!("memory[{index}].memory_min"),
            format!(
                "{} is more than the vnode's size ({}); the guest boots with its size and the \
                 balloon only works below it, so memory_min is at most the size",
                human_size(min),
                human_size(vnode.size)
            ),
        );
    }
    if min > max {
        report.field(
            label,
            format!("memory[{index}].memory_min"),
            format!(
                "{} is more than memory_max ({})",
                human_size(min),
                human_size(max)
            ),
        );
    }
    VnodeSpec { min, max, ..*vnode }
}

/// Reports `bytes` unless it is a non-zero multiple of 4 KiB; says whether it is one.
fn check_page_multiple(
    label: &PartitionLabel,
    field: &str,
    bytes: u64,
    report: &mut Report,
) -> bool {
    if bytes == 0 {
        report.field(label, field, "0 bytes; give a size of at least \"4K\"");
        return false;
    }
    if !bytes.is_multiple_of(PAGE_SIZE) {
        let up = bytes.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
        report.field(
            label,
            field,
            format!(
                "{bytes} is not a multiple of 4 KiB (4096); use a multiple of \"4K\", like {}",
                layout_size(up)
            ),
        );
        return false;
    }
    true
}

fn check_vcpus(
    label: &PartitionLabel,
    vcpus: &[RawVcpuGroup],
    memory: Option<&[VnodeSpec]>,
    report: &mut Report,
) -> Option<Vec<CheckedVcpuGroup>> {
    let before = report.len();
    if vcpus.is_empty() {
        report.field(
            label,
            "vcpus",
            "empty; give at least one group, like [{ node = 0, count = 1 }]",
        );
    }
    let mut total: u64 = 0;
    let mut checked = Vec::with_capacity(vcpus.len());
    for (i, group) in vcpus.iter().enumerate() {
        let (vnode, group) = match group {
            RawVcpuGroup::OnNode { node, count, vnode } => {
                if *count == 0 {
                    report.field(
                        label,
                        format!("vcpus[{i}].count"),
                        "0 vCPUs; give at least 1 or remove the group",
                    );
                }
                total += u64::from(*count);
                let (node, count, vnode) = (*node, *count, *vnode);
                (vnode, CheckedVcpuGroup::OnNode { node, count, vnode })
            }
            RawVcpuGroup::ApicIds { ids, vnode } => {
                if ids.is_empty() {
                    report.field(
                        label,
                        format!("vcpus[{i}].apic_ids"),
                        "empty; list at least one APIC ID or remove the group",
                    );
                }
                total += ids.len() as u64;
                let (ids, vnode) = (ids.clone(), *vnode);
                (vnode, CheckedVcpuGroup::ApicIds { ids, vnode })
            }
        };
        if let (Some(vnode), Some(memory)) = (vnode, memory) {
            if vnode as usize >= memory.len() {
                report.field(
                    label,
                    format!("vcpus[{i}].vnode"),
                    format!(
                        "vnode {vnode} does not exist: `memory` has {} vnodes (0..={}); use \
                         one of those or add a memory entry",
                        memory.len(),
                        memory.len().saturating_sub(1)
                    ),
                );
            }
        }
        checked.push(group);
    }
    if total > u64::from(MAX_VCPUS_PER_PARTITION) {
        report.field(
            label,
            "vcpus",
            format!("{total} vCPUs; a partition has at most {MAX_VCPUS_PER_PARTITION}"),
        );
    }
    (report.len() == before).then_some(checked)
}

/// No host CPU named by APIC ID twice, within a partition or across partitions. Groups by
/// node are placed at boot, which refuses them if the node runs out of free CPUs.
fn check_cpus_unshared(
    label: &PartitionLabel,
    vcpus: &[RawVcpuGroup],
    taken: &mut HashMap<u32, (PartitionLabel, String)>,
    report: &mut Report,
) {
    for (i, group) in vcpus.iter().enumerate() {
        let RawVcpuGroup::ApicIds { ids, .. } = group else {
            continue;
        };
        let field = format!("vcpus[{i}].apic_ids");
        for &id in ids {
            match taken.get(&id) {
                Some((owner, owner_field)) if owner == label => report.field(
                    label,
                    &field,
                    format!(
                        "APIC ID {id} is listed twice (also in {owner_field}); each CPU runs \
                         one vCPU, remove one"
                    ),
                ),
                Some((owner, owner_field)) => report.field(
                    label,
                    &field,
                    format!(
                        "APIC ID {id} is already given to {owner} ({owner_field}); a CPU runs \
                         one partition only, pick another CPU"
                    ),
                ),
                None => {
                    taken.insert(id, (label.clone(), field.clone()));
                }
            }
        }
    }
}

/// Checks a partition's `pci` list: at most [`MAX_PCI_PER_PARTITION`] functions, none named
/// twice in the layout (a function is owned by one partition, once). Whether each exists and
/// may be passed through depends on the machine and is checked at boot (`docs/pci.md`).
fn check_pci_unshared(
    label: &PartitionLabel,
    pci: &[PciAddress],
    owners: &mut HashMap<PciAddress, (PartitionLabel, usize)>,
    report: &mut Report,
) -> Option<Vec<PciAddress>> {
    let before = report.len();
    if pci.len() > MAX_PCI_PER_PARTITION {
        report.field(
            label,
            "pci",
            format!(
                "{} PCI functions; a partition owns at most {MAX_PCI_PER_PARTITION}",
                pci.len()
            ),
        );
    }
    for (i, &address) in pci.iter().enumerate() {
        let field = format!("pci[{i}].host");
        match owners.get(&address) {
            Some((owner, j)) if owner == label => report.field(
                label,
                &field,
                format!("{address} is listed twice (also pci[{j}]); remove one"),
            ),
            Some((owner, j)) => report.field(
                label,
                &field,
                format!(
                    "{address} is already given to {owner} (pci[{j}]); a PCI function belongs \
                     to one partition only"
                ),
            ),
            None => {
                owners.insert(address, (label.clone(), i));
            }
        }
    }
    (report.len() == before).then(|| pci.to_vec())
}

/// Reports the pool unless it is a non-zero multiple of 4 KiB within the limit.
fn check_pool_size(label: &PartitionLabel, pool: u64, report: &mut Report) -> bool {
    if !check_page_multiple(label, "pool", pool, report) {
        return false;
    }
    if pool > MAX_POOL_BYTES {
        report.field(
            label,
            "pool",
            format!(
                "{}; a pool holds at most {}",
                human_size(pool),
                human_size(MAX_POOL_BYTES)
            ),
        );
        return false;
    }
    true
}

/// The pool must hold what building the partition draws from it (the policy cost model).
fn check_pool_covers_cost(partition: &CheckedPartition, report: &mut Report) {
    let needed = partition.minimum_pool_bytes();
    if partition.pool_bytes < needed {
        let label = PartitionLabel::Name(partition.name.clone());
        let growth: u64 = partition.memory.iter().map(VnodeSpec::growth).sum();
        let dma = match partition.dma_table_pages() {
            0 => String::new(),
            pages => format!(" + {pages} DMA remapping table pages for its pci functions"),
        };
        let hot_add = match growth {
            0 => String::new(),
            _ => format!(
                " + {} SLAT table pages for {} of hot-add with {} pages",
                partition.hot_add_table_pages(),
                human_size(growth),
                hot_add_page(partition.max_page)
            ),
        };
        report.field(
            &label,
            "pool",
            format!(
                "{} is too small: this partition needs at least {} ({} SLAT table pages for {} \
                 with {} pages{hot_add}{dma} + {VMCB_PAGES_PER_VCPU} VMCB/VMCS page per vCPU × {} \
                 + {} I/O and MSR bitmap pages); use pool = {} or more",
                human_size(partition.pool_bytes),
                human_size(needed),
                partition.slat_table_pages(),
                human_size(partition.memory.iter().map(|v| v.size).sum()),
                partition.max_page,
                partition.vcpu_count(),
                IO_BITMAP_PAGES + MSR_BITMAP_PAGES,
                layout_size(needed),
            ),
        );
    }
}
