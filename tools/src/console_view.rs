//! The human view of numavisor's serial console for `cargo xtask run --stay`: a person at the
//! terminal sees the hypervisor's log and the partitions' consoles (`[alpha] text`), while the
//! machine-readable `@nv {...}` report lines — each console line's JSON twin, each monitor
//! answer's — go to a file the tool names, as they do to tests and `--report`.
//!
//! Bytes pass straight through (a shell prompt has no newline to wait for); only a line that
//! starts with `@nv ` is held back, from its first byte, and diverted whole.

/// The report-line prefix (docs/boot-report.md).
const REPORT_PREFIX: &[u8] = b"@nv ";

/// Splits a console byte stream into what the terminal shows and the report lines.
#[derive(Debug)]
pub struct ConsoleView {
    /// The next byte starts a line.
    at_line_start: bool,
    /// Bytes at a line's start that may still become [`REPORT_PREFIX`].
    held: Vec<u8>,
    /// Inside a report line: bytes go to the report until its newline.
    diverting: bool,
}

impl Default for ConsoleView {
    fn default() -> Self {
        ConsoleView {
            at_line_start: true,
            held: Vec::new(),
            diverting: false,
        }
    }
}

impl ConsoleView {
    /// Takes the next `bytes` of the console; appends what the terminal shows to `terminal`
    /// and the report's bytes (whole lines, with their newlines) to `report`.
    pub fn feed(&mut self, bytes: &[u8], terminal: &mut Vec<u8>, report: &mut Vec<u8>) {
        for &byte in bytes {
            if self.diverting {
                report.push(byte);
                if byte == b'\n' {
                    self.diverting = false;
                    self.at_line_start = true;
                }
                continue;
            }
            if self.at_line_start {
                self.held.push(byte);
                if REPORT_PREFIX.starts_with(&self.held) {
                    if self.held.len() == REPORT_PREFIX.len() {
                        report.append(&mut self.held);
                        self.diverting = true;
                        self.at_line_start = false;
                    }
                    continue;
                }
                // Not a report line: what was held is the terminal's, this byte included.
                terminal.append(&mut self.held);
                self.at_line_start = byte == b'\n';
                continue;
            }
            terminal.push(byte);
            self.at_line_start = byte == b'\n';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(chunks: &[&[u8]]) -> (String, String) {
        let mut view = ConsoleView::default();
        let (mut terminal, mut report) = (Vec::new(), Vec::new());
        for chunk in chunks {
            view.feed(chunk, &mut terminal, &mut report);
        }
        (
            String::from_utf8(terminal).unwrap(),
            String::from_utf8(report).unwrap(),
        )
    }

    #[test]
    fn report_lines_go_to_the_report_and_the_rest_to_the_terminal() {
        let console = b"[ 0.1] INFO ready\n@nv {\"v\":1,\"event\":\"ready\"}\n[alpha] hello\n@nv {\"event\":\"console\"}\n# ";
        let (terminal, report) = view(&[console]);
        assert_eq!(terminal, "[ 0.1] INFO ready\n[alpha] hello\n# ");
        assert_eq!(
            report,
            "@nv {\"v\":1,\"event\":\"ready\"}\n@nv {\"event\":\"console\"}\n"
        );
    }

    #[test]
    fn chunks_may_split_anywhere() {
        let console: &[u8] = b"ab\n@nv {1}\n@n\n@nvx\n@\n# ";
        let whole = view(&[console]);
        for split in 0..console.len() {
            let (head, tail) = console.split_at(split);
            assert_eq!(view(&[head, tail]), whole, "split at {split}");
        }
        assert_eq!(whole.0, "ab\n@n\n@nvx\n@\n# ");
        assert_eq!(whole.1, "@nv {1}\n");
    }

    #[test]
    fn only_a_prefix_at_a_line_start_diverts() {
        let (terminal, report) = view(&[b"[alpha] @nv {not a report}\n"]);
        assert_eq!(terminal, "[alpha] @nv {not a report}\n");
        assert!(report.is_empty());
    }
}
