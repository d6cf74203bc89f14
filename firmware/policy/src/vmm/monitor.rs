//! The monitor shell on the host console: a line editor for what is typed once the console is
//! switched to the monitor (Ctrl-A `m`, see [`super::console_input`]) and the parser of its
//! commands. What a command does is the partition manager's; this is the part that reads
//! untrusted keyboard input, host-tested.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// The longest line the editor keeps.
pub const MAX_LINE: usize = 120;

/// The commands and what they take, for `help` and for errors.
pub const COMMANDS: [(&str, &str, &str); 8] = [
    ("help", "", "list the commands"),
    (
        "partitions",
        "",
        "each partition: state, vCPUs and nodes, memory per vnode, pool balance",
    ),
    (
        "ledger",
        "",
        "every node's memory: free, hypervisor, guest, pools",
    ),
    ("exits", "NAME", "partition NAME's VM exits by kind"),
    (
        "nics",
        "NAME",
        "the cards on network NAME: MAC, link, frames and bytes sent and received, drops",
    ),
    (
        "balloon",
        "NAME VNODE SIZE",
        "Dynamic Memory: vnode VNODE of NAME to hold SIZE (like 128M, 1G), or `auto` for the policy",
    ),
    (
        "stop",
        "NAME",
        "stop partition NAME for good (its memory goes back to its nodes)",
    ),
    (
        "restart",
        "NAME",
        "restart partition NAME from its first instruction",
    ),
];

/// A command read from one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Partitions,
    Ledger,
    Exits {
        partition: String,
    },
    /// `nics NAME`: the cards on network `network`.
    Nics {
        network: String,
    },
    Stop {
        partition: String,
    },
    Restart {
        partition: String,
    },
    /// `balloon NAME VNODE SIZE`: `bytes` `None` for `auto`.
    Balloon {
        partition: String,
        vnode: usize,
        bytes: Option<u64>,
    },
}

/// Why a line is not a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorError {
    /// A line longer than [`MAX_LINE`] (what was typed is dropped).
    LineTooLong,
    /// Not one of [`COMMANDS`].
    UnknownCommand { word: String },
    /// The command needs an argument that is missing.
    MissingArgument {
        command: &'static str,
        argument: &'static str,
    },
    /// More words than the command takes.
    TooManyArguments { command: &'static str },
    /// A byte that is not printable ASCII.
    NotText { byte: u8 },
    /// An argument that is not a number (or size) of the kind asked.
    BadNumber {
        argument: &'static str,
        text: String,
    },
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::LineTooLong => {
                write!(f, "line longer than {MAX_LINE} characters; dropped")
            }
            MonitorError::UnknownCommand { word } => {
                let names: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
                write!(
                    f,
                    "unknown command \"{word}\" (commands: {})",
                    names.join(", ")
                )
            }
            MonitorError::MissingArgument { command, argument } => {
                write!(f, "{command} needs {argument} (`{command} {argument}`)")
            }
            MonitorError::TooManyArguments { command } => {
                write!(f, "{command}: too many words")
            }
            MonitorError::NotText { byte } => {
                write!(f, "byte {byte:#04x} is not text; line dropped")
            }
            MonitorError::BadNumber { argument, text } => write!(
                f,
                "{argument} \"{text}\" is not understood (VNODE: 0, 1, ...; SIZE: bytes, a number \
                 with K, M or G, or auto)"
            ),
        }
    }
}

/// Reads one command from `line`: `None` for a blank line.
pub fn parse(line: &str) -> Option<Result<Command, MonitorError>> {
    let mut words = line.split_whitespace();
    let first = words.next()?;
    let rest: Vec<&str> = words.collect();
    Some(command(first, &rest))
}

