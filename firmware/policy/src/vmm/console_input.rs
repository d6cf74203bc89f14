//! Which partition the host console's keyboard input goes to, switched by an escape
//! sequence: **Ctrl-A** then a digit `1`–`9` selects partition 1–9 (layout order), `0`
//! sends input nowhere, `m` sends it to the hypervisor's monitor shell
//! ([`super::monitor`]), and Ctrl-A twice sends one Ctrl-A to the partition. Any other byte
//! after Ctrl-A is dropped. Input goes to the first partition until the user switches.

/// The escape byte (Ctrl-A).
pub const ESCAPE: u8 = 0x01;

/// What to do with one byte typed on the host console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Give the byte to partition `index`.
    Deliver { index: usize, byte: u8 },
    /// Input now goes to partition `index` (`None`: nowhere).
    Switched(Option<usize>),
    /// Input now goes to the monitor shell.
    ToMonitor,
    /// Give the byte to the monitor shell.
    Monitor(u8),
    /// Nothing to do (the first byte of an escape, or input while nobody listens).
    Nothing,
}

/// The input switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSwitch {
    target: Option<usize>,
    partitions: usize,
    escaped: bool,
    monitor: bool,
}

impl InputSwitch {
    /// Input to partition 0 of `partitions`.
    pub fn new(partitions: usize) -> Self {
        InputSwitch {
            target: (partitions > 0).then_some(0),
            partitions,
            escaped: false,
            monitor: false,
        }
    }

    /// The partition input goes to now.
    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// Routes one typed byte.
    pub fn route(&mut self, byte: u8) -> Routed {
        if self.escaped {
            self.escaped = false;
            return match byte {
                ESCAPE => self.deliver(byte),
                b'0' => {
                    self.target = None;
                    self.monitor = false;
                    Routed::Switched(None)
                }
                b'1'..=b'9' if ((byte - b'1') as usize) < self.partitions => {
                    self.target = Some((byte - b'1') as usize);
                    self.monitor = false;
                    Routed::Switched(self.target)
                }
                b'm' => {
                    self.monitor = true;
                    Routed::ToMonitor
                }
                _ => Routed::Nothing,
            };
        }
        if byte == ESCAPE {
            self.escaped = true;
            return Routed::Nothing;
        }
        self.deliver(byte)
    }

    fn deliver(&self, byte: u8) -> Routed {
        if self.monitor {
            return Routed::Monitor(byte);
        }
        match self.target {
            Some(index) => Routed::Deliver { index, byte },
            None => Routed::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_goes_to_the_first_partition_until_switched() {
        let mut s = InputSwitch::new(2);
        assert_eq!(
            s.route(b'a'),
            Routed::Deliver {
                index: 0,
                byte: b'a'
            }
        );
        assert_eq!(s.route(ESCAPE), Routed::Nothing);
        assert_eq!(s.route(b'2'), Routed::Switched(Some(1)));
        assert_eq!(
            s.route(b'b'),
            Routed::Deliver {
                index: 1,
                byte: b'b'
            }
        );
        assert_eq!(s.route(ESCAPE), Routed::Nothing);
        assert_eq!(
            s.route(ESCAPE),
            Routed::Deliver {
                index: 1,
                byte: ESCAPE
            }
        );
        assert_eq!(s.route(ESCAPE), Routed::Nothing);
        assert_eq!(s.route(b'0'), Routed::Switched(None));
        assert_eq!(s.route(b'c'), Routed::Nothing);
    }

    #[test]
    fn ctrl_a_m_reaches_the_monitor_until_a_digit_switches_back() {
        let mut s = InputSwitch::new(2);
        s.route(ESCAPE);
        assert_eq!(s.route(b'm'), Routed::ToMonitor);
        assert_eq!(s.route(b'h'), Routed::Monitor(b'h'));
        s.route(ESCAPE);
        assert_eq!(s.route(ESCAPE), Routed::Monitor(ESCAPE));
        s.route(ESCAPE);
        assert_eq!(s.route(b'2'), Routed::Switched(Some(1)));
        assert_eq!(
            s.route(b'x'),
            Routed::Deliver {
                index: 1,
                byte: b'x'
            }
        );
        s.route(ESCAPE);
        s.route(b'm');
        s.route(ESCAPE);
        assert_eq!(s.route(b'0'), Routed::Switched(None));
        assert_eq!(s.route(b'x'), Routed::Nothing);
    }

    #[test]
    fn unknown_partitions_and_bytes_after_escape_are_dropped() {
        let mut s = InputSwitch::new(2);
        s.route(ESCAPE);
        assert_eq!(s.route(b'3'), Routed::Nothing);
        assert_eq!(s.target(), Some(0));
        s.route(ESCAPE);
        assert_eq!(s.route(b'x'), Routed::Nothing);
        assert_eq!(
            s.route(b'x'),
            Routed::Deliver {
                index: 0,
                byte: b'x'
            }
        );
        assert_eq!(InputSwitch::new(0).route(b'a'), Routed::Nothing);
    }
}
