//! TOML into the raw form: every `[[partition]]` table read field by field, so that one bad
//! field does not hide the others. Unknown keys are refused: a partition's keys against
//! [`PARTITION_KEYS`], the entries of `vcpus`, `memory` and `nics` by serde's
//! `deny_unknown_fields`. The `[[network]]` tables and the NICs' own fields are read in
//! [`network`](super::network).
//! What a field *means* (limits, overlaps, pools) is [`check`](super::check)'s job; here a
//! field is either read into its raw type, or reported and left `None`.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use numavisor_policy::pci::PciAddress;

use super::error::{PartitionLabel, Report};
use super::size::parse_size;
use super::toml_value::a_type;
use super::PoolCheck;
use crate::{BlockSize, ConsoleMode, ExitAction, VnodeSpec};

/// The keys a `[[partition]]` table may hold.
pub(crate) const PARTITION_KEYS: [&str; 18] = [
    "name",
    "image",
    "initrd",
    "command_line",
    "vcpus",
    "memory",
    "pool",
    "max_page",
    "on_fault",
    "on_shutdown",
    "pool_check",
    "time_limit",
    "restart_limit",
    "parent",
    "dynamic",
    "console",
    "nics",
    "pci",
];

/// One partition as written, each field `None` if missing or unreadable (and then reported),
/// or defaulted if optional.
#[derive(Debug)]
pub(crate) struct RawPartition {
    pub(crate) label: PartitionLabel,
    pub(crate) name: Option<String>,
    pub(crate) image: Option<String>,
    /// `Some(None)`: no `initrd` key.
    pub(crate) initrd: Option<Option<String>>,
    pub(crate) command_line: Option<String>,
    pub(crate) vcpus: Option<Vec<RawVcpuGroup>>,
    pub(crate) memory: Option<Vec<VnodeSpec>>,
    pub(crate) pool: Option<u64>,
    pub(crate) max_page: Option<BlockSize>,
    pub(crate) on_fault: Option<ExitAction>,
    pub(crate) on_shutdown: Option<ExitAction>,
    pub(crate) pool_check: Option<PoolCheck>,
    /// `Some(None)`: no `time_limit` key.
    pub(crate) time_limit_ms: Option<Option<u64>>,
    pub(crate) restart_limit: Option<u32>,
    /// `Some(None)`: no `parent` key. Whether the name exists, and cycles, are checked once
    /// every partition is read.
    pub(crate) parent: Option<Option<String>>,
    pub(crate) dynamic: Option<bool>,
    pub(crate) console: Option<ConsoleMode>,
    /// Empty if there is no `nics` key. Networks, MACs and limits are checked once the
    /// networks are known.
    pub(crate) nics: Option<Vec<RawNic>>,
    /// Empty if there is no `pci` key. Each address is well formed; that no function is
    /// named twice is checked once every partition is read.
    pub(crate) pci: Option<Vec<PciAddress>>,
}

/// One entry of `vcpus`, shape checked (by node, or by APIC IDs), meaning not yet.
#[derive(Debug)]
pub(crate) enum RawVcpuGroup {
    OnNode {
        node: u32,
        count: u32,
        vnode: Option<u32>,
    },
    ApicIds {
        ids: Vec<u32>,
        vnode: Option<u32>,
    },
}

/// An entry of `vcpus` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VcpuEntry {
    node: Option<u32>,
    count: Option<u32>,
    apic_ids: Option<Vec<u32>>,
    vnode: Option<u32>,
}

/// What `memory_min` / `memory_max` read as when a vnode does not give them (no size is
/// `u64::MAX - 1` or `u64::MAX`: sizes are checked against the partition limit).
pub(crate) const UNSET_MIN: u64 = u64::MAX - 1;
pub(crate) const UNSET_MAX: u64 = u64::MAX;

/// An entry of `memory` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryEntry {
    size: toml::Value,
    node: u32,
    memory_min: Option<toml::Value>,
    memory_max: Option<toml::Value>,
}

