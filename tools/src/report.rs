//! Reading the `@nv` boot report out of a console log.

use serde_json::Value;

/// The prefix of every report line.
pub const PREFIX: &str = "@nv ";

/// Every `@nv` object in `lines`, in order; lines that fail to parse are returned as errors.
/// A report line starts with [`PREFIX`] (after whatever terminal escapes the firmware before
/// us left on the line): `@nv` further into a line is text, such as a guest's console line
/// (`[name] …`), and never an event.
pub fn parse(lines: &[String]) -> Vec<Result<Value, String>> {
    lines
        .iter()
        .filter_map(|l| report_json(l))
        .map(|json| serde_json::from_str(json.trim_end()).map_err(|e| format!("{e}: {json}")))
        .collect()
}

/// The JSON of a report line, if `line` is one.
fn report_json(line: &str) -> Option<&str> {
    skip_terminal_escapes(line).strip_prefix(PREFIX)
}

/// `line` past the control characters and ANSI escape sequences (`ESC [ … final byte`) it
/// starts with: what firmware such as OVMF leaves before the first line of ours.
fn skip_terminal_escapes(mut line: &str) -> &str {
    loop {
        if let Some(rest) = line.strip_prefix("\x1b[") {
            // Parameters and intermediates, then one final byte in 0x40..=0x7E.
            let end = rest
                .char_indices()
                .find(|&(_, c)| ('\x40'..='\x7e').contains(&c))
                .map_or(rest.len(), |(i, c)| i + c.len_utf8());
            line = &rest[end..];
        } else if let Some(c) = line.chars().next().filter(|c| c.is_control()) {
            line = &line[c.len_utf8()..];
        } else {
            return line;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn events(lines: &[&str]) -> Vec<Value> {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        parse(&lines).into_iter().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn report_lines_start_with_the_prefix() {
        let found = events(&[
            "@nv {\"v\":1,\"event\":\"ready\"}",
            "\x1b[2J\x1b[01;01H@nv {\"v\":1,\"event\":\"after-ovmf\"}",
            "[alpha] @nv {\"v\":1,\"event\":\"forged\"}",
            "guest: x @nv {\"v\":1,\"event\":\"forged\"}",
            "[    0.1] INFO  ready",
        ]);
        let names: Vec<&str> = found.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["ready", "after-ovmf"]);
    }
}
