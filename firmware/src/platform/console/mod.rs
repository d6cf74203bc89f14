//! Console output: the UART, the human log and the `@nv` report lines.

pub mod log;
pub mod report;
pub mod serial;
