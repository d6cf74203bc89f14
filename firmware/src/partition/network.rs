//! The layout's networks: one learning switch each (`numavisor_policy::network`), joining
//! the network cards of the partitions that were built.
//!
//! A frame travels on its sender's vCPU: the transmit notify exit takes the frames out of the
//! sender's card (under the sender's `devices` lock, reading through the vCPU's own copy of
//! the RAM, which no page move can free before this vCPU acknowledges), asks the switch where
//! each goes (its lock only around the lookup), and copies it into each receiver's posted
//! buffer under that receiver's `state` then `devices` lock — the lock order of
//! [`Hypervisor`](super::Hypervisor). Holding the receiver's `state` lock keeps its RAM
//! from changing under the copy: a page that left it is no longer in its RAM, and the frame
//! is dropped. No two partitions' locks are ever held at once, and a sender never waits for
//! a receiver's guest: a receiver without buffers only loses frames. A flooding guest pays
//! with its own vCPU's time, in bounded passes.
//!
//! A card's link is up while another member of its network runs: set when the partitions
//! are built, again when one stops for good, and on a restarted partition's new cards.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use numavisor_layout::Layout;
use numavisor_policy::devices::device::DeviceId;
use numavisor_policy::devices::virtio::net::VirtioNet;
use numavisor_policy::devices::virtio::QueueMemory;
use numavisor_policy::network::switch::Switch;
use numavisor_policy::network::{deliver, Ports};
use numavisor_policy::report::events::{self, NetworkMember, NetworkReport, NicReport};
use spin::Mutex;

use super::guest_memory::GuestMemory;
use super::interrupts::deliver_ioapic;
use super::Partition;
use crate::platform::console::{report, serial};
use crate::platform::cpu::tsc;

/// Frames one pass over a transmit queue takes (its size), and the passes one exit makes:
/// what is left waits for the guest's next exit on the card.
const FRAMES_PER_PASS: usize = 256;
const PASSES_PER_EXIT: usize = 4;

/// One member card of a network.
#[derive(Clone, Copy)]
struct Port {
    partition: &'static Partition,
    nic: u8,
}

/// One network of the layout, with the members that were built.
pub struct Network {
    pub name: &'static str,
    ports: Vec<Port>,
    /// Per port: host TSC ticks its vCPUs spent sending (taking, switching and copying its
    /// frames); under `qemu -icount shift=0` a tick is an instruction, so this over
    /// `tx_frames` is the hypervisor's cost of a frame.
    send_ticks: Vec<AtomicU64>,
    switch: Mutex<Switch>,
}

impl Network {
    /// Where partition `partition`'s card `nic` sits on this network, if it is a member.
    fn port_of(&self, partition: &Partition, nic: u8) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.partition.index == partition.index && p.nic == nic)
    }

    /// Whether a member other than `port` runs.
    fn peer_running(&self, port: usize) -> bool {
        self.ports
            .iter()
            .enumerate()
            .any(|(i, p)| i != port && !p.partition.control.ended())
    }
}

/// The networks of `layout` over the partitions `built`, in the layout's order.
pub fn build_networks(layout: &'static Layout, built: &[&'static Partition]) -> Vec<Network> {
    layout
        .networks
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let ports: Vec<Port> = built
                .iter()
                .flat_map(|&partition| {
                    partition
                        .spec
                        .nics
                        .iter()
                        .enumerate()
                        .filter(move |(_, nic)| nic.network == index)
                        .map(move |(nic, _)| Port {
                            partition,
                            // At most MAX_NICS (4) cards a partition.
                            nic: nic as u8,
                        })
                })
                .collect();
            Network {
                name: spec.name,
                switch: Mutex::new(Switch::new(ports.len())),
                send_ticks: ports.iter().map(|_| AtomicU64::new(0)).collect(),
                ports,
            }
        })
        .collect()
}

