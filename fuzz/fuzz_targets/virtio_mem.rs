//! The virtio memory device over virtio-mmio (`devices::virtio::mem`): a fuzzed register
//! sequence and fuzzed guest memory holding the ring and the request buffers. With `probe`
//! set, Linux's probe runs first (features, one 16-entry queue at a fixed address in that
//! memory, DRIVER_OK), so that the steps start from a live device and reach the request code.
//! Checks that at most one request is in flight and that `plugged_size` is always what
//! `plugged_ranges` adds up to.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use numavisor_policy::devices::virtio::mem::{
    MemConfig, MemRequest, VirtioMem, F_ACPI_PXM, F_UNPLUGGED_INACCESSIBLE,
};
use numavisor_policy::devices::virtio::QueueMemory;

#[path = "shared/virtio.rs"]
mod shared;
use shared::Ram;

/// Guest RAM from address 0; the fuzzed bytes fill it from the start.
const RAM: usize = 0x4000;
/// The managed region: 64 blocks of 64 KiB right after the RAM, so that requests built from
/// small fuzzed numbers land in it, at its edges and outside it.
const BLOCK: u64 = 0x1_0000;
const REGION: u64 = 64 * BLOCK;

#[derive(Arbitrary, Debug)]
enum Step {
    Read { offset: u16, size: u8 },
    Write { offset: u16, size: u8, value: u64 },
    Notify,
    Poke { at: u16, bytes: Vec<u8> },
    /// A well-formed request in descriptors 0 (24 bytes at 0x3000) and 1 (10 bytes at
    /// 0x3100), made available and notified: what Linux sends.
    Request { kind: u8, block: i8, count: u8, offset: u16 },
    Process,
    Complete(bool),
    Requested(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    probe: bool,
    memory: Vec<u8>,
    steps: Vec<Step>,
}

fn probe(device: &mut VirtioMem) {
    shared::probe(
        |offset, value| {
            device.mmio_write(offset, 4, u64::from(value));
        },
        (F_ACPI_PXM | F_UNPLUGGED_INACCESSIBLE) as u32,
        1,
    );
}

/// Writes a request and its descriptors, and makes head 0 available on queue 0 (rings as
/// `shared::probe` lays them out).
fn request(memory: &Ram, avail_idx: &mut u16, kind: u8, block: i8, count: u8, offset: u16) {
    let addr = (RAM as u64)
        .wrapping_add_signed(i64::from(block) * BLOCK as i64)
        .wrapping_add(u64::from(offset));
    let mut bytes = [0u8; 24];
    bytes[0] = kind % 5;
    bytes[8..16].copy_from_slice(&addr.to_le_bytes());
    bytes[16] = count;
    memory.write(0x3000, &bytes);
    let mut descriptors = [0u8; 32];
    descriptors[..8].copy_from_slice(&0x3000u64.to_le_bytes());
    descriptors[8..12].copy_from_slice(&24u32.to_le_bytes());
    descriptors[12..14].copy_from_slice(&1u16.to_le_bytes()); // NEXT
    descriptors[14..16].copy_from_slice(&1u16.to_le_bytes());
    descriptors[16..24].copy_from_slice(&0x3100u64.to_le_bytes());
    descriptors[24..28].copy_from_slice(&10u32.to_le_bytes());
    descriptors[28..30].copy_from_slice(&2u16.to_le_bytes()); // WRITE
    memory.write(0, &descriptors);
    memory.write(0x104 + 2 * u64::from(*avail_idx % 16), &0u16.to_le_bytes());
    *avail_idx = avail_idx.wrapping_add(1);
    memory.write(0x102, &avail_idx.to_le_bytes());
}

fuzz_target!(|input: Input| {
    let mut ram = vec![0u8; RAM];
    let n = input.memory.len().min(RAM);
    ram[..n].copy_from_slice(&input.memory[..n]);
    let memory = Ram(RefCell::new(ram));
    let mut device = VirtioMem::new(MemConfig {
        addr: RAM as u64,
        region_size: REGION,
        block_size: BLOCK,
        node_id: 0,
    });
    device.set_requested_size(REGION / 2);
    if input.probe {
        probe(&mut device);
    }
    let mut in_flight = None;
    let mut avail_idx = 0u16;
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
            Step::Notify => {
                device.mmio_write(0x050, 4, 0);
            }
            Step::Poke { at, bytes } => {
                memory.write(u64::from(at), &bytes);
            }
            Step::Request {
                kind,
                block,
                count,
                offset,
            } => {
                request(&memory, &mut avail_idx, kind, block, count, offset);
                device.mmio_write(0x050, 4, 0);
            }
            Step::Process => {
                if let Some(request) = device.process(&memory) {
                    assert!(in_flight.is_none(), "two requests in flight");
                    in_flight = Some(match request {
                        MemRequest::Plug { completion, .. }
                        | MemRequest::Unplug { completion, .. }
                        | MemRequest::UnplugAll { completion, .. } => completion,
                    });
                }
            }
            Step::Complete(done) => {
                if let Some(completion) = in_flight.take() {
                    let _ = device.complete(completion, done, &memory);
                }
            }
            Step::Requested(blocks) => device.set_requested_size(u64::from(blocks) * BLOCK),
        }
        let ranges: u64 = device.plugged_ranges().map(|(_, bytes)| bytes).sum();
        assert_eq!(ranges, device.plugged_size());
        assert!(device.plugged_size() <= REGION);
        let _ = device.interrupt_asserted();
    }
});
