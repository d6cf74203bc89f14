//! Builders for each `@nv` event; docs/boot-report.md describes every field.

use alloc::string::String;
use alloc::vec::Vec;

use super::json::{object, ArrayWriter, ObjectWriter};
use super::REPORT_VERSION;
use crate::acpi::{AcpiFindings, Hmat, HmatDataType, TableRef};
use crate::memory::NodeLedger;
use crate::topology::{Topology, TopologySource};

fn event(name: &str, fill: impl FnOnce(&mut ObjectWriter)) -> String {
    object(|o| {
        o.u64("v", REPORT_VERSION as u64).str("event", name);
        fill(o);
    })
}

fn signature(raw: &[u8; 4]) -> String {
    raw.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// `acpi`: where the tables came from, which tables exist, and what was wrong with them.
pub fn acpi(rsdp: u64, findings: &AcpiFindings) -> String {
    event("acpi", |o| {
        o.u64("rsdp", rsdp)
            .u64("revision", findings.rsdp_revision as u64)
            .str(
                "root",
                if findings.root == crate::acpi::RootTableKind::Xsdt {
                    "xsdt"
                } else {
                    "rsdt"
                },
            )
            .array("tables", |a| {
                for table in &findings.tables {
                    a.object(|t| {
                        t.str("signature", &signature(&table.signature))
                            .u64("address", table.address)
                            .u64("length", table.length as u64)
                            .bool("valid", table.valid);
                    });
                }
            })
            .array("overridden", |a| {
                for done in &findings.overrides {
                    a.str(&signature(&done.signature));
                }
            })
            .array("problems", |a| {
                for problem in &findings.problems {
                    a.str(&alloc::format!("{problem}"));
                }
            });
    })
}

/// `acpi_table`: one table's bytes in hex (only with `acpi-dump` on the command line).
pub fn acpi_table(table: &TableRef, bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = core::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
    }
    event("acpi_table", |o| {
        o.str("signature", &signature(&table.signature))
            .u64("address", table.address)
            .str("hex", &hex);
    })
}

/// `topology`: proximity domains, their CPUs, SRAT ranges and usable RAM, and distances.
pub fn topology(topology: &Topology) -> String {
    event("topology", |o| {
        o.str(
            "source",
            match topology.source {
                TopologySource::Srat => "srat",
                TopologySource::None => "none",
            },
        )
        .array("nodes", |a| {
            for domain in &topology.domains {
                a.object(|n| {
                    n.u64("node", domain.node as u64)
                        .u64("pxm", domain.pxm as u64);
                    n.array("apic_ids", |ids| {
                        for &id in &domain.apic_ids {
                            ids.u64(id as u64);
                        }
                    });
                    n.array("memory", |ranges| {
                        for range in &domain.memory {
                            ranges.object(|r| {
                                r.u64("base", range.base).u64("size", range.size);
                                if range.hot_pluggable {
                                    r.bool("hot_pluggable", true);
                                }
                                if range.non_volatile {
                                    r.bool("non_volatile", true);
                                }
                            });
                        }
                    });
                    n.u64(
                        "usable_bytes",
                        domain.usable.iter().map(|(s, e)| e - s).sum(),
                    );
                });
            }
        })
        .array("distances", |rows| {
            let n = topology.domains.len();
            for from in 0..n {
                rows.array(|row| {
                    for to in 0..n {
                        row.u64(topology.distance(from, to) as u64);
                    }
                });
            }
        });
    })
}

/// One CPU's line in the `cpus` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuReport {
    pub apic_id: u32,
    /// The proximity domain (dense index) the topology gives it.
    pub node: Option<usize>,
    pub bsp: bool,
    /// The domain its stack came from (APs only).
    pub stack_node: Option<usize>,
    /// Why it is not online; `None` when it is.
    pub failure: Option<&'static str>,
}

impl CpuReport {
    /// A CPU that reported in.
    pub fn online(
        apic_id: u32,
        node: Option<usize>,
        bsp: bool,
        stack_node: Option<usize>,
    ) -> CpuReport {
        CpuReport {
            apic_id,
            node,
            bsp,
            stack_node,
            failure: None,
        }
    }

