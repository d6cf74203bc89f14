//! Networks and NICs (`docs/layout.md`, "Networks"): the `[[network]]` tables read and
//! checked (named as partitions are, unique, at most [`MAX_NETWORKS`]), each partition's
//! `nics` read into the raw form, then checked against the networks: the network exists and
//! the partition joins it once, at most [`MAX_NICS_PER_PARTITION`] NICs, each MAC unicast and
//! unique in the layout ([`default_mac`] where none is given). Once every partition is read,
//! each network must join at least two partitions.

use std::collections::HashMap;

use serde::Deserialize;

use super::check::name_problem;
use super::error::{NetworkLabel, PartitionLabel, Report};
use super::parse::{each_entry, typed, EntryError, FieldError};
use super::CheckedNetwork;
use crate::limits::{MAX_NETWORKS, MAX_NICS_PER_PARTITION, MAX_PARTITIONS};
use crate::{default_mac, NicSpec};

/// The keys a `[[network]]` table may hold.
pub(crate) const NETWORK_KEYS: [&str; 1] = ["name"];

/// One entry of `nics` as written: the network by name (not yet looked up), and the MAC if
/// the entry gives one (well formed, not yet checked for use).
#[derive(Debug)]
pub(crate) struct RawNic {
    pub(crate) network: String,
    pub(crate) mac: Option<[u8; 6]>,
}

/// An entry of `nics` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicEntry {
    network: String,
    mac: Option<String>,
}

/// The partition key `nics = [{ network = "lan" }, { network = "dmz", mac = "…" }]`.
pub(crate) fn nic_list(key: &str, value: &toml::Value) -> Result<Vec<RawNic>, FieldError> {
    let example = "[{ network = \"lan\" }]";
    each_entry(key, value, example, |entry| {
        let entry: NicEntry = typed("", entry)?;
        let mac = match entry.mac.as_deref() {
            Some(text) => Some(parse_mac(text).map_err(|e| EntryError::at("mac", e))?),
            None => None,
        };
        Ok(RawNic {
            network: entry.network,
            mac,
        })
    })
}

/// `"02:12:34:56:78:9a"` (hex digits in either case) as its six octets.
pub(crate) fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let malformed = || {
        format!(
            "{text:?} is not a MAC address; write six two-digit hex octets separated by ':', \
             like \"02:12:34:56:78:9a\""
        )
    };
    let mut octets = text.split(':');
    let mut mac = [0u8; 6];
    for octet in &mut mac {
        let digits = octets
            .next()
            .filter(|d| d.len() == 2 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(malformed)?;
        *octet = u8::from_str_radix(digits, 16).map_err(|_| malformed())?;
    }
    match octets.next() {
        Some(_) => Err(malformed()),
        None => Ok(mac),
    }
}

/// A MAC address as a layout writes it: `02:6e:76:00:00:01`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.map(|octet| format!("{octet:02x}")).join(":")
}

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
                let shown = format_mac(&mac);
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
                let what = format!("its default MAC {}", format_mac(&mac));
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
mod tests {
    use super::*;

    /// The networks of `text` (a layout's `[[network]]` tables) and the report so far.
    fn read(text: &str) -> (Networks, Report) {
        let mut report = Report::new("x.toml".into());
        let mut table: toml::Table = text.parse().unwrap();
        let tables = match table.remove("network") {
            Some(toml::Value::Array(entries)) => entries
                .into_iter()
                .enumerate()
                .map(|(i, entry)| (i, entry.as_table().unwrap().clone()))
                .collect(),
            _ => Vec::new(),
        };
        (Networks::read(Some(tables), &mut report), report)
    }

    fn lan_and_dmz() -> (Networks, Report) {
        read("[[network]]\nname = \"lan\"\n[[network]]\nname = \"dmz\"\n")
    }

    fn nic(network: &str, mac: Option<[u8; 6]>) -> RawNic {
        RawNic {
            network: network.into(),
            mac,
        }
    }

    fn label(name: &str) -> PartitionLabel {
        PartitionLabel::Name(name.into())
    }

