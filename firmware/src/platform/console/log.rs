//! The human log: `[seconds.micros] LEVEL message`, filtered by a level from the command line.

use core::sync::atomic::{AtomicUsize, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use super::serial;
use crate::platform::cpu::tsc;

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() as usize <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = tsc::micros_since_entry();
        serial::write_fmt(format_args!(
            "[{:5}.{:06}] {:5} {}\n",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

/// Installs the logger at `level`.
pub fn init(level: LevelFilter) {
    LEVEL.store(level as usize, Ordering::Relaxed);
    // A second call would only fail with "already set": nothing to do then.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parses `log=` values (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    value.parse().ok()
}