    /// A CPU that was left out, and why.
    pub fn failed(apic_id: u32, node: Option<usize>, reason: &'static str) -> CpuReport {
        CpuReport {
            apic_id,
            node,
            bsp: false,
            stack_node: None,
            failure: Some(reason),
        }
    }
}

/// `cpus`: the CPUs that came online and those that did not.
pub fn cpus(cpus: &[CpuReport]) -> String {
    let write = |a: &mut ArrayWriter, online: bool| {
        let mut sorted: Vec<&CpuReport> = cpus
            .iter()
            .filter(|c| c.failure.is_none() == online)
            .collect();
        sorted.sort_by_key(|c| c.apic_id);
        for cpu in sorted {
            a.object(|c| {
                c.u64("apic_id", cpu.apic_id as u64)
                    .opt_u64("node", cpu.node.map(|n| n as u64));
                if online {
                    c.bool("bsp", cpu.bsp);
                    if !cpu.bsp {
                        c.opt_u64("stack_node", cpu.stack_node.map(|n| n as u64));
                    }
                } else if let Some(reason) = cpu.failure {
                    c.str("reason", reason);
                }
            });
        }
    };
    event("cpus", |o| {
        o.array("online", |a| write(a, true))
            .array("failed", |a| write(a, false));
    })
}

/// `memory`: the ledger per node after start-up (usable = free + hypervisor + guest + pools).
pub fn memory(ledger: &[NodeLedger]) -> String {
    event("memory", |o| ledger_rows(o, ledger))
}

/// `ledger`: the same columns, printed after partitions start and after any stops.
pub fn ledger(ledger: &[NodeLedger]) -> String {
    event("ledger", |o| ledger_rows(o, ledger))
}

fn ledger_rows(o: &mut ObjectWriter, ledger: &[NodeLedger]) {
    o.array("nodes", |a| {
        for row in ledger {
            a.object(|n| {
                n.u64("node", row.node as u64)
                    .u64("usable", row.usable)
                    .u64("free", row.free)
                    .u64("hypervisor", row.hypervisor)
                    .u64("guest", row.guest)
                    .u64("pools", row.pools);
            });
        }
    });
}

fn data_type_name(data_type: HmatDataType) -> String {
    match data_type {
        HmatDataType::AccessLatency => "access_latency".into(),
        HmatDataType::ReadLatency => "read_latency".into(),
        HmatDataType::WriteLatency => "write_latency".into(),
        HmatDataType::AccessBandwidth => "access_bandwidth".into(),
        HmatDataType::ReadBandwidth => "read_bandwidth".into(),
        HmatDataType::WriteBandwidth => "write_bandwidth".into(),
        HmatDataType::Other(raw) => alloc::format!("type_{raw}"),
    }
}

/// `hmat`: the HMAT's latency and bandwidth matrices (initiator-major rows).
pub fn hmat(hmat: &Hmat) -> String {
    event("hmat", |o| {
        o.u64("revision", hmat.revision as u64)
            .array("memory_proximity", |a| {
                for p in &hmat.memory_proximity {
                    a.object(|m| {
                        m.opt_u64("initiator", p.initiator.map(u64::from))
                            .opt_u64("memory", p.memory.map(u64::from));
                    });
                }
            })
            .array("localities", |a| {
                for l in &hmat.localities {
                    a.object(|m| {
                        m.str("data_type", &data_type_name(l.data_type))
                            .u64("hierarchy", l.hierarchy as u64)
                            .u64("base_unit", l.entry_base_unit)
                            .array("initiators", |x| {
                                l.initiators.iter().for_each(|&i| {
                                    x.u64(i as u64);
                                })
                            })
                            .array("targets", |x| {
                                l.targets.iter().for_each(|&t| {
                                    x.u64(t as u64);
                                })
                            })
                            .array("entries", |rows| {
                                for row in l.entries.chunks(l.targets.len().max(1)) {
                                    rows.array(|r| {
                                        row.iter().for_each(|&e| {
                                            r.u64(e as u64);
                                        })
                                    });
                                }
                            });
                    });
                }
            })
            .u64("caches", hmat.caches.len() as u64);
    })
}

