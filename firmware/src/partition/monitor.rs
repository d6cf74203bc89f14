//! The monitor shell: commands typed on the host console after Ctrl-A `m` (the line editor
//! and parser are `numavisor_policy::vmm::monitor`). Each command prints its answer and a
//! `monitor` report event; stop and restart are asked of the partition's own vCPUs, which
//! carry them out like any other stop.

use alloc::string::String;
use alloc::vec::Vec;

use numavisor_policy::report::events::{self, PartitionSummary};
use numavisor_policy::vmm::exit::{StopKind, StopRequest};
use numavisor_policy::vmm::monitor::{self, Command, Edit, LineEditor, COMMANDS};

use super::{emit_exit_counts, Hypervisor, Partition};
use crate::platform::console::{report, serial};

/// The prompt, printed when the monitor is entered and after each command.
const PROMPT: &str = "monitor> ";

/// Input now goes to the monitor: says so and prompts.
pub fn entered() {
    serial::write_fmt(format_args!(
        "\r\nnumavisor monitor (type `help`; Ctrl-A and a digit goes back to a partition)\r\n{PROMPT}"
    ));
}

/// One byte typed into the monitor.
pub fn typed(hv: &Hypervisor, editor: &mut LineEditor, byte: u8) {
    match editor.push(byte) {
        Edit::Echo(byte) => serial::write_fmt(format_args!("{}", byte as char)),
        Edit::Erased => serial::write_fmt(format_args!("\x08 \x08")),
        Edit::Nothing => {}
        Edit::Line(line) => {
            serial::write_fmt(format_args!("\r\n"));
            match line {
                Ok(line) => run_line(hv, &line),
                Err(problem) => refuse("", &alloc::format!("{problem}")),
            }
            serial::write_fmt(format_args!("{PROMPT}"));
        }
    }
}

fn run_line(hv: &Hypervisor, line: &str) {
    let outcome = match monitor::parse(line) {
        None => return,
        Some(Err(problem)) => Err(alloc::format!("{problem}")),
        Some(Ok(command)) => run(hv, &command),
    };
    match outcome {
        Ok(summaries) => report::emit(&events::monitor(line, None, &summaries)),
        Err(problem) => refuse(line, &problem),
    }
}

fn refuse(line: &str, problem: &str) {
    serial::write_fmt(format_args!("error: {problem}\r\n"));
    report::emit(&events::monitor(line, Some(problem), &[]));
}

