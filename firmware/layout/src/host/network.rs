//! Networks and NICs (`docs/layout.md`, "Networks"): the `[[network]]` tables read and
//! checked (named as partitions are, unique, at most [`MAX_NETWORKS`]), each partition's
//! `nics` read into the raw form, then checked against the networks: the network exists and
//! the partition joins it once, at most [`MAX_NICS_PER_PARTITION`] NICs, each MAC unicast and
//! unique in the layout ([`default_mac`] where none is given). Once every partition is read,
//! each network must join at least two partitions.

use std::collections::HashMap;

use super::error::{NetworkLabel, PartitionLabel, Report};
use super::names::name_problem;
use super::parse::{typed, RawNic};
use super::CheckedNetwork;
use crate::limits::{MAX_NETWORKS, MAX_NICS_PER_PARTITION, MAX_PARTITIONS};
use crate::{default_mac, NicSpec};
use numavisor_policy::report::events::mac_string;

/// The keys a `[[network]]` table may hold.
pub(crate) const NETWORK_KEYS: [&str; 1] = ["name"];

/// The layout's networks, and what the partitions checked so far put on them.
pub(crate) struct Networks {
    /// The networks with a name, in file order, each named once: a NIC's `network` is an
    /// index here.
    networks: Vec<CheckedNetwork>,
    /// By name: the index in `networks`, and the `[[network]]` table's index in the file.
    by_name: HashMap<String, (usize, usize)>,
    /// The partitions joining each network (in `networks` order).
    members: Vec<Vec<PartitionLabel>>,
    /// Whom each MAC given out so far belongs to: the partition, and the NIC (`nics[1].mac`,
    /// or `nics[0] (by default)`).
    macs: HashMap<[u8; 6], (PartitionLabel, String)>,
    /// False when the `network` key could not be read (already reported): no NIC is checked
    /// against the networks then.
    readable: bool,
    /// False when some partition's `nics` could not be read (already reported): the
    /// networks' members are then not all known, and not counted.
    all_members_known: bool,
}

impl Networks {
    /// Reads and checks the `[[network]]` tables (`None`: the `network` key was unreadable).
    pub(crate) fn read(tables: Option<Vec<(usize, toml::Table)>>, report: &mut Report) -> Self {
        let mut networks = Networks {
            networks: Vec::new(),
            by_name: HashMap::new(),
            members: Vec::new(),
            macs: HashMap::new(),
            readable: tables.is_some(),
            all_members_known: true,
        };
        let tables = tables.unwrap_or_default();
        if tables.len() > MAX_NETWORKS {
            report.layout(format!(
                "{} networks; a layout holds at most {MAX_NETWORKS}",
                tables.len()
            ));
        }
        for (index, table) in tables {
            networks.add(index, table, report);
        }
        networks
    }

    /// One `[[network]]` table: its keys known, its name readable, valid and not taken.
    fn add(&mut self, index: usize, table: toml::Table, report: &mut Report) {
        let label = match table.get("name") {
            Some(toml::Value::String(name)) => NetworkLabel::Name(name.clone()),
            _ => NetworkLabel::Index(index),
        };
        for key in table.keys() {
            if !NETWORK_KEYS.contains(&key.as_str()) {
                report.network(
                    &label,
                    Some(key),
                    format!(
                        "unknown key; a network has {}",
                        NETWORK_KEYS.map(|k| format!("`{k}`")).join(", ")
                    ),
                );
            }
        }
        let name: String = match table.get("name").map(|value| typed("name", value)) {
            Some(Ok(name)) => name,
            Some(Err(message)) => return report.network(&label, Some("name"), message),
            None => {
                return report.network(&label, Some("name"), "missing; add e.g. name = \"lan\"")
            }
        };
        if let Some(problem) = name_problem(&name) {
            report.network(&label, Some("name"), problem);
        }
        if let Some(&(_, first)) = self.by_name.get(&name) {
            return report.network(
                &label,
                Some("name"),
                format!("{name:?} is already the name of network[{first}]; names must be unique"),
            );
        }
        self.by_name
            .insert(name.clone(), (self.networks.len(), index));
        self.networks.push(CheckedNetwork { name });
        self.members.push(Vec::new());
    }