fn command(first: &str, rest: &[&str]) -> Result<Command, MonitorError> {
    let Some(&(name, argument, _)) = COMMANDS.iter().find(|c| c.0 == first) else {
        return Err(MonitorError::UnknownCommand {
            word: first.to_string(),
        });
    };
    let expected = argument.split_whitespace().count();
    if rest.len() < expected {
        return Err(MonitorError::MissingArgument {
            command: name,
            argument,
        });
    }
    if rest.len() > expected {
        return Err(MonitorError::TooManyArguments { command: name });
    }
    let partition = || rest[0].to_string();
    Ok(match name {
        "help" => Command::Help,
        "partitions" => Command::Partitions,
        "ledger" => Command::Ledger,
        "exits" => Command::Exits {
            partition: partition(),
        },
        "nics" => Command::Nics {
            network: partition(),
        },
        "stop" => Command::Stop {
            partition: partition(),
        },
        "balloon" => Command::Balloon {
            partition: partition(),
            vnode: rest[1].parse().map_err(|_| MonitorError::BadNumber {
                argument: "VNODE",
                text: rest[1].to_string(),
            })?,
            bytes: match rest[2] {
                "auto" => None,
                text => Some(size(text).ok_or_else(|| MonitorError::BadNumber {
                    argument: "SIZE",
                    text: text.to_string(),
                })?),
            },
        },
        _ => Command::Restart {
            partition: partition(),
        },
    })
}

/// A size typed by the operator: bytes, or a number with `K`, `M` or `G` (powers of 1024).
fn size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// What one typed byte did to the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Show this byte (it was added to the line).
    Echo(u8),
    /// The last character was erased (show backspace, space, backspace).
    Erased,
    /// Enter: the line is complete (an error if it overflowed or held a non-text byte).
    Line(Result<String, MonitorError>),
    /// Nothing to show.
    Nothing,
}

/// The monitor's line editor: printable ASCII, backspace/delete, Enter (CR or LF; CR LF
/// counts once).
#[derive(Clone, Debug, Default)]
pub struct LineEditor {
    line: String,
    problem: Option<MonitorError>,
    last_was_cr: bool,
}

