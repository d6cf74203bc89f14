//! A small JSON writer for `no_std`: nested objects and arrays of integers, strings and booleans.
//!
//! serde_json's writer needs `std`; the report only needs integers, strings and nesting, so a
//! closure-shaped writer keeps every event's code shaped like the JSON it prints.

use alloc::string::String;
use core::fmt::Write;

/// Serializes one object: `object(|o| { o.u64("a", 1); })` gives `{"a":1}`.
pub fn object(fill: impl FnOnce(&mut ObjectWriter)) -> String {
    let mut out = String::new();
    write_object(&mut out, fill);
    out
}

fn write_object(out: &mut String, fill: impl FnOnce(&mut ObjectWriter)) {
    out.push('{');
    fill(&mut ObjectWriter { out, first: true });
    out.push('}');
}

fn write_array(out: &mut String, fill: impl FnOnce(&mut ArrayWriter)) {
    out.push('[');
    fill(&mut ArrayWriter { out, first: true });
    out.push(']');
}

/// Writes `s` as a JSON string literal. Every control character (C0, DEL, C1) and the
/// Unicode line and paragraph separators are escaped, so a report line stays one line for
/// every reader, whatever a guest put in it.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The members of one object.
pub struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl ObjectWriter<'_> {
    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_string(self.out, key);
        self.out.push(':');
        self.out
    }

    /// `"key":value` for an unsigned integer.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        let _ = write!(out, "{value}");
        self
    }

    /// `"key":"value"`.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        write_string(out, value);
        self
    }

    /// `"key":value`, or `"key":null` for `None`.
    pub fn opt_u64(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(value) => self.u64(key, value),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    /// `"key":"value"`, or `"key":null` for `None`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.str(key, value),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    /// `"key":true|false`.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let out = self.key(key);
        out.push_str(if value { "true" } else { "false" });
        self
    }

    /// `"key":{...}`.
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut ObjectWriter)) -> &mut Self {
        let out = self.key(key);
        write_object(out, fill);
        self
    }

    /// `"key":[...]`.
    pub fn array(&mut self, key: &str, fill: impl FnOnce(&mut ArrayWriter)) -> &mut Self {
        let out = self.key(key);
        write_array(out, fill);
        self
    }
}

/// The elements of one array.
pub struct ArrayWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl ArrayWriter<'_> {
    fn next(&mut self) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out
    }

    /// An unsigned integer element.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        let out = self.next();
        let _ = write!(out, "{value}");
        self
    }

    /// A string element.
    pub fn str(&mut self, value: &str) -> &mut Self {
        let out = self.next();
        write_string(out, value);
        self
    }

    /// An object element.
    pub fn object(&mut self, fill: impl FnOnce(&mut ObjectWriter)) -> &mut Self {
        let out = self.next();
        write_object(out, fill);
        self
    }

    /// A nested array element.
    pub fn array(&mut self, fill: impl FnOnce(&mut ArrayWriter)) -> &mut Self {
        let out = self.next();
        write_array(out, fill);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_and_escapes() {
        let s = object(|o| {
            o.u64("v", 1)
                .str("event", "a\"b\\c\n\u{1}")
                .bool("ok", true);
            o.array("rows", |a| {
                a.array(|r| {
                    r.u64(10).u64(20);
                });
                a.object(|x| {
                    x.u64("n", 0);
                });
            });
            o.array("empty", |_| {});
        });
        assert_eq!(
            s,
            r#"{"v":1,"event":"a\"b\\c\n\u0001","ok":true,"rows":[[10,20],{"n":0}],"empty":[]}"#
        );
    }

    #[test]
    fn line_breaks_of_every_kind_are_escaped() {
        let mut s = String::new();
        write_string(&mut s, "a\u{85}b\u{2028}c\u{2029}d\u{7f}\u{1b}é");
        assert_eq!(s, r#""a\u0085b\u2028c\u2029d\u007f\u001bé""#);
    }
}