/// Phase durations in TSC ticks (instructions under `qemu -icount shift=0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub tsc_hz: u64,
    pub entry_to_ready: u64,
    pub acpi_and_topology: u64,
    pub memory_setup: u64,
    pub cpu_startup: u64,
    /// Ticks spent in protocol-mandated waits (INIT/SIPI delays, report-in polling).
    pub waiting: u64,
}

/// `timing`: how long each boot phase took.
pub fn timing(t: &Timing) -> String {
    event("timing", |o| {
        o.u64("tsc_hz", t.tsc_hz)
            .u64("entry_to_ready", t.entry_to_ready)
            .u64("acpi_and_topology", t.acpi_and_topology)
            .u64("memory_setup", t.memory_setup)
            .u64("cpu_startup", t.cpu_startup)
            .u64("waiting", t.waiting);
    })
}

/// `virtualization`: the backend chosen from the CPU (`svm` or `vmx`), its SLAT format
/// (`npt`, `ept`) and the name of its tagged-TLB ids (`asid`, `vpid`), with a summary line.
pub fn virtualization(backend: &str, slat: &str, tlb_tag: &str, summary: &str) -> String {
    event("virtualization", |o| {
        o.str("backend", backend)
            .str("slat", slat)
            .str("tlb_tag", tlb_tag)
            .str("summary", summary);
    })
}

/// `ready`: start-up is complete.
pub fn ready() -> String {
    event("ready", |_| {})
}

/// The SLAT figures of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlatFigures {
    pub format: &'static str,
    /// The kind of tagged-TLB id (`asid`, `vpid`) and the partition's (0: untagged).
    pub tag_kind: &'static str,
    pub tag: u32,
    pub pages_4k: u64,
    pub pages_2m: u64,
    pub pages_1g: u64,
    pub table_bytes: u64,
}

/// One vNUMA node of a partition: its guest-physical range(s) and the host ranges backing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VnodeReport {
    pub vnode: usize,
    pub node: usize,
    /// First guest-physical address and total size.
    pub gpa: u64,
    pub size: u64,
    /// Host ranges `(base, size)`, adjacent blocks merged.
    pub spa: Vec<(u64, u64)>,
}

/// What the `partition` event shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport<'a> {
    pub name: &'a str,
    pub state: &'a str,
    /// `(vcpu, apic_id, node, vnode)`.
    pub vcpus: Vec<(usize, u32, usize, usize)>,
    pub memory: Vec<VnodeReport>,
    pub slat: SlatFigures,
    /// Options the hypervisor appended to the guest's command line (empty: none).
    pub added_options: String,
    pub pool_node: usize,
    pub pool_deposited: u64,
    pub pool_balance: u64,
}

/// `partition`: a partition that was built, where everything it has lies.
pub fn partition(p: &PartitionReport) -> String {
    event("partition", |o| {
        o.str("name", p.name).str("state", p.state);
        o.array("vcpus", |a| {
            for &(vcpu, apic_id, node, vnode) in &p.vcpus {
                a.object(|v| {
                    v.u64("vcpu", vcpu as u64)
                        .u64("apic_id", apic_id as u64)
                        .u64("node", node as u64)
                        .u64("vnode", vnode as u64);
                });
            }
        });
        o.array("memory", |a| {
            for m in &p.memory {
                a.object(|v| {
                    v.u64("vnode", m.vnode as u64)
                        .u64("node", m.node as u64)
                        .u64("gpa", m.gpa)
                        .u64("size", m.size)
                        .array("spa", |s| {
                            for &(base, size) in &m.spa {
                                s.array(|r| {
                                    r.u64(base).u64(size);
                                });
                            }
                        });
                });
            }
        });
        o.object("slat", |s| {
            s.str("format", p.slat.format)
                .str("tag_kind", p.slat.tag_kind)
                .u64("tag", p.slat.tag as u64)
                .u64("pages_4k", p.slat.pages_4k)
                .u64("pages_2m", p.slat.pages_2m)
                .u64("pages_1g", p.slat.pages_1g)
                .u64("table_bytes", p.slat.table_bytes);
        });
        o.object("pool", |s| {
            s.u64("node", p.pool_node as u64)
                .u64("deposited", p.pool_deposited)
                .u64("balance", p.pool_balance);
        });
        o.str("added_options", &p.added_options);
    })
}