/// The `network` event: every network, its members' cards, MACs and nodes.
pub fn emit_report(networks: &[Network]) {
    let reports: Vec<NetworkReport> = networks
        .iter()
        .map(|network| NetworkReport {
            name: network.name,
            members: network
                .ports
                .iter()
                .map(|port| {
                    let spec = port.partition.spec;
                    let mut nodes: Vec<u32> = spec.memory.iter().map(|v| v.node).collect();
                    nodes.sort_unstable();
                    nodes.dedup();
                    NetworkMember {
                        partition: spec.name,
                        nic: usize::from(port.nic),
                        mac: spec.nics[usize::from(port.nic)].mac,
                        nodes,
                    }
                })
                .collect(),
        })
        .collect();
    report::emit(&events::network(&reports));
}

/// The network partition `partition`'s card `nic` is on, and its port there.
fn find(partition: &Partition, nic: u8) -> Option<(&'static Network, usize)> {
    let spec = partition.spec.nics.get(usize::from(nic))?;
    let network = partition.hv.networks().get(spec.network)?;
    Some((network, network.port_of(partition, nic)?))
}

/// The members of one network as the switch reaches them.
struct Members<'a>(&'a Network);

impl Ports for Members<'_> {
    fn port_count(&self) -> usize {
        self.0.ports.len()
    }

    fn with_port<R>(
        &self,
        port: usize,
        f: impl FnOnce(&mut VirtioNet, &dyn QueueMemory) -> R,
    ) -> Option<R> {
        let Port { partition, nic } = *self.0.ports.get(port)?;
        let state = partition.state.lock();
        // Under its state lock: a partition that stopped for good gave its memory back
        // after saying so, with this lock held.
        if partition.control.ended() {
            return None;
        }
        let memory = GuestMemory::new(state.ram.clone());
        let mut devices = partition.devices.lock();
        let result = f(devices.nics.get_mut(usize::from(nic))?, &memory);
        let delivery = devices.sync_line(DeviceId::VirtioNet(nic));
        drop(devices);
        drop(state);
        if let Some(delivery) = delivery {
            deliver_ioapic(partition, delivery);
        }
        Some(result)
    }
}

/// Card `nic` of `partition` has frames to send (its transmit queue was notified): takes
/// them through `memory` (the sending vCPU's RAM) and switches each to its receivers.
pub fn transmit(partition: &Partition, nic: u8, memory: &dyn QueueMemory) {
    let started = tsc::now();
    let target = find(partition, nic);
    send(partition, nic, memory, target);
    if let Some((network, port)) = target {
        network.send_ticks[port].fetch_add(tsc::now().wrapping_sub(started), Ordering::Relaxed);
    }
}

