//! The virtio balloon over virtio-mmio (`devices::virtio`): a fuzzed register sequence and
//! fuzzed guest memory holding the rings and buffers. With `probe` set, Linux's probe runs
//! first (features, three 16-entry queues at fixed addresses in that memory, DRIVER_OK), so
//! that the steps start from a live device and reach the queue code.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use numavisor_policy::devices::virtio::balloon::{
    BalloonConfig, BalloonRequest, VirtioBalloon, MAX_PFNS_PER_BUFFER, QUEUE_SIZE,
};
use numavisor_policy::devices::virtio::QueueMemory;

#[path = "shared/virtio.rs"]
mod shared;
use shared::Ram;

/// Guest RAM from address 0; the fuzzed bytes fill it from the start.
const RAM: usize = 0x4000;

#[derive(Arbitrary, Debug)]
enum Step {
    Read { offset: u16, size: u8 },
    Write { offset: u16, size: u8, value: u64 },
    Notify(u8),
    Poke { at: u16, bytes: Vec<u8> },
    Process,
    Complete(u8),
    CompleteAll,
    Stats,
    Target(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    probe: bool,
    deflate_on_oom: bool,
    memory: Vec<u8>,
    steps: Vec<Step>,
}

/// Linux's virtio_mmio + virtio_balloon probe; queue `q`'s rings at 0x1000 * q: descriptors,
/// available ring at +0x100, used ring at +0x200.
fn probe(device: &mut VirtioBalloon) {
    shared::probe(
        |offset, value| {
            device.mmio_write(offset, 4, u64::from(value));
        },
        3,
        3,
    );
}

fuzz_target!(|input: Input| {
    let mut ram = vec![0u8; RAM];
    let n = input.memory.len().min(RAM);
    ram[..n].copy_from_slice(&input.memory[..n]);
    let memory = Ram(RefCell::new(ram));
    let mut device = VirtioBalloon::new(BalloonConfig {
        deflate_on_oom: input.deflate_on_oom,
    });
    if input.probe {
        probe(&mut device);
    }
    let mut receipts = Vec::new();
    for step in input.steps {
        match step {
            Step::Read { offset, size } => {
                device.mmio_read(u64::from(offset), size);
            }
            Step::Write {
                offset,
                size,
                value,
            } => {
                device.mmio_write(u64::from(offset), size, value);
            }
            Step::Notify(q) => {
                device.mmio_write(0x050, 4, u64::from(q));
            }
            Step::Poke { at, bytes } => {
                memory.write(u64::from(at), &bytes);
            }
            Step::Process => {
                let requests = device.process(&memory);
                assert!(requests.len() <= 3 * usize::from(QUEUE_SIZE));
                for request in requests {
                    match request {
                        BalloonRequest::Inflate { pfns, completion }
                        | BalloonRequest::Deflate { pfns, completion } => {
                            assert!(pfns.len() <= MAX_PFNS_PER_BUFFER);
                            receipts.push(completion);
                        }
                        BalloonRequest::Stats(_) => {}
                    }
                }
            }
            Step::Complete(i) => {
                if !receipts.is_empty() {
                    let completion = receipts.swap_remove(usize::from(i) % receipts.len());
                    let _ = device.complete(completion, &memory);
                }
            }
            Step::CompleteAll => {
                for completion in receipts.drain(..) {
                    let _ = device.complete(completion, &memory);
                }
            }
            Step::Stats => {
                device.request_stats(&memory);
            }
            Step::Target(pages) => device.set_target_pages(pages),
        }
        let _ = device.interrupt_asserted();
    }
});
