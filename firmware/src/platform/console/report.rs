//! Prints `@nv` boot-report lines (format in docs/boot-report.md).

use super::serial;

/// Prints one report event, already serialized as a JSON object.
pub fn emit(json: &str) {
    serial::write_line_fmt(format_args!("@nv {json}\n"));
}