impl LineEditor {
    /// Takes one typed byte.
    pub fn push(&mut self, byte: u8) -> Edit {
        let after_cr = core::mem::replace(&mut self.last_was_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => Edit::Nothing,
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut self.line);
                Edit::Line(match self.problem.take() {
                    Some(problem) => Err(problem),
                    None => Ok(line),
                })
            }
            0x08 | 0x7F => {
                if self.line.pop().is_some() {
                    Edit::Erased
                } else {
                    Edit::Nothing
                }
            }
            b' '..=b'~' => {
                if self.line.len() >= MAX_LINE {
                    self.problem.get_or_insert(MonitorError::LineTooLong);
                    return Edit::Nothing;
                }
                self.line.push(byte as char);
                Edit::Echo(byte)
            }
            other => {
                self.problem
                    .get_or_insert(MonitorError::NotText { byte: other });
                Edit::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn typed(editor: &mut LineEditor, text: &[u8]) -> Vec<Edit> {
        text.iter().map(|&b| editor.push(b)).collect()
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(parse("help"), Some(Ok(Command::Help)));
        assert_eq!(parse("  partitions "), Some(Ok(Command::Partitions)));
        assert_eq!(parse("ledger"), Some(Ok(Command::Ledger)));
        assert_eq!(
            parse("nics lan"),
            Some(Ok(Command::Nics {
                network: "lan".into()
            }))
        );
        assert_eq!(
            parse("exits alpha"),
            Some(Ok(Command::Exits {
                partition: "alpha".into()
            }))
        );
        assert_eq!(
            parse("stop beta"),
            Some(Ok(Command::Stop {
                partition: "beta".into()
            }))
        );
        assert_eq!(
            parse("restart beta"),
            Some(Ok(Command::Restart {
                partition: "beta".into()
            }))
        );
        assert_eq!(parse("   "), None);
        assert_eq!(
            parse("balloon beta 0 128M"),
            Some(Ok(Command::Balloon {
                partition: "beta".into(),
                vnode: 0,
                bytes: Some(128 << 20)
            }))
        );
        assert_eq!(
            parse("balloon beta 1 auto"),
            Some(Ok(Command::Balloon {
                partition: "beta".into(),
                vnode: 1,
                bytes: None
            }))
        );
        assert_eq!(
            parse("balloon beta 0 4096"),
            Some(Ok(Command::Balloon {
                partition: "beta".into(),
                vnode: 0,
                bytes: Some(4096)
            }))
        );
    }

    #[test]
    fn wrong_input_gets_its_error() {
        assert_eq!(
            parse("reboot alpha"),
            Some(Err(MonitorError::UnknownCommand {
                word: "reboot".into()
            }))
        );
        assert_eq!(
            parse("stop"),
            Some(Err(MonitorError::MissingArgument {
                command: "stop",
                argument: "NAME"
            }))
        );
        assert_eq!(
            parse("ledger now"),
            Some(Err(MonitorError::TooManyArguments { command: "ledger" }))
        );
        assert_eq!(
            parse("exits a b"),
            Some(Err(MonitorError::TooManyArguments { command: "exits" }))
        );
        assert_eq!(
            parse("balloon beta 0"),
            Some(Err(MonitorError::MissingArgument {
                command: "balloon",
                argument: "NAME VNODE SIZE"
            }))
        );
        assert_eq!(
            parse("balloon beta x 1G"),
            Some(Err(MonitorError::BadNumber {
                argument: "VNODE",
                text: "x".into()
            }))
        );
        for bad in ["12Q", "M", "-1", "99999999999G"] {
            assert_eq!(
                parse(&alloc::format!("balloon beta 0 {bad}")),
                Some(Err(MonitorError::BadNumber {
                    argument: "SIZE",
                    text: bad.into()
                })),
                "{bad}"
            );
        }
        let message = alloc::format!("{}", parse("x").unwrap().unwrap_err());
        assert!(
            message.contains("help, partitions, ledger, exits, nics, balloon, stop, restart"),
            "{message}"
        );
    }

    #[test]
    fn the_editor_reads_lines() {
        let mut e = LineEditor::default();
        assert_eq!(
            typed(&mut e, b"sto"),
            [Edit::Echo(b's'), Edit::Echo(b't'), Edit::Echo(b'o')]
        );
        assert_eq!(e.push(0x7F), Edit::Erased);
        assert_eq!(
            typed(&mut e, b"op b"),
            [
                Edit::Echo(b'o'),
                Edit::Echo(b'p'),
                Edit::Echo(b' '),
                Edit::Echo(b'b')
            ]
        );
        assert_eq!(e.push(b'\r'), Edit::Line(Ok("stop b".into())));
        assert_eq!(e.push(b'\n'), Edit::Nothing, "CR LF is one Enter");
        assert_eq!(e.push(b'\n'), Edit::Line(Ok(String::new())));
        assert_eq!(e.push(0x08), Edit::Nothing, "nothing to erase");
    }

    #[test]
    fn overlong_and_binary_lines_are_dropped_with_an_error() {
        let mut e = LineEditor::default();
        for _ in 0..MAX_LINE + 5 {
            e.push(b'x');
        }
        assert_eq!(e.push(b'\n'), Edit::Line(Err(MonitorError::LineTooLong)));
        assert_eq!(
            typed(&mut e, b"ok\n").last(),
            Some(&Edit::Line(Ok("ok".into())))
        );
        e.push(b'a');
        assert_eq!(e.push(0x1B), Edit::Nothing);
        assert_eq!(
            e.push(b'\r'),
            Edit::Line(Err(MonitorError::NotText { byte: 0x1B }))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut e = LineEditor::default();
            for b in bytes {
                if let Edit::Line(Ok(line)) = e.push(b) {
                    prop_assert!(line.len() <= MAX_LINE);
                    let _ = parse(&line);
                }
            }
        }
    }
}