    /// Checks the NICs of the partition at `partition` (its index in file order, which picks
    /// the default MACs) and puts them on their networks. `None` if any error was reported.
    pub(crate) fn check_nics(
        &mut self,
        partition: usize,
        label: &PartitionLabel,
        nics: &[RawNic],
        report: &mut Report,
    ) -> Option<Vec<NicSpec>> {
        let before = report.len();
        // Too many NICs are still put on their networks, so that those are not reported short
        // of members.
        if nics.len() > MAX_NICS_PER_PARTITION {
            report.field(
                label,
                "nics",
                format!(
                    "{} NICs; a partition has at most {MAX_NICS_PER_PARTITION}",
                    nics.len()
                ),
            );
        }
        let mut joined: HashMap<usize, usize> = HashMap::new();
        let mut checked = Vec::with_capacity(nics.len());
        for (i, nic) in nics.iter().enumerate() {
            let network = self.network_index(label, i, &nic.network, report);
            if let Some(network) = network {
                if let Some(first) = joined.get(&network) {
                    report.field(
                        label,
                        format!("nics[{i}].network"),
                        format!(
                            "the partition already joins {:?} through nics[{first}]; a \
                             partition joins a network once",
                            nic.network
                        ),
                    );
                } else {
                    joined.insert(network, i);
                    self.members[network].push(label.clone());
                }
            }
            let mac = self.take_mac(partition, i, label, nic.mac, report);
            if let (Some(network), Some(mac)) = (network, mac) {
                checked.push(NicSpec { network, mac });
            }
        }
        (report.len() == before).then_some(checked)
    }

    /// Notes that a partition's `nics` could not be read (reported), so members are missing.
    pub(crate) fn nics_unreadable(&mut self) {
        self.all_members_known = false;
    }

    /// The index of the network NIC `nic` names, reporting a name no network has.
    fn network_index(
        &self,
        label: &PartitionLabel,
        nic: usize,
        name: &str,
        report: &mut Report,
    ) -> Option<usize> {
        if let Some(&(index, _)) = self.by_name.get(name) {
            return Some(index);
        }
        if self.readable {
            let fix = if self.networks.is_empty() {
                "the layout has none".to_string()
            } else {
                let names: Vec<String> = self
                    .networks
                    .iter()
                    .map(|network| format!("{:?}", network.name))
                    .collect();
                format!("use one of {}", names.join(", "))
            };
            report.field(
                label,
                format!("nics[{nic}].network"),
                format!(
                    "{name:?} is not a network of this layout ({fix}); or add a [[network]] \
                     table with name = {name:?}"
                ),
            );
        }
        None
    }

    /// Checks the MAC of NIC `nic` of the partition at index `partition` (`given`, else its
    /// default) and records it as taken; `None` if reported.
    fn take_mac(
        &mut self,
        partition: usize,
        nic: usize,
        label: &PartitionLabel,
        given: Option<[u8; 6]>,
        report: &mut Report,
    ) -> Option<[u8; 6]> {
        // The field at fault, how the error names the MAC, how another error names this NIC.
        let (mac, field, what, whose) = match given {
            Some(mac) => {
                let field = format!("nics[{nic}].mac");
                let shown = mac_string(mac);
                if mac[0] & 1 != 0 {
                    report.field(
                        label,
                        field,
                        format!(
                            "{shown} is a multicast address (bit 0 of the first octet is set); \
                             a NIC needs a unicast one, like \"02:12:34:56:78:9a\""
                        ),
                    );
                    return None;
                }
                if mac == [0; 6] {
                    report.field(
                        label,
                        field,
                        format!(
                            "{shown} is no NIC's address; give another, like \
                             \"02:12:34:56:78:9a\", or leave `mac` out for the default"
                        ),
                    );
                    return None;
                }
                (mac, field.clone(), shown, field)
            }
            // Past the limits (already reported) the indices may not fit the default's
            // octets: such a NIC gets none.
            None if partition >= MAX_PARTITIONS || nic >= MAX_NICS_PER_PARTITION => return None,
            None => {
                let mac = default_mac(partition, nic);
                let what = format!("its default MAC {}", mac_string(mac));
                let whose = format!("nics[{nic}] (by default)");
                (mac, format!("nics[{nic}]"), what, whose)
            }
        };
        if let Some((owner, owner_nic)) = self.macs.get(&mac) {
            report.field(
                label,
                field,
                format!(
                    "{what} is already the MAC of {owner} {owner_nic}; each NIC needs a MAC of \
                     its own: give one of them another `mac`"
                ),
            );
            return None;
        }
        self.macs.insert(mac, (label.clone(), whose));
        Some(mac)
    }

    /// Reports every network that joins fewer than two partitions (unless some partition's
    /// NICs were unreadable, which would make the count wrong).
    pub(crate) fn check_members(&self, report: &mut Report) {
        if !self.all_members_known {
            return;
        }
        for (network, members) in self.networks.iter().zip(&self.members) {
            let label = NetworkLabel::Name(network.name.clone());
            let fix = "a network joins at least two partitions";
            match members.as_slice() {
                [] => report.network(
                    &label,
                    None,
                    format!(
                        "no partition joins it; {fix}: give two partitions a NIC on it \
                         (nics = [{{ network = {:?} }}]), or remove it",
                        network.name
                    ),
                ),
                [only] => report.network(
                    &label,
                    None,
                    format!(
                        "only {only} joins it; {fix}: give another partition a NIC on it, or \
                         remove it"
                    ),
                ),
                _ => {}
            }
        }
    }

    /// The checked networks, in file order.
    pub(crate) fn into_checked(self) -> Vec<CheckedNetwork> {
        self.networks
    }
}

#[cfg(test)]
mod tests;