/// The whole file, down to its `[[partition]]` and `[[network]]` tables (each numbered in
/// file order), and its `boot_options` (empty if absent or bad; see [`boot_options_of`]).
pub(crate) fn parse_document(text: &str, report: &mut Report) -> Document {
    let mut document = Document {
        partitions: None,
        networks: None,
        boot_options: String::new(),
    };
    let mut table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(error) => {
            let error: toml::de::Error = error;
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            report.syntax(
                line,
                column,
                format!("TOML syntax: {}", error.message().trim_end()),
            );
            return document;
        }
    };
    let partitions = table.remove("partition");
    let networks = table.remove("network");
    if let Some(value) = table.remove(BOOT_OPTIONS_KEY) {
        document.boot_options = boot_options_of(&value, report);
    }
    for key in table.keys() {
        report.layout(format!(
            "unknown top-level key `{key}`; a layout holds `{BOOT_OPTIONS_KEY}`, [[network]] \
             and [[partition]] tables"
        ));
    }
    document.partitions = tables_of("partition", partitions, report);
    document.networks = tables_of("network", networks, report);
    document
}

/// What [`parse_document`] read. `None` means nothing could be read (a syntax error,
/// `partition` or `network` not a list); an empty list means the file has no such table.
pub(crate) struct Document {
    pub(crate) partitions: Option<Vec<(usize, toml::Table)>>,
    pub(crate) networks: Option<Vec<(usize, toml::Table)>>,
    pub(crate) boot_options: String,
}

/// The `[[key]]` tables of the file, each with its index in the list; entries that are not
/// tables are reported and left out.
fn tables_of(
    key: &str,
    value: Option<toml::Value>,
    report: &mut Report,
) -> Option<Vec<(usize, toml::Table)>> {
    let entries = match value {
        None => return Some(Vec::new()),
        Some(toml::Value::Array(entries)) => entries,
        Some(other) => {
            report.layout(format!(
                "`{key}` is {}; write each {key} as a [[{key}]] table",
                a_type(&other)
            ));
            return None;
        }
    };
    let mut tables = Vec::with_capacity(entries.len());
    for (index, value) in entries.into_iter().enumerate() {
        match value {
            toml::Value::Table(table) => tables.push((index, table)),
            other => report.layout(format!(
                "{key}[{index}] is {}; write each {key} as a [[{key}]] table",
                a_type(&other)
            )),
        }
    }
    Some(tables)
}

/// The top-level key with the hypervisor's default command line.
pub(crate) const BOOT_OPTIONS_KEY: &str = "boot_options";
/// The longest `boot_options` (the firmware reads command lines up to 4 KiB).
pub(crate) const MAX_BOOT_OPTIONS: usize = 4096;

/// The top-level `boot_options` value: printable ASCII, at most [`MAX_BOOT_OPTIONS`] bytes.
/// Bad values are reported (and read as empty).
fn boot_options_of(value: &toml::Value, report: &mut Report) -> String {
    match value {
        toml::Value::String(options) => {
            if options.len() > MAX_BOOT_OPTIONS {
                report.layout(format!(
                    "`{BOOT_OPTIONS_KEY}` is {} bytes; at most {MAX_BOOT_OPTIONS}",
                    options.len()
                ));
                String::new()
            } else if !options.bytes().all(|b| (0x20..0x7F).contains(&b)) {
                report.layout(format!(
                    "`{BOOT_OPTIONS_KEY}` must be printable ASCII (words such as `exit=partitions log=debug`)"
                ));
                String::new()
            } else {
                options.clone()
            }
        }
        other => {
            report.layout(format!(
                "`{BOOT_OPTIONS_KEY}` is {}; write it as a string",
                a_type(other)
            ));
            String::new()
        }
    }
}