/// `partition_refused`: a layout partition that could not be placed on this machine.
pub fn partition_refused(name: &str, reason: &str) -> String {
    event("partition_refused", |o| {
        o.str("name", name).str("reason", reason);
    })
}

/// `pci_far`: a partition owns a PCI function on a node that holds none of its memory;
/// `nearest` is the partition's node nearest to it and `distance` their SLIT distance.
pub fn pci_far(
    partition: &str,
    host: &crate::pci::PciAddress,
    node: usize,
    nearest: usize,
    distance: u8,
) -> String {
    event("pci_far", |o| {
        o.str("partition", partition)
            .str("host", &alloc::format!("{host}"))
            .u64("node", node as u64)
            .u64("nearest", nearest as u64)
            .u64("distance", u64::from(distance));
    })
}

/// `dma_fault`: a remapping unit refused a device's DMA (or interrupt message): the
/// partition owning the device (`null`: none), the device's requester ID, the address, the
/// direction and the unit's reason.
pub fn dma_fault(partition: Option<&str>, unit: u64, fault: &crate::iommu::DmaFault) -> String {
    event("dma_fault", |o| {
        o.opt_str("partition", partition)
            .u64("unit", unit)
            .str("device", &alloc::format!("{}", fault.source))
            .u64("address", fault.address)
            .bool("write", fault.write)
            .str("reason", fault.reason.describe());
    })
}

/// `partition_stopped`: a partition ended; `reason` is a word, `detail` the specifics.
pub fn partition_stopped(name: &str, reason: &str, detail: &str) -> String {
    event("partition_stopped", |o| {
        o.str("name", name)
            .str("reason", reason)
            .str("detail", detail);
    })
}

/// `partition_restarted`: a partition was started again after stopping.
pub fn partition_restarted(name: &str, restarts: u32, reason: &str) -> String {
    event("partition_restarted", |o| {
        o.str("name", name)
            .u64("restarts", restarts as u64)
            .str("reason", reason);
    })
}

/// `console`: one line a partition wrote to its UART, and when (µs since the hypervisor's
/// entry, host TSC).
pub fn console(partition: &str, line: &str, micros: u64) -> String {
    event("console", |o| {
        o.str("partition", partition)
            .str("line", line)
            .u64("us", micros);
    })
}

/// The hypervisor's own health when every partition has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostHealth {
    /// NMIs the host took (the platform's: a watchdog, an operator's button).
    pub nmis: u64,
    /// With `selftest=host-state`: world-switch checks made, and host MSRs found changed.
    pub host_state: Option<(u64, u64)>,
    /// The deepest any application processor's stack has been, and the stacks' size (bytes).
    pub ap_stack: Option<(u64, u64)>,
}

/// `all_stopped`: every partition has ended (printed before `exit=partitions` ends the run),
/// with the hypervisor's own counts.
pub fn all_stopped(health: HostHealth) -> String {
    event("all_stopped", |o| {
        o.u64("host_nmis", health.nmis);
        if let Some((checks, changes)) = health.host_state {
            o.object("host_state", |o| {
                o.u64("checks", checks).u64("changes", changes);
            });
        }
        if let Some((peak, bytes)) = health.ap_stack {
            o.object("ap_stack", |o| {
                o.u64("peak_bytes", peak).u64("bytes", bytes);
            });
        }
    })
}

