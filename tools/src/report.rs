//! Reading the `@nv` boot report out of a console log.

use serde_json::Value;

/// The prefix of every report line.
pub const PREFIX: &str = "@nv ";

/// Every `@nv` object in `lines`, in order; lines that fail to parse are returned as errors.
pub fn parse(lines: &[String]) -> Vec<Result<Value, String>> {
    lines
        .iter()
        .filter_map(|l| l.find(PREFIX).map(|i| &l[i + PREFIX.len()..]))
        .map(|json| serde_json::from_str(json.trim_end()).map_err(|e| format!("{e}: {json}")))
        .collect()
}

/// The report's events, parsed.
pub struct Report {
    pub events: Vec<Value>,
}

impl Report {
    /// Parses every report line; fails on a line that is not JSON or lacks `"v":1`.
    pub fn from_lines(lines: &[String]) -> Result<Report, String> {
        let mut events = Vec::new();
        for parsed in parse(lines) {
            let value = parsed?;
            if value.get("v") != Some(&Value::from(1)) {
                return Err(format!("report line without \"v\":1: {value}"));
            }
            events.push(value);
        }
        Ok(Report { events })
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["event"] == name)
    }
}