/// One `[[partition]]` table into the raw form, reporting what cannot be read.
pub(crate) fn parse_partition(
    index: usize,
    mut table: toml::Table,
    report: &mut Report,
) -> RawPartition {
    let label = match table.get("name") {
        Some(toml::Value::String(name)) => PartitionLabel::Name(name.clone()),
        _ => PartitionLabel::Index(index),
    };
    let unknown: Vec<String> = table
        .keys()
        .filter(|key| !PARTITION_KEYS.contains(&key.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        table.remove(&key);
        report.field(
            &label,
            key.as_str(),
            format!(
                "unknown key; a partition has {}",
                PARTITION_KEYS.map(|k| format!("`{k}`")).join(", ")
            ),
        );
    }
    let mut fields = Fields {
        table,
        label: &label,
        report,
    };
    let name = fields.required("name", "name = \"data-plane\"", typed);
    let image = fields.required("image", "image = \"test-guest\"", typed);
    let initrd = fields.optional("initrd", some_string, None);
    let command_line = fields.optional("command_line", typed, String::new());
    let vcpus = fields.required("vcpus", "vcpus = [{ node = 0, count = 1 }]", vcpu_groups);
    let memory = fields.required("memory", "memory = [{ size = \"64M\", node = 0 }]", vnodes);
    let pool = fields.required("pool", "pool = \"256K\"", |_, v| parse_size(v));
    let max_page = fields.optional("max_page", page_size, BlockSize::Size2M);
    let on_fault = fields.optional("on_fault", exit_action, ExitAction::Stop);
    let on_shutdown = fields.optional("on_shutdown", exit_action, ExitAction::Stop);
    let pool_check = fields.optional("pool_check", pool_check, PoolCheck::Build);
    let time_limit_ms = fields.optional("time_limit", time_limit, None);
    let restart_limit = fields.optional("restart_limit", restart_limit, DEFAULT_RESTART_LIMIT);
    let parent = fields.optional("parent", some_string, None);
    let dynamic = fields.optional("dynamic", typed, false);
    let console = fields.optional("console", console_mode, ConsoleMode::Escaped);
    let nics = fields.optional("nics", nic_list, Vec::new());
    let pci = fields.optional("pci", pci_list, Vec::new());
    RawPartition {
        label,
        name,
        image,
        initrd,
        command_line,
        vcpus,
        memory,
        pool,
        max_page,
        on_fault,
        on_shutdown,
        pool_check,
        time_limit_ms,
        restart_limit,
        parent,
        dynamic,
        console,
        nics,
        pci,
    }
}

/// Why a field could not be read, and the field path if narrower than the key (`vcpus[1]`
/// rather than `vcpus`).
pub(crate) struct FieldError {
    path: Option<String>,
    message: String,
}

impl From<String> for FieldError {
    fn from(message: String) -> Self {
        FieldError {
            path: None,
            message,
        }
    }
}

/// One partition's table, consumed field by field.
struct Fields<'a> {
    table: toml::Table,
    label: &'a PartitionLabel,
    report: &'a mut Report,
}

impl Fields<'_> {
    fn required<T, E: Into<FieldError>>(
        &mut self,
        key: &'static str,
        example: &str,
        read: fn(&str, &toml::Value) -> Result<T, E>,
    ) -> Option<T> {
        match self.table.get(key) {
            Some(value) => self.read(key, value.clone(), read),
            None => {
                self.report
                    .field(self.label, key, format!("missing; add e.g. {example}"));
                None
            }
        }
    }

    fn optional<T, E: Into<FieldError>>(
        &mut self,
        key: &'static str,
        read: fn(&str, &toml::Value) -> Result<T, E>,
        default: T,
    ) -> Option<T> {
        match self.table.get(key) {
            Some(value) => self.read(key, value.clone(), read),
            None => Some(default),
        }
    }

    fn read<T, E: Into<FieldError>>(
        &mut self,
        key: &'static str,
        value: toml::Value,
        read: fn(&str, &toml::Value) -> Result<T, E>,
    ) -> Option<T> {
        match read(key, &value) {
            Ok(value) => Some(value),
            Err(error) => {
                let error = error.into();
                let path = error.path.unwrap_or_else(|| key.to_string());
                self.report.field(self.label, path, error.message);
                None
            }
        }
    }
}

/// A value of a plain serde type (string, integer list), with serde's message.
pub(crate) fn typed<T: DeserializeOwned>(_key: &str, value: &toml::Value) -> Result<T, String> {
    value.clone().try_into().map_err(|e| serde_message(&e))
}

/// An optional string key that is present.
fn some_string(key: &str, value: &toml::Value) -> Result<Option<String>, String> {
    typed(key, value).map(Some)
}

fn vcpu_groups(key: &str, value: &toml::Value) -> Result<Vec<RawVcpuGroup>, FieldError> {
    let example = "[{ node = 0, count = 1 }] or [{ apic_ids = [2, 3] }]";
    each_entry(key, value, example, |entry| {
        let entry: VcpuEntry = typed("", entry)?;
        let vnode = entry.vnode;
        match (entry.node, entry.count, entry.apic_ids) {
            (Some(node), Some(count), None) => Ok(RawVcpuGroup::OnNode { node, count, vnode }),
            (None, None, Some(ids)) => Ok(RawVcpuGroup::ApicIds { ids, vnode }),
            (_, _, Some(_)) => {
                Err("give either `node` and `count`, or `apic_ids`, not both".into())
            }
            (Some(_), None, None) => Err("`node` without `count`; add e.g. count = 1".into()),
            (None, Some(_), None) => Err("`count` without `node`; add e.g. node = 0".into()),
            (None, None, None) => {
                Err("empty group; write { node = 0, count = 1 } or { apic_ids = [2, 3] }".into())
            }
        }
    })
}