/// `exit_profile` (with `profile=exits`): TSC ticks (instructions under `-icount shift=0`)
/// per stage of the vCPU loop, summed over every vCPU, and the passes that reached a guest.
pub fn exit_profile(profile: &crate::vmm::exit_profile::ExitProfile) -> String {
    use crate::vmm::exit_profile::Stage;
    event("exit_profile", |o| {
        o.u64("passes", profile.passes)
            .u64("allocations", profile.allocations)
            .object("ticks", |o| {
                for stage in Stage::ALL {
                    o.u64(stage.name(), profile.ticks[stage as usize]);
                }
            });
    })
}

/// One partition's run figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionTiming<'a> {
    pub name: &'a str,
    /// TSC ticks from `ready` to the first VMRUN of vCPU 0.
    pub ready_to_first_entry: u64,
    /// VM exits handled, and TSC ticks from the first VMRUN to the last stop.
    pub exits: u64,
    pub run_ticks: u64,
}

/// `exit_counts`: a partition's VM exits so far, by kind, at `us` (µs since entry); printed
/// every period of the `exit-stats=MS` option and when the partition stops.
pub fn exit_counts(partition: &str, micros: u64, counts: &[(&str, u64)]) -> String {
    event("exit_counts", |o| {
        o.str("partition", partition).u64("us", micros);
        o.object("exits", |e| {
            for &(kind, count) in counts {
                e.u64(kind, count);
            }
        });
    })
}

/// `partition_timing`: per partition, ticks from `ready` to its first guest instruction
/// (instructions under `qemu -icount shift=0`), its VM exits and run time in ticks; printed
/// once every partition has stopped.
pub fn partition_timing(entries: &[PartitionTiming]) -> String {
    event("partition_timing", |o| {
        o.array("partitions", |a| {
            for t in entries {
                a.object(|p| {
                    p.str("name", t.name)
                        .u64("ready_to_first_entry", t.ready_to_first_entry)
                        .u64("exits", t.exits)
                        .u64("run_ticks", t.run_ticks);
                });
            }
        });
    })
}

/// One partition as the monitor's `partitions` command shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSummary<'a> {
    pub name: &'a str,
    /// `running` or `stopped`.
    pub state: &'a str,
    /// Each vCPU's host node.
    pub vcpu_nodes: Vec<usize>,
    /// Each vnode: (host node, bytes held, of which plugged by virtio-mem).
    pub memory: Vec<(usize, u64, u64)>,
    pub pool_balance: u64,
}

/// `monitor`: a command typed on the monitor shell and its outcome (`error` when it was
/// refused); `partitions` carries what the `partitions` command showed.
pub fn monitor(line: &str, error: Option<&str>, partitions: &[PartitionSummary]) -> String {
    event("monitor", |o| {
        o.str("command", line).bool("ok", error.is_none());
        if let Some(error) = error {
            o.str("error", error);
        }
        if !partitions.is_empty() {
            o.array("partitions", |a| {
                for p in partitions {
                    a.object(|r| {
                        r.str("name", p.name).str("state", p.state);
                        r.array("vcpu_nodes", |n| {
                            for &node in &p.vcpu_nodes {
                                n.u64(node as u64);
                            }
                        });
                        r.array("memory", |m| {
                            for (vnode, &(node, size, plugged)) in p.memory.iter().enumerate() {
                                m.object(|v| {
                                    v.u64("vnode", vnode as u64)
                                        .u64("node", node as u64)
                                        .u64("size", size)
                                        .u64("plugged", plugged);
                                });
                            }
                        });
                        r.u64("pool_balance", p.pool_balance);
                    });
                }
            });
        }
    })
}

/// Which way a parent moved pages between its guest RAM and a child's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMove {
    /// `pool_deposit`: from the parent's RAM into the child's pool.
    Deposit,
    /// `pool_withdraw`: from the child's pool back into the parent's RAM.
    Withdraw,
    /// `pool_reclaim`: back into a restarting parent's RAM, by the hypervisor.
    Reclaim,
}

