//! The `@nv` boot report: one JSON object per line, every object carrying `"v":1`.
//!
//! The format is the contract tests and tools read (docs/boot-report.md); the builders here
//! produce each event as a `String`, and the firmware prints it behind the `@nv ` prefix.

pub mod events;
pub mod json;

/// Version of the report format, in every object as `"v"`.
pub const REPORT_VERSION: u32 = 1;