fn vnodes(key: &str, value: &toml::Value) -> Result<Vec<VnodeSpec>, FieldError> {
    let example = "[{ size = \"64M\", node = 0 }]";
    each_entry(key, value, example, |entry| {
        let entry: MemoryEntry = typed("", entry)?;
        let size = parse_size(&entry.size).map_err(|e| EntryError::at("size", e))?;
        let bound = |value: &Option<toml::Value>, name: &'static str, default: u64| match value {
            Some(value) => parse_size(value).map_err(|e| EntryError::at(name, e)),
            None => Ok(default),
        };
        // Unset bounds: checked against `dynamic` once the whole partition is read.
        let min = bound(&entry.memory_min, "memory_min", UNSET_MIN)?;
        let max = bound(&entry.memory_max, "memory_max", UNSET_MAX)?;
        Ok(VnodeSpec {
            size,
            node: entry.node,
            min,
            max,
        })
    })
}

/// Why one entry of an array field could not be read: what is wrong, and the entry's field at
/// fault when the error is about one (`size` of `memory[1]`).
pub(crate) struct EntryError {
    field: Option<&'static str>,
    message: String,
}

impl EntryError {
    /// An error about the entry's `field`.
    pub(crate) fn at(field: &'static str, message: String) -> Self {
        EntryError {
            field: Some(field),
            message,
        }
    }
}

impl From<String> for EntryError {
    fn from(message: String) -> Self {
        EntryError {
            field: None,
            message,
        }
    }
}

impl From<&str> for EntryError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Reads every entry of an array field; the first bad entry is reported as `key[i]`, or
/// `key[i].field` when the error names a field of the entry.
pub(crate) fn each_entry<T>(
    key: &str,
    value: &toml::Value,
    example: &str,
    read: impl Fn(&toml::Value) -> Result<T, EntryError>,
) -> Result<Vec<T>, FieldError> {
    let toml::Value::Array(entries) = value else {
        return Err(format!("expected a list like {example}, found {}", a_type(value)).into());
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        match read(entry) {
            Ok(item) => out.push(item),
            Err(EntryError { field, message }) => {
                let path = match field {
                    Some(field) => format!("{key}[{i}].{field}"),
                    None => format!("{key}[{i}]"),
                };
                return Err(FieldError {
                    path: Some(path),
                    message,
                });
            }
        }
    }
    Ok(out)
}

fn page_size(_key: &str, value: &toml::Value) -> Result<BlockSize, String> {
    let bytes = parse_size(value)?;
    BlockSize::ALL
        .into_iter()
        .find(|size| size.bytes() == bytes)
        .ok_or_else(|| format!("{value} is not a page size; use \"4K\", \"2M\" or \"1G\""))
}

fn exit_action(_key: &str, value: &toml::Value) -> Result<ExitAction, String> {
    one_of(
        value,
        "an action",
        &[("stop", ExitAction::Stop), ("restart", ExitAction::Restart)],
    )
}

fn console_mode(_key: &str, value: &toml::Value) -> Result<ConsoleMode, String> {
    one_of(
        value,
        "a console mode",
        &[("escaped", ConsoleMode::Escaped), ("raw", ConsoleMode::Raw)],
    )
}

/// The choice `value` names among `choices`, or an error saying it is not `what` and listing
/// them: `"halt" is not an action; use "stop" or "restart"`.
fn one_of<T: Copy>(value: &toml::Value, what: &str, choices: &[(&str, T)]) -> Result<T, String> {
    if let Some(&(_, choice)) = choices
        .iter()
        .find(|(name, _)| Some(*name) == value.as_str())
    {
        return Ok(choice);
    }
    let names: Vec<String> = choices
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    let listed = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("{value} is not {what}; use {listed}"))
}

/// How often a partition may restart when the layout does not say.
pub const DEFAULT_RESTART_LIMIT: u32 = 8;
/// The most restarts a layout may allow.
pub const MAX_RESTART_LIMIT: u32 = 100_000;