/// `pool_deposit` / `pool_withdraw` / `pool_reclaim`: one call's pages, moved between
/// `parent`'s RAM and `child`'s pool: the parent's GPA, the host page and its node of each.
pub fn pool_move(kind: PoolMove, parent: &str, child: &str, pages: &[(u64, u64, usize)]) -> String {
    let name = match kind {
        PoolMove::Deposit => "pool_deposit",
        PoolMove::Withdraw => "pool_withdraw",
        PoolMove::Reclaim => "pool_reclaim",
    };
    event(name, |o| {
        o.str("parent", parent)
            .str("child", child)
            .u64("pages", pages.len() as u64)
            .array("moves", |a| {
                for &(gpa, spa, node) in pages {
                    a.object(|m| {
                        m.u64("gpa", gpa).u64("spa", spa).u64("node", node as u64);
                    });
                }
            });
    })
}

/// Who set a Dynamic Memory target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSetter {
    /// Dynamic Memory's own policy, from the guests' pressure.
    Policy,
    /// `balloon NAME VNODE SIZE` on the monitor.
    Operator,
    /// The partition's parent, by hypercall.
    Parent,
}

impl TargetSetter {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            TargetSetter::Policy => "policy",
            TargetSetter::Operator => "operator",
            TargetSetter::Parent => "parent",
        }
    }
}

/// `memory_target`: the memory a dynamic partition should hold from now on (its balloon
/// inflates or deflates towards it), and who asked.
pub fn memory_target(partition: &str, vnode: usize, bytes: u64, by: TargetSetter) -> String {
    event("memory_target", |o| {
        o.str("partition", partition)
            .u64("vnode", vnode as u64)
            .u64("bytes", bytes)
            .str("by", by.name());
    })
}

/// One balloon move of a dynamic partition's pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalloonMove<'a> {
    pub partition: &'a str,
    /// `true`: inflate (pages left the guest for the node's free memory); `false`: deflate.
    pub inflate: bool,
    pub vnode: usize,
    pub node: usize,
    pub pages: u64,
    /// The host ranges `(start, length)` moved, merged where adjacent.
    pub spa: Vec<(u64, u64)>,
    /// The bytes of RAM the partition holds after the move.
    pub size: u64,
    /// Host TSC ticks the hypervisor spent on the request that moved them (SLAT changes,
    /// the other vCPUs' flushes, the frame allocator).
    pub ticks: u64,
    /// Microseconds since the hypervisor's entry, when the move was done.
    pub micros: u64,
}

/// `balloon`: pages a dynamic partition's balloon moved, all of one vnode and host node.
pub fn balloon(m: &BalloonMove) -> String {
    event("balloon", |o| {
        o.str("partition", m.partition)
            .str("kind", if m.inflate { "inflate" } else { "deflate" })
            .u64("vnode", m.vnode as u64)
            .u64("node", m.node as u64)
            .u64("pages", m.pages)
            .u64("bytes", m.pages * 4096)
            .array("spa", |a| {
                for &(start, length) in &m.spa {
                    a.array(|r| {
                        r.u64(start).u64(length);
                    });
                }
            })
            .u64("size", m.size)
            .u64("ticks", m.ticks)
            .u64("us", m.micros);
    })
}

/// Blocks virtio-mem plugged into or unplugged from one vnode of a dynamic partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotAddMove<'a> {
    pub partition: &'a str,
    /// `true`: plugged (memory of the node entered the guest); `false`: unplugged.
    pub plug: bool,
    pub vnode: usize,
    pub node: usize,
    /// The host ranges `(start, length)` moved, merged where adjacent.
    pub spa: Vec<(u64, u64)>,
    /// The bytes the vnode has plugged after the move.
    pub plugged: u64,
    /// The bytes of RAM the partition holds after the move.
    pub size: u64,
    /// The partition's SLAT after the move: bytes of table pages, and 2 MiB leaves.
    pub slat_table_bytes: u64,
    pub slat_leaves_2m: u64,
    /// Of the 2 MiB blocks moved, those backed by 4 KiB pieces (their node had no free 2 MiB
    /// block when they were plugged).
    pub in_pieces: u64,
    /// Host TSC ticks the hypervisor spent on the request.
    pub ticks: u64,
    /// Microseconds since the hypervisor's entry, when the move was done.
    pub micros: u64,
}

