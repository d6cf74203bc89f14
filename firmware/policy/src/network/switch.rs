//! A learning switch for one network (IEEE 802.1D's forwarding, without spanning tree): each
//! port is one member card, and the switch learns which source MAC sits behind which port.
//!
//! Learning table: at most [`MAX_ENTRIES`] addresses. A source seen again refreshes its entry
//! (and moves it, if it now comes from another port); a multicast source is never learned.
//! When the table is full, a new address evicts the least recently seen address of the port
//! that holds the most entries: a member that invents source addresses only pushes its own
//! out once it holds the largest share, never the others'. Nothing ages by time: a member
//! that stops or restarts is [`Switch::forget`]-ed by its caller.

use alloc::collections::BTreeMap;
use alloc::vec;

use crate::devices::virtio::net::ETHERNET_HEADER_LEN;

/// The most addresses one switch learns.
pub const MAX_ENTRIES: usize = 256;

/// A MAC address.
pub type Mac = [u8; 6];

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To this port only: its destination was learned there.
    Port(usize),
    /// To every port but the sender's: broadcast, multicast or an unknown destination.
    Flood,
    /// Nowhere.
    Drop(DropReason),
}

/// Why the switch dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// The destination was learned on the sender's own port: it has the frame already.
    SamePort,
    /// The sending port does not exist.
    NoSuchPort,
}

/// What the switch has routed since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchCounters {
    /// Frames sent to one learned port.
    pub unicast: u64,
    /// Frames flooded to every other port.
    pub flooded: u64,
    /// Frames dropped: too short.
    pub dropped_runt: u64,
    /// Frames dropped: destination behind the sender's port.
    pub dropped_same_port: u64,
    /// Frames dropped: no such sending port.
    pub dropped_no_such_port: u64,
}

/// Where an address was learned and when (the switch's frame count then).
#[derive(Clone, Copy, Debug)]
struct Entry {
    port: usize,
    last_seen: u64,
}

/// A learning switch with a fixed number of ports.
#[derive(Clone, Debug)]
pub struct Switch {
    ports: usize,
    table: BTreeMap<Mac, Entry>,
    /// Frames routed: the clock the table's `last_seen` counts in.
    clock: u64,
    counters: SwitchCounters,
}

impl Switch {
    /// A switch with `ports` ports and nothing learned.
    pub fn new(ports: usize) -> Switch {
        Switch {
            ports,
            table: BTreeMap::new(),
            clock: 0,
            counters: SwitchCounters::default(),
        }
    }

    /// The number of ports.
    pub fn port_count(&self) -> usize {
        self.ports
    }

    /// Learns `frame`'s source on port `from` and says where the frame goes.
    pub fn route(&mut self, from: usize, frame: &[u8]) -> Route {
        let route = self.decide(from, frame);
        let counter = match route {
            Route::Port(_) => &mut self.counters.unicast,
            Route::Flood => &mut self.counters.flooded,
            Route::Drop(DropReason::Runt) => &mut self.counters.dropped_runt,
            Route::Drop(DropReason::SamePort) => &mut self.counters.dropped_same_port,
            Route::Drop(DropReason::NoSuchPort) => &mut self.counters.dropped_no_such_port,
        };
        *counter += 1;
        route
    }

    /// Forgets every address learned on `port` (its member stopped or restarted).
    pub fn forget(&mut self, port: usize) {
        self.table.retain(|_, entry| entry.port != port);
    }

    /// The port `mac` was learned on, if any.
    pub fn lookup(&self, mac: &Mac) -> Option<usize> {
        self.table.get(mac).map(|entry| entry.port)
    }

    /// The number of addresses learned.
    pub fn learned(&self) -> usize {
        self.table.len()
    }

    /// What the switch has routed.
    pub fn counters(&self) -> SwitchCounters {
        self.counters
    }

    fn decide(&mut self, from: usize, frame: &[u8]) -> Route {
        if from >= self.ports {
            return Route::Drop(DropReason::NoSuchPort);
        }
        let (Some(destination), Some(source)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            return Route::Drop(DropReason::Runt);
        };
        if frame.len() < ETHERNET_HEADER_LEN {
            // Both addresses, but no EtherType.
            return Route::Drop(DropReason::Runt);
        }
        self.clock += 1;
        if !is_multicast(&source) {
            self.learn(source, from);
        }
        if is_multicast(&destination) {
            return Route::Flood;
        }
        match self.lookup(&destination) {
            Some(port) if port == from => Route::Drop(DropReason::SamePort),
            Some(port) => Route::Port(port),
            None => Route::Flood,
        }
    }

    fn learn(&mut self, mac: Mac, port: usize) {
        let entry = Entry {
            port,
            last_seen: self.clock,
        };
        if let Some(known) = self.table.get_mut(&mac) {
            *known = entry;
            return;
        }
        if self.table.len() >= MAX_ENTRIES {
            self.evict();
        }
        self.table.insert(mac, entry);
    }

    /// Removes the least recently seen address of the port holding the most addresses (the
    /// lowest such port on a tie).
    fn evict(&mut self) {
        let mut per_port = vec![0usize; self.ports];
        for entry in self.table.values() {
            if let Some(count) = per_port.get_mut(entry.port) {
                *count += 1;
            }
        }
        let Some(fullest) = (0..per_port.len()).max_by_key(|&p| (per_port[p], usize::MAX - p))
        else {
            return;
        };
        let oldest = self
            .table
            .iter()
            .filter(|(_, entry)| entry.port == fullest)
            .min_by_key(|(_, entry)| entry.last_seen)
            .map(|(mac, _)| *mac);
        if let Some(mac) = oldest {
            self.table.remove(&mac);
        }
    }
}

/// The six bytes at `at`, if the frame has them.
fn mac_at(frame: &[u8], at: usize) -> Option<Mac> {
    frame.get(at..at + 6)?.try_into().ok()
}

/// Group addresses (broadcast included) have the low bit of the first byte set.
fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}