/// `restart_limit = 100`: how many restarts `on_fault`/`on_shutdown = "restart"` may make.
fn restart_limit(_key: &str, value: &toml::Value) -> Result<u32, String> {
    value
        .as_integer()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= MAX_RESTART_LIMIT)
        .ok_or_else(|| format!("{value} is not a restart count from 0 to {MAX_RESTART_LIMIT}"))
}

/// `time_limit = "30s"` (or `"500ms"`, `"2m"`): at least 1 ms, at most a day.
fn time_limit(_key: &str, value: &toml::Value) -> Result<Option<u64>, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{value} is not a duration; write e.g. \"30s\" or \"500ms\""))?;
    let (digits, unit_ms) = if let Some(d) = text.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = text.strip_suffix('s') {
        (d, 1_000)
    } else if let Some(d) = text.strip_suffix('m') {
        (d, 60_000)
    } else {
        return Err(format!(
            "{value} has no unit; write e.g. \"30s\", \"500ms\" or \"2m\""
        ));
    };
    let ms = digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .ok_or_else(|| format!("{value} is not a duration; write e.g. \"30s\" or \"500ms\""))?;
    if !(1..=86_400_000).contains(&ms) {
        return Err(format!("{value} is outside 1 ms ..= 24 h"));
    }
    Ok(Some(ms))
}

fn pool_check(_key: &str, value: &toml::Value) -> Result<PoolCheck, String> {
    match value.as_str() {
        Some("build") => Ok(PoolCheck::Build),
        Some("boot") => Ok(PoolCheck::Boot),
        _ => Err(format!(
            "{value} is not a pool check; use \"build\" (the default) or \"boot\""
        )),
    }
}

/// serde's message in the layout's words: TOML has keys, not fields.
fn serde_message(error: &toml::de::Error) -> String {
    error
        .message()
        .trim_end()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
    }

    #[test]
    fn every_known_key_is_read() {
        // A partition holding every key in PARTITION_KEYS reports nothing unknown.
        let text = r#"
            [[partition]]
            name = "a"
            image = "g"
            initrd = "i"
            command_line = ""
            vcpus = [{ node = 0, count = 1 }]
            memory = [{ size = "64M", node = 0 }]
            pool = "256K"
            max_page = "2M"
            on_fault = "stop"
            on_shutdown = "restart"
            pool_check = "build"
            nics = [{ network = "lan", mac = "02:00:00:00:00:01" }]
        "#;
        let mut report = Report::new("x.toml".into());
        let mut tables = parse_document(text, &mut report).partitions.unwrap();
        assert_eq!(tables.len(), 1);
        let (index, table) = tables.pop().unwrap();
        let raw = parse_partition(index, table, &mut report);
        assert!(report.is_empty(), "{}", report.into_errors());
        assert_eq!(raw.on_shutdown, Some(ExitAction::Restart));
    }

    #[test]
    fn boot_options_are_printable_words_or_reported() {
        let options = |text: &str| {
            let mut report = Report::new("x.toml".into());
            let document = parse_document(text, &mut report);
            let errors = (!report.is_empty()).then(|| report.into_errors().to_string());
            (document.boot_options, errors)
        };
        let text = "boot_options = \"exit=partitions log=debug\"\n[[partition]]\nname = \"a\"\n";
        assert_eq!(options(text), ("exit=partitions log=debug".into(), None));
        assert_eq!(options("").0, "");
        let long = format!("boot_options = \"{}\"", "a".repeat(MAX_BOOT_OPTIONS + 1));
        for bad in [
            "boot_options = 3",
            "boot_options = \"tab\\there\"",
            long.as_str(),
        ] {
            let (value, errors) = options(bad);
            assert_eq!(value, "", "{bad}");
            assert!(errors.is_some_and(|e| e.contains("boot_options")), "{bad}");
        }
    }
}

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

/// An entry of `pci` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PciEntry {
    host: String,
}

/// The partition key `pci = [{ host = "0000:03:00.0" }, { host = "04:00.0" }]`: host
/// functions by address, the segment optional (0).
pub(crate) fn pci_list(key: &str, value: &toml::Value) -> Result<Vec<PciAddress>, FieldError> {
    let example = "[{ host = \"0000:03:00.0\" }]";
    each_entry(key, value, example, |entry| {
        let entry: PciEntry = typed("", entry)?;
        entry
            .host
            .parse::<PciAddress>()
            .map_err(|e| EntryError::at("host", format!("{:?}: {e}", entry.host)))
    })
}