/// `hot_add`: blocks a dynamic partition's virtio-mem device plugged or unplugged, all of
/// one vnode and host node.
pub fn hot_add(m: &HotAddMove) -> String {
    event("hot_add", |o| {
        o.str("partition", m.partition)
            .str("kind", if m.plug { "plug" } else { "unplug" })
            .u64("vnode", m.vnode as u64)
            .u64("node", m.node as u64)
            .u64("bytes", m.spa.iter().map(|&(_, length)| length).sum())
            .array("spa", |a| {
                for &(start, length) in &m.spa {
                    a.array(|r| {
                        r.u64(start).u64(length);
                    });
                }
            })
            .u64("plugged", m.plugged)
            .u64("size", m.size)
            .u64("slat_table_bytes", m.slat_table_bytes)
            .u64("slat_leaves_2m", m.slat_leaves_2m)
            .u64("in_pieces", m.in_pieces)
            .u64("ticks", m.ticks)
            .u64("us", m.micros);
    })
}

/// Host ranges `(start, length)` of `spas` (each `length` bytes long), sorted and merged
/// where adjacent: how the `balloon` and `hot_add` events list what moved.
pub fn merged_ranges(spas: impl IntoIterator<Item = u64>, length: u64) -> Vec<(u64, u64)> {
    merged_spans(spas.into_iter().map(|spa| (spa, length)))
}

/// [`merged_ranges`] of spans of any length, `(start, length)`.
pub fn merged_spans(spans: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = spans.into_iter().collect();
    spans.sort_unstable();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (start, length) in spans {
        match runs.last_mut() {
            Some(run) if run.0 + run.1 == start => run.1 += length,
            _ => runs.push((start, length)),
        }
    }
    runs
}

/// A MAC address as the report, the layout and the test guest write it:
/// `02:6e:76:00:00:01`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|octet| alloc::format!("{octet:02x}")).join(":")
}

/// One member of a network in the `network` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkMember<'a> {
    /// The partition.
    pub partition: &'a str,
    /// Which of its NICs (its `nics` index; the guest's eth number).
    pub nic: usize,
    pub mac: [u8; 6],
    /// The host nodes holding the partition's memory.
    pub nodes: Vec<u32>,
}

/// One network in the `network` event: its name and the members that were built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkReport<'a> {
    pub name: &'a str,
    pub members: Vec<NetworkMember<'a>>,
}

/// `network`: the layout's networks as built, each with its members' NICs, MACs and nodes.
pub fn network(networks: &[NetworkReport]) -> String {
    event("network", |o| {
        o.array("networks", |a| {
            for n in networks {
                a.object(|net| {
                    net.str("name", n.name).array("members", |members| {
                        for m in &n.members {
                            members.object(|member| {
                                member
                                    .str("partition", m.partition)
                                    .u64("nic", m.nic as u64)
                                    .str("mac", &mac_string(m.mac))
                                    .array("nodes", |nodes| {
                                        for &node in &m.nodes {
                                            nodes.u64(u64::from(node));
                                        }
                                    });
                            });
                        }
                    });
                });
            }
        });
    })
}

/// One NIC's counters in a `nic_counts` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicReport<'a> {
    pub nic: usize,
    pub network: &'a str,
    pub mac: [u8; 6],
    pub link_up: bool,
    /// Frames and bytes sent and received, and frames dropped by reason.
    pub counters: Vec<(&'static str, u64)>,
    /// Host TSC ticks its partition's vCPUs spent sending its frames (instructions under
    /// `qemu -icount shift=0`).
    pub send_ticks: u64,
}