/// Carries out `command`; the `partitions` rows it showed, if any.
fn run(hv: &Hypervisor, command: &Command) -> Result<Vec<PartitionSummary<'static>>, String> {
    match command {
        Command::Help => {
            for (name, argument, what) in COMMANDS {
                serial::write_fmt(format_args!("  {name:<10} {argument:<5} {what}\r\n"));
            }
            Ok(Vec::new())
        }
        Command::Partitions => {
            let rows: Vec<PartitionSummary> =
                hv.partitions().iter().copied().map(summary).collect();
            for row in &rows {
                let memory: Vec<String> = row
                    .memory
                    .iter()
                    .enumerate()
                    .map(|(vnode, (node, size, plugged))| {
                        let plugged = if *plugged > 0 {
                            alloc::format!(" ({} MiB plugged)", plugged >> 20)
                        } else {
                            String::new()
                        };
                        alloc::format!("vnode {vnode}: {} MiB on node {node}{plugged}", size >> 20)
                    })
                    .collect();
                serial::write_fmt(format_args!(
                    "  {:<12} {:<8} {} vCPU(s) on node(s) {:?}; {}; pool balance {} KiB\r\n",
                    row.name,
                    row.state,
                    row.vcpu_nodes.len(),
                    row.vcpu_nodes,
                    memory.join(", "),
                    row.pool_balance >> 10
                ));
            }
            Ok(rows)
        }
        Command::Ledger => {
            let ledger = hv.frames.lock().ledger();
            for row in &ledger {
                serial::write_fmt(format_args!(
                    "  node {}: {} MiB usable, {} MiB free, hypervisor {} KiB, guests {} MiB, pools {} KiB\r\n",
                    row.node,
                    row.usable >> 20,
                    row.free >> 20,
                    row.hypervisor >> 10,
                    row.guest >> 20,
                    row.pools >> 10
                ));
            }
            report::emit(&events::ledger(&ledger));
            Ok(Vec::new())
        }
        Command::Exits { partition } => {
            let partition = find(hv, partition)?;
            for (kind, count) in partition.exit_counts.snapshot() {
                serial::write_fmt(format_args!("  {kind:<10} {count}\r\n"));
            }
            emit_exit_counts(partition);
            Ok(Vec::new())
        }
        Command::Nics { network } => {
            let all = hv.networks();
            let network = all.iter().find(|n| n.name == network).ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|n| n.name).collect();
                alloc::format!("no network \"{network}\" (networks: {})", names.join(", "))
            })?;
            super::network::show(network);
            Ok(Vec::new())
        }
        Command::Stop { partition } => {
            ask(find(hv, partition)?, false)?;
            Ok(Vec::new())
        }
        Command::Restart { partition } => {
            ask(find(hv, partition)?, true)?;
            Ok(Vec::new())
        }
        Command::Balloon {
            partition,
            vnode,
            bytes,
        } => {
            let partition = find(hv, partition)?;
            if partition.control.ended() {
                return Err(alloc::format!(
                    "partition \"{}\" has stopped for good",
                    partition.name()
                ));
            }
            let said = super::dynamic::operator_target(partition, *vnode, *bytes)?;
            serial::write_fmt(format_args!("  {said}\r\n"));
            Ok(Vec::new())
        }
    }
}

/// The partition named `name`.
fn find(hv: &Hypervisor, name: &str) -> Result<&'static Partition, String> {
    let all = hv.partitions();
    all.iter()
        .copied()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
            alloc::format!("no partition \"{name}\" (partitions: {})", names.join(", "))
        })
}

/// Asks `partition`'s vCPUs to stop it, or restart it.
fn ask(partition: &Partition, restart: bool) -> Result<(), String> {
    if partition.control.ended() {
        return Err(alloc::format!(
            "partition \"{}\" has stopped for good (its memory went back to its nodes)",
            partition.name()
        ));
    }
    if partition.control.stop_requested() {
        return Err(alloc::format!(
            "partition \"{}\" is stopping or restarting already; wait for its report",
            partition.name()
        ));
    }
    let (reason, verb) = if restart {
        ("restart", "restart")
    } else {
        ("operator", "stop")
    };
    partition.control.ask(StopRequest {
        kind: StopKind::Operator { restart },
        reason,
        detail: alloc::format!("{verb} typed on the monitor"),
    });
    // Out of the guest or its HLT now rather than at the next host tick.
    for slot in &partition.vcpus {
        slot.kick();
    }
    serial::write_fmt(format_args!(
        "  partition \"{}\": {verb} asked\r\n",
        partition.name()
    ));
    Ok(())
}

fn summary(partition: &'static Partition) -> PartitionSummary<'static> {
    let state = partition.state.lock();
    PartitionSummary {
        name: partition.name(),
        state: if partition.control.ended() {
            "stopped"
        } else {
            "running"
        },
        vcpu_nodes: state.vcpus.iter().map(|v| v.node).collect(),
        memory: partition
            .spec
            .memory
            .iter()
            .enumerate()
            .map(|(vnode, v)| {
                (
                    v.node as usize,
                    state.ram.mapped_bytes(vnode, None),
                    state.ram.plugged_bytes(vnode),
                )
            })
            .collect(),
        pool_balance: state.pool.as_ref().map_or(0, |p| p.balance_bytes()),
    }
}
