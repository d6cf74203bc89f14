//! The virtio network card and the learning switch (`devices::virtio::net`, `network`):
//! three cards on one switch, each with its own guest RAM; card 0's RAM and the steps are
//! fuzzed. With `probe` set, Linux's probe runs on every card first (features, two 16-entry
//! queues at fixed addresses, DRIVER_OK, link up), so that the steps reach the queue code:
//! card 0 accepts the fuzzed offloads, card 1 every offload, card 2 none, so that frames
//! cross both whole and finished in software (`net_offload`). `Offloaded` injects a frame
//! with a fuzzed offload request, as a sender's header would make it.
//! Checked on every transmit pass: each frame's delivery counts add up to its route.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use numavisor_policy::devices::virtio::net::{NetConfig, VirtioNet, F_OFFLOADS, MAX_FRAME_LEN};
use numavisor_policy::devices::virtio::net_offload::{Frame, IpVersion, PartialChecksum};
use numavisor_policy::devices::virtio::QueueMemory;
use numavisor_policy::network::{deliver, Ports, Route, Switch};

#[path = "shared/virtio.rs"]
mod shared;
use shared::Ram;

/// Guest RAM of each card, from address 0; card 0's is filled from the fuzzed bytes.
const RAM: usize = 0x4000;
const CARDS: usize = 3;

#[derive(Arbitrary, Debug)]
enum Step {
    Read {
        card: u8,
        offset: u16,
        size: u8,
    },
    Write {
        card: u8,
        offset: u16,
        size: u8,
        value: u64,
    },
    Notify {
        card: u8,
        queue: u8,
    },
    Poke {
        card: u8,
        at: u16,
        bytes: Vec<u8>,
    },
    Transmit {
        card: u8,
        max_frames: u8,
    },
    Inject {
        card: u8,
        frame: Vec<u8>,
    },
    Offloaded {
        card: u8,
        frame: Vec<u8>,
        checksum: Option<(u16, u16)>,
        segmentation: Option<(bool, u16)>,
    },
    Link {
        card: u8,
        up: bool,
    },
    Forget(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    probe: bool,
    event_idx: bool,
    offloads: u32,
    memory: Vec<u8>,
    steps: Vec<Step>,
}

struct Card {
    nic: RefCell<VirtioNet>,
    ram: Ram,
}

struct Cards(Vec<Card>);

impl Ports for Cards {
    fn port_count(&self) -> usize {
        self.0.len()
    }
    fn with_port<R>(
        &self,
        port: usize,
        f: impl FnOnce(&mut VirtioNet, &dyn QueueMemory) -> R,
    ) -> Option<R> {
        let card = self.0.get(port)?;
        Some(f(&mut card.nic.borrow_mut(), &card.ram))
    }
}

/// Linux's virtio_mmio + virtio_net probe; queue `q`'s rings at 0x1000 * q: descriptors,
/// available ring at +0x100, used ring at +0x200.
fn probe(nic: &mut VirtioNet, event_idx: bool, offloads: u32) {
    shared::probe(
        |offset, value| {
            nic.mmio_write(offset, 4, u64::from(value));
        },
        (1 << 5) | (1 << 16) | (u32::from(event_idx) << 29) | (offloads & F_OFFLOADS as u32),
        2,
    );
    nic.set_link(true);
}

fuzz_target!(|input: Input| {
    let cards = Cards(
        (0..CARDS)
            .map(|n| {
                let mut ram = vec![0u8; RAM];
                if n == 0 {
                    let len = input.memory.len().min(RAM);
                    ram[..len].copy_from_slice(&input.memory[..len]);
                }
                let mut nic = VirtioNet::new(NetConfig {
                    mac: [0x52, 0x54, 0, 0, 0, n as u8],
                    index: n as u8,
                });
                if input.probe {
                    let offloads = [input.offloads, u32::MAX, 0][n];
                    probe(&mut nic, input.event_idx, offloads);
                }
                Card {
                    nic: RefCell::new(nic),
                    ram: Ram(RefCell::new(ram)),
                }
            })
            .collect(),
    );
    let mut switch = Switch::new(CARDS);
    let card = |n: u8| &cards.0[usize::from(n) % CARDS];
    for step in input.steps {
        match step {
            Step::Read {
                card: n,
                offset,
                size,
            } => {
                card(n).nic.borrow_mut().mmio_read(u64::from(offset), size);
            }
            Step::Write {
                card: n,
                offset,
                size,
                value,
            } => {
                card(n)
                    .nic
                    .borrow_mut()
                    .mmio_write(u64::from(offset), size, value);
            }
            Step::Notify { card: n, queue } => {
                card(n)
                    .nic
                    .borrow_mut()
                    .mmio_write(0x050, 4, u64::from(queue));
            }
            Step::Poke { card: n, at, bytes } => {
                card(n).ram.write(u64::from(at), &bytes);
            }
            Step::Transmit {
                card: n,
                max_frames,
            } => {
                let from = usize::from(n) % CARDS;
                let sender = card(n);
                let frames = sender
                    .nic
                    .borrow_mut()
                    .take_transmits(&sender.ram, usize::from(max_frames));
                assert!(frames.len() <= usize::from(max_frames));
                for frame in frames {
                    assert!((14..=MAX_FRAME_LEN).contains(&frame.len()));
                    let route = switch.route(from, frame.bytes());
                    let delivery = deliver(&cards, from, route, &frame);
                    let expected = match route {
                        Route::Port(_) => 1,
                        Route::Flood => CARDS - 1,
                        Route::Drop(_) => 0,
                    };
                    assert_eq!(delivery.destinations(), expected);
                }
            }
            Step::Inject { card: n, frame } => {
                let from = usize::from(n) % CARDS;
                let route = switch.route(from, &frame);
                deliver(&cards, from, route, &Frame::plain(&frame));
            }
            Step::Offloaded {
                card: n,
                frame,
                checksum,
                segmentation,
            } => {
                let checksum = checksum.map(|(start, offset)| PartialChecksum { start, offset });
                let segmentation = segmentation
                    .map(|(v6, size)| (if v6 { IpVersion::V6 } else { IpVersion::V4 }, size));
                if let Ok(frame) = Frame::checked(frame, checksum, segmentation) {
                    let from = usize::from(n) % CARDS;
                    let route = switch.route(from, frame.bytes());
                    deliver(&cards, from, route, &frame);
                }
            }
            Step::Link { card: n, up } => card(n).nic.borrow_mut().set_link(up),
            Step::Forget(port) => switch.forget(usize::from(port)),
        }
        for card in &cards.0 {
            let nic = card.nic.borrow();
            let _ = nic.interrupt_asserted();
            let c = nic.counters();
            assert!(c.rx_bytes <= c.rx_frames * MAX_FRAME_LEN as u64);
        }
    }
});