/// `nic_counts`: a partition's NIC counters, printed with its `exit_counts` (periodically
/// with `exit-stats=MS`, and at every stop).
pub fn nic_counts(partition: &str, micros: u64, nics: &[NicReport]) -> String {
    event("nic_counts", |o| {
        o.str("partition", partition).u64("us", micros);
        o.array("nics", |a| {
            for n in nics {
                a.object(|nic| {
                    nic.u64("nic", n.nic as u64)
                        .str("network", n.network)
                        .str("mac", &mac_string(n.mac))
                        .bool("link_up", n.link_up)
                        .u64("send_ticks", n.send_ticks)
                        .object("counters", |c| {
                            for &(name, value) in &n.counters {
                                c.u64(name, value);
                            }
                        });
                });
            }
        });
    })
}

/// `pci`: the host's PCI segments, host bridges (with their nodes), DMA remapping units and
/// every function, with its BARs, its node and the unit that remaps its DMA.
pub fn pci(inventory: &crate::pci::PciInventory) -> String {
    use crate::pci::HeaderKind;
    event("pci", |o| {
        o.array("segments", |a| {
            for w in &inventory.windows {
                a.object(|s| {
                    s.u64("segment", u64::from(w.segment))
                        .u64("ecam", w.base)
                        .u64("start_bus", u64::from(w.start_bus))
                        .u64("end_bus", u64::from(w.end_bus));
                });
            }
        })
        .array("host_bridges", |a| {
            for b in &inventory.host_bridges {
                a.object(|h| {
                    h.str("path", &b.path)
                        .u64("segment", u64::from(b.root.segment))
                        .u64("bus", u64::from(b.root.bus))
                        .opt_u64("pxm", b.pxm.map(u64::from))
                        .opt_u64("node", b.node.map(|n| n as u64));
                });
            }
        })
        .array("remapping_units", |a| {
            for u in &inventory.units {
                a.object(|r| {
                    r.str("kind", u.kind.name())
                        .u64("base", u.base)
                        .u64("segment", u64::from(u.segment))
                        .opt_u64("pxm", u.pxm.map(u64::from))
                        .opt_u64("node", u.node.map(|n| n as u64))
                        .bool("interrupt_remapping", u.interrupt_remapping);
                });
            }
        })
        .array("devices", |a| {
            for d in &inventory.devices {
                let f = &d.function;
                a.object(|o| {
                    let kind = match f.header {
                        HeaderKind::Endpoint if f.is_endpoint() => "endpoint",
                        HeaderKind::Endpoint if f.class >> 8 == 0x0600 => "host-bridge",
                        HeaderKind::Endpoint => "platform-bridge",
                        HeaderKind::Bridge { .. } => "bridge",
                        HeaderKind::CardBus => "cardbus",
                        HeaderKind::Other(_) => "other",
                    };
                    o.str("address", &alloc::format!("{}", f.address))
                        .str("id", &alloc::format!("{:04x}:{:04x}", f.vendor, f.device))
                        .str("class", &alloc::format!("{:06x}", f.class))
                        .str("kind", kind);
                    if let HeaderKind::Bridge {
                        secondary,
                        subordinate,
                        ..
                    } = f.header
                    {
                        o.u64("secondary", u64::from(secondary))
                            .u64("subordinate", u64::from(subordinate));
                    }
                    o.array("bars", |bars| {
                        for bar in &f.bars {
                            bars.object(|b| {
                                b.u64("bar", u64::from(bar.index))
                                    .str("type", bar.kind.name())
                                    .bool("prefetchable", bar.prefetchable)
                                    .u64("base", bar.base)
                                    .u64("size", bar.size);
                            });
                        }
                    })
                    .bool("msi", f.capabilities.msi.is_some())
                    .opt_u64(
                        "msix_vectors",
                        f.capabilities.msix.map(|(_, n)| u64::from(n)),
                    )
                    .opt_u64("express_type", f.capabilities.express_type.map(u64::from))
                    .opt_u64("host_bridge", d.host_bridge.map(|i| i as u64))
                    .opt_u64("node", d.node.map(|n| n as u64))
                    .opt_u64("remapping_unit", d.unit.map(|u| u as u64))
                    .array("reserved_memory", |r| {
                        for &(base, end) in &d.reserved_memory {
                            r.array(|pair| {
                                pair.u64(base).u64(end);
                            });
                        }
                    });
                });
            }
        });
    })
}
