//! The network and NIC rules one by one, on [`Networks`] directly (no layout file, no images).

use super::*;
use crate::host::parse::{nic_list, parse_mac};

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
    assert_eq!(mac_string(mac), "02:ab:cd:00:7f:9a");
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