    fn lines(report: Report) -> Vec<String> {
        report
            .into_errors()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn default_macs_number_partition_and_nic_in_file_order() {
        assert_eq!(default_mac(3, 1), [0x02, 0x6E, 0x76, 0x00, 0x03, 0x01]);
        let (mut networks, mut report) = lan_and_dmz();
        let a = [nic("lan", None), nic("dmz", None)];
        let b = [nic("dmz", Some([0x02, 0, 0, 0, 0, 9])), nic("lan", None)];
        let a = networks
            .check_nics(0, &label("a"), &a, &mut report)
            .unwrap();
        let b = networks
            .check_nics(1, &label("b"), &b, &mut report)
            .unwrap();
        networks.check_members(&mut report);
        assert!(report.is_empty(), "{}", report.into_errors());
        let mac = |partition, nic| default_mac(partition, nic);
        assert_eq!(
            [a, b].concat(),
            [
                NicSpec {
                    network: 0,
                    mac: mac(0, 0)
                },
                NicSpec {
                    network: 1,
                    mac: mac(0, 1)
                },
                NicSpec {
                    network: 1,
                    mac: [0x02, 0, 0, 0, 0, 9]
                },
                NicSpec {
                    network: 0,
                    mac: mac(1, 1)
                },
            ]
        );
        let names: Vec<String> = networks
            .into_checked()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["lan", "dmz"]);
    }

    #[test]
    fn a_nic_names_a_network_of_the_layout() {
        let (mut networks, mut report) = lan_and_dmz();
        let nics = [nic("lan", None), nic("wan", None)];
        assert!(networks
            .check_nics(0, &label("a"), &nics, &mut report)
            .is_none());
        let (mut none, _) = read("");
        none.check_nics(0, &label("b"), &[nic("lan", None)], &mut report);
        assert_eq!(
            lines(report),
            [
                "x.toml: partition \"a\": field nics[1].network: \"wan\" is not a network of this \
                 layout (use one of \"lan\", \"dmz\"); or add a [[network]] table with name = \"wan\"",
                "x.toml: partition \"b\": field nics[0].network: \"lan\" is not a network of this \
                 layout (the layout has none); or add a [[network]] table with name = \"lan\"",
            ]
        );
    }

    #[test]
    fn a_partition_joins_a_network_once() {
        let (mut networks, mut report) = lan_and_dmz();
        let nics = [nic("lan", None), nic("dmz", None), nic("lan", None)];
        assert!(networks
            .check_nics(0, &label("a"), &nics, &mut report)
            .is_none());
        assert_eq!(
            lines(report),
            [
                "x.toml: partition \"a\": field nics[2].network: the partition already joins \
              \"lan\" through nics[0]; a partition joins a network once"
            ]
        );
        assert_eq!(networks.members[0], [label("a")], "counted once");
    }

    #[test]
    fn at_most_four_nics() {
        let text: String = (0..5)
            .map(|i| format!("[[network]]\nname = \"n{i}\"\n"))
            .collect();
        let (mut networks, mut report) = read(&text);
        let nics: Vec<RawNic> = (0..5).map(|i| nic(&format!("n{i}"), None)).collect();
        assert_eq!(
            networks
                .check_nics(0, &label("a"), &nics[..4], &mut report)
                .map(|n| n.len()),
            Some(4)
        );
        assert!(networks
            .check_nics(1, &label("b"), &nics, &mut report)
            .is_none());
        assert_eq!(
            lines(report),
            ["x.toml: partition \"b\": field nics: 5 NICs; a partition has at most 4"]
        );
    }