fn send(
    partition: &Partition,
    nic: u8,
    memory: &dyn QueueMemory,
    target: Option<(&'static Network, usize)>,
) {
    let id = DeviceId::VirtioNet(nic);
    for _ in 0..PASSES_PER_EXIT {
        let (frames, more) = {
            let mut devices = partition.devices.lock();
            let Some(card) = devices.nics.get_mut(usize::from(nic)) else {
                return;
            };
            let frames = card.take_transmits(memory, FRAMES_PER_PASS);
            let more = card.has_pending_transmits();
            let delivery = devices.sync_line(id);
            drop(devices);
            if let Some(delivery) = delivery {
                deliver_ioapic(partition, delivery);
            }
            (frames, more)
        };
        if let Some((network, port)) = target {
            let members = Members(network);
            for frame in &frames {
                let route = network.switch.lock().route(port, frame.bytes());
                deliver(&members, port, route, frame);
            }
        }
        if !more {
            return;
        }
    }
    // Frames are left (the guest adds them as fast as they go): a vCPU of the partition takes
    // them before it next enters the guest, after passing its checkpoints (stops, memory
    // changes). Waiting for the guest's next notify could wait for ever: with EVENT_IDX the
    // driver notifies only when its ring index crosses the one the device last published.
    partition.nic_backlog.fetch_or(1 << nic, Ordering::Relaxed);
}

/// Takes the frames the last exits on `partition`'s cards left behind (see [`transmit`]):
/// called by each vCPU before it enters the guest; one load when there are none.
pub fn send_backlog(partition: &Partition, memory: &dyn QueueMemory) {
    if partition.nic_backlog.load(Ordering::Relaxed) == 0 {
        return;
    }
    let backlog = partition.nic_backlog.swap(0, Ordering::Relaxed);
    for nic in 0..u8::BITS as u8 {
        if backlog & (1 << nic) != 0 {
            transmit(partition, nic, memory);
        }
    }
}

/// Sets every card's link: up while another member of its network runs. After the
/// partitions are built, when one stops for good, and when one restarts (its cards are new).
pub fn refresh_links(networks: &[Network]) {
    for network in networks {
        for (index, port) in network.ports.iter().enumerate() {
            let up = network.peer_running(index) && !port.partition.control.ended();
            let mut devices = port.partition.devices.lock();
            let Some(card) = devices.nics.get_mut(usize::from(port.nic)) else {
                continue;
            };
            if card.link_up() == up {
                continue;
            }
            card.set_link(up);
            let delivery = devices.sync_line(DeviceId::VirtioNet(port.nic));
            drop(devices);
            if let Some(delivery) = delivery {
                deliver_ioapic(port.partition, delivery);
            }
        }
    }
}

/// A member stopped or restarts: the switch forgets the addresses it learned on its cards.
pub fn leave(partition: &Partition) {
    for nic in 0..partition.spec.nics.len() {
        // At most MAX_NICS (4) cards a partition.
        if let Some((network, port)) = find(partition, nic as u8) {
            network.switch.lock().forget(port);
        }
    }
}

/// The `nic_counts` event for `partition`'s cards (nothing if it has none).
pub fn emit_counts(partition: &Partition) {
    if partition.spec.nics.is_empty() {
        return;
    }
    let networks = partition.hv.networks();
    let reports: Vec<NicReport> = {
        let devices = partition.devices.lock();
        devices
            .nics
            .iter()
            .zip(partition.spec.nics)
            .enumerate()
            .map(|(index, (card, spec))| NicReport {
                nic: index,
                network: networks.get(spec.network).map_or("", |n| n.name),
                mac: spec.mac,
                link_up: card.link_up(),
                counters: card.counters().fields().to_vec(),
                send_ticks: find(partition, index as u8).map_or(0, |(network, port)| {
                    network.send_ticks[port].load(Ordering::Relaxed)
                }),
            })
            .collect()
    };
    report::emit(&events::nic_counts(
        partition.name(),
        crate::platform::cpu::tsc::micros_since_entry(),
        &reports,
    ));
}

/// The monitor's `nics NAME`: each member card of `network` on the console, and its
/// partition's `nic_counts` event.
pub fn show(network: &Network) {
    for port in &network.ports {
        let partition = port.partition;
        let nic = usize::from(port.nic);
        let (link_up, counters) = {
            let devices = partition.devices.lock();
            let Some(card) = devices.nics.get(nic) else {
                continue;
            };
            (card.link_up(), card.counters())
        };
        let mac = events::mac_string(partition.spec.nics[nic].mac);
        let state = if partition.control.ended() {
            "stopped"
        } else if link_up {
            "link up"
        } else {
            "link down"
        };
        serial::write_fmt(format_args!(
            "  {} eth{nic} {mac} {state}\r\n",
            partition.name()
        ));
        let fields: Vec<alloc::string::String> = counters
            .fields()
            .iter()
            .map(|(name, value)| alloc::format!("{name} {value}"))
            .collect();
        serial::write_fmt(format_args!("    {}\r\n", fields.join(", ")));
        emit_counts(partition);
    }
}