    #[test]
    fn multicast_and_zero_macs_are_refused() {
        let (mut networks, mut report) = lan_and_dmz();
        let nics = [
            nic("lan", Some([0x01, 0x00, 0x5E, 0, 0, 1])),
            nic("dmz", Some([0xFF; 6])),
        ];
        assert!(networks
            .check_nics(0, &label("a"), &nics, &mut report)
            .is_none());
        let zero = [nic("lan", Some([0; 6]))];
        assert!(networks
            .check_nics(1, &label("b"), &zero, &mut report)
            .is_none());
        let lines = lines(report);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with(
            "x.toml: partition \"a\": field nics[0].mac: 01:00:5e:00:00:01 is a multicast address"
        ));
        assert!(lines[1].contains("field nics[1].mac: ff:ff:ff:ff:ff:ff is a multicast address"));
        assert!(lines[2].contains("field nics[0].mac: 00:00:00:00:00:00 is no NIC's address"));
    }

    #[test]
    fn macs_are_unique_whether_given_or_default() {
        let (mut networks, mut report) = lan_and_dmz();
        let given = [0x02, 0x12, 0x34, 0x56, 0x78, 0x9A];
        // a: a given MAC, and nics[1]'s default. b: both again, given.
        let a = [nic("lan", Some(given)), nic("dmz", None)];
        let b = [nic("lan", Some(given)), nic("dmz", Some(default_mac(0, 1)))];
        networks
            .check_nics(0, &label("a"), &a, &mut report)
            .unwrap();
        assert!(networks
            .check_nics(1, &label("b"), &b, &mut report)
            .is_none());
        // c's default (partition 2, NIC 0) was given to d's NIC first.
        let (mut later, _) = lan_and_dmz();
        let d = [nic("lan", Some(default_mac(2, 0)))];
        later.check_nics(0, &label("d"), &d, &mut report).unwrap();
        assert!(later
            .check_nics(2, &label("c"), &[nic("lan", None)], &mut report)
            .is_none());
        let own = "each NIC needs a MAC of its own: give one of them another `mac`";
        assert_eq!(
            lines(report),
            [
                format!("x.toml: partition \"b\": field nics[0].mac: 02:12:34:56:78:9a is already the MAC of partition \"a\" nics[0].mac; {own}"),
                format!("x.toml: partition \"b\": field nics[1].mac: 02:6e:76:00:00:01 is already the MAC of partition \"a\" nics[1] (by default); {own}"),
                format!("x.toml: partition \"c\": field nics[0]: its default MAC 02:6e:76:00:02:00 is already the MAC of partition \"d\" nics[0].mac; {own}"),
            ]
        );
    }

    #[test]
    fn a_network_joins_at_least_two_partitions() {
        let (mut networks, mut report) = lan_and_dmz();
        networks.check_nics(0, &label("a"), &[nic("lan", None)], &mut report);
        networks.check_members(&mut report);
        let lines = lines(report);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("x.toml: network \"lan\": only partition \"a\" joins it;"));
        assert!(lines[1].starts_with("x.toml: network \"dmz\": no partition joins it;"));
        // With some partition's NICs unreadable, members are not counted.
        let (mut networks, mut report) = lan_and_dmz();
        networks.nics_unreadable();
        networks.check_members(&mut report);
        assert!(report.is_empty());
    }

    #[test]
    fn network_names_are_checked_as_partition_names_and_unique() {
        let (networks, report) = read(
            "[[network]]\nname = \"lan\"\n[[network]]\nname = \"lan\"\n\
             [[network]]\nname = \"a b\"\n[[network]]\nname = 3\n\
             [[network]]\nname = \"dmz\"\nmtu = 9000\n",
        );
        assert_eq!(
            lines(report),
            [
                "x.toml: network \"lan\": field name: \"lan\" is already the name of network[0]; names must be unique",
                "x.toml: network \"a b\": field name: ' ' is not allowed; use lowercase letters, digits and '-', like \"data-plane\"",
                "x.toml: network[3]: field name: invalid type: integer `3`, expected a string",
                "x.toml: network \"dmz\": field mtu: unknown key; a network has `name`",
            ]
        );
        assert_eq!(networks.networks.len(), 3, "lan, a b, dmz");
    }

    #[test]
    fn at_most_64_networks() {
        let text = |count: usize| -> String {
            (0..count)
                .map(|i| format!("[[network]]\nname = \"n{i}\"\n"))
                .collect()
        };
        assert!(read(&text(64)).1.is_empty());
        assert_eq!(
            lines(read(&text(65)).1),
            ["x.toml: 65 networks; a layout holds at most 64"]
        );
    }

    #[test]
    fn nic_entries_read_network_and_mac() {
        let value: toml::Value = toml::from_str::<toml::Table>(
            "nics = [{ network = \"lan\" }, { network = \"dmz\", mac = \"02:AB:cd:00:00:01\" }]",
        )
        .unwrap()["nics"]
            .clone();
        let nics = nic_list("nics", &value).ok().unwrap();
        assert_eq!((nics[0].network.as_str(), nics[0].mac), ("lan", None));
        assert_eq!(nics[1].mac, Some([0x02, 0xAB, 0xCD, 0, 0, 1]));
    }

    #[test]
    fn macs_read_in_either_case_and_print_in_lowercase() {
        let mac = parse_mac("02:AB:cd:00:7f:9A").unwrap();
        assert_eq!(mac, [0x02, 0xAB, 0xCD, 0x00, 0x7F, 0x9A]);
        assert_eq!(format_mac(&mac), "02:ab:cd:00:7f:9a");
    }

    #[test]
    fn malformed_macs_are_refused() {
        for bad in [
            "",
            "02:12:34:56:78",
            "02:12:34:56:78:9a:bc",
            "02:12:34:56:78:9",
            "02:12:34:56:78:9g",
            "2:12:34:56:78:9a0",
            "+2:12:34:56:78:9a",
            "02-12-34-56-78-9a",
            "02:12:34:56:78:9a:",
        ] {
            let error = parse_mac(bad).unwrap_err();
            assert!(error.contains("is not a MAC address"), "{bad}: {error}");
        }
    }
}
