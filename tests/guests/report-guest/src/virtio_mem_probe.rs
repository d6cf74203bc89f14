//! `mode=hostile probe=virtio-mem`: drives the partition's first virtio-mem device (VIRTIO
//! 1.2 §5.15; `docs/dynamic-memory.md`, "Growing past size") with a polling driver of its own
//! and asks it everything a driver may, well-formed or not, then touches the memory it
//! unplugged.
//!
//! The device sits in virtio-mmio slot 5 (`0xFEB0_0A00`). Once the partition's parent has set
//! a target above the vnode's size (`requested_size` ≥ 2 blocks), the probe asks, in order:
//! STATE of the first two blocks; PLUG of a range not block-aligned, of no blocks, past the
//! region's end, and of more than requested; PLUG of the first two blocks; PLUG of them again;
//! STATE; then it reads every byte of the plugged memory (all must be zero: nothing of the
//! host or another partition reaches a guest), writes and reads back a pattern, UNPLUGs the
//! second block, asks STATE, and UNPLUG_ALL. It prints one `virtio_mem` event with every
//! answer and figure, then reads the first block it unplugged: the hypervisor must stop it
//! (`outside-memory`). Returning from that read prints `virtio_mem_returned` and exits 2.

use crate::console::{exit, report, Json};
use crate::virtio_mmio::{
    DeviceMemory, Ring, Window, CONFIG_OFFSET, DESC_F_NEXT, DESC_F_WRITE, F_VERSION_1_HIGH,
    MAX_POLLS, RING_BYTES,
};

/// The first virtio-mem device's window: slot 5.
const WINDOW: Window = Window(0xFEB0_0A00);
const MEM_DEVICE: u32 = 24;
/// ACPI_PXM and UNPLUGGED_INACCESSIBLE (bits 0 and 1).
const FEATURES_LOW: u32 = 0b11;
const QUEUE_SIZE: u16 = 4;

const PLUG: u16 = 0;
const UNPLUG: u16 = 1;
const UNPLUG_ALL: u16 = 2;
const STATE: u16 = 3;

static RING: DeviceMemory<RING_BYTES> = DeviceMemory::new();
/// The request (24 bytes) at 0, the response (10 bytes) at 64.
static BUFFERS: DeviceMemory<4096> = DeviceMemory::new();

/// What a request got: the response type (ACK 0, NACK 1, BUSY 2, ERROR 3) and, for STATE,
/// the state (PLUGGED 0, UNPLUGGED 1, MIXED 2).
type Answer = (u16, u16);

struct Driver {
    ring: Ring,
}

impl Driver {
    fn init() -> Result<Driver, &'static str> {
        WINDOW
            .find(MEM_DEVICE)
            .map_err(|_| "no virtio-mem device at 0xFEB00A00")?;
        WINDOW
            .negotiate(FEATURES_LOW, F_VERSION_1_HIGH)
            .map_err(|_| "the device refused ACPI_PXM, UNPLUGGED_INACCESSIBLE and VERSION_1")?;
        let ring = Ring::new(&RING, QUEUE_SIZE);
        WINDOW.enable_queue(0, &ring)?;
        WINDOW.driver_ok()?;
        Ok(Driver { ring })
    }

    fn request(&mut self, kind: u16, addr: u64, blocks: u16) -> Result<Answer, &'static str> {
        let mut raw = [0u8; 24];
        raw[..2].copy_from_slice(&kind.to_le_bytes());
        raw[8..16].copy_from_slice(&addr.to_le_bytes());
        raw[16..18].copy_from_slice(&blocks.to_le_bytes());
        BUFFERS.write_bytes(0, &raw);
        BUFFERS.write_bytes(64, &[0xFF; 10]);
        let head = (self.ring.available() * 2) % QUEUE_SIZE;
        self.ring
            .set_descriptor(head, BUFFERS.base(), 24, DESC_F_NEXT, head + 1);
        self.ring
            .set_descriptor(head + 1, BUFFERS.base() + 64, 10, DESC_F_WRITE, 0);
        self.ring.make_available(head);
        WINDOW.notify(0);
        if !self.ring.wait_used(self.ring.available(), MAX_POLLS) {
            return Err("a request was never used");
        }
        WINDOW.check_status()?;
        let mut response = [0u8; 10];
        BUFFERS.read_bytes(64, &mut response);
        Ok((
            u16::from_le_bytes([response[0], response[1]]),
            u16::from_le_bytes([response[8], response[9]]),
        ))
    }
}

/// A 64-bit configuration field at `offset` (two 32-bit reads, low first).
fn config_u64(offset: u64) -> u64 {
    let low = u64::from(WINDOW.read(CONFIG_OFFSET + offset));
    let high = u64::from(WINDOW.read(CONFIG_OFFSET + offset + 4));
    low | high << 32
}

/// The probe (see the module note).
pub fn run() -> ! {
    match probe() {
        Ok(unplugged) => {
            // SAFETY: a read of memory the device just unplugged, identity mapped by the
            // guest's own tables; the hypervisor must stop the partition here.
            let value = unsafe { core::ptr::read_volatile(unplugged as *const u64) };
            report!("{{\"event\":\"virtio_mem_returned\",\"value\":{value}}}");
            exit(2)
        }
        Err(error) => {
            report!("{{\"event\":\"virtio_mem\",\"error\":{}}}", Json(error));
            exit(1)
        }
    }
}

/// Everything up to the touch of unplugged memory; the address to touch.
fn probe() -> Result<u64, &'static str> {
    let mut driver = Driver::init()?;
    let block = config_u64(0);
    let node = WINDOW.read(CONFIG_OFFSET + 8) & 0xFFFF;
    let addr = config_u64(16);
    let region = config_u64(24);
    let mut polls = 0;
    while config_u64(48) < 2 * block {
        polls += 1;
        if polls > MAX_POLLS {
            return Err("requested_size never reached two blocks");
        }
        core::hint::spin_loop();
    }
    let requested = config_u64(48);
    let too_many = u16::try_from(requested / block + 1).map_err(|_| "requested too large")?;
    let past_end = addr + region - block;
    let answers: [(&str, Answer); 11] = [
        ("state_before", driver.request(STATE, addr, 2)?),
        ("plug_unaligned", driver.request(PLUG, addr + block / 2, 1)?),
        ("plug_no_blocks", driver.request(PLUG, addr, 0)?),
        ("plug_past_end", driver.request(PLUG, past_end, 2)?),
        ("plug_too_many", driver.request(PLUG, addr, too_many)?),
        ("plug", driver.request(PLUG, addr, 2)?),
        ("plug_again", driver.request(PLUG, addr, 1)?),
        ("state_plugged", driver.request(STATE, addr, 2)?),
        ("unplug_second", (0, 0)),
        ("state_mixed", (0, 0)),
        ("unplug_all", (0, 0)),
    ];
    let plugged = config_u64(40);
    paging_map(addr, 2 * block)?;
    let nonzero = (0..2 * block / 8)
        // SAFETY: plugged guest memory (the device answered ACK), identity mapped above.
        .filter(|i| unsafe { core::ptr::read_volatile((addr + i * 8) as *const u64) } != 0)
        .count();
    for i in 0..2 * block / 8 {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile((addr + i * 8) as *mut u64, i ^ 0x6e76) };
    }
    let kept = (0..2 * block / 8)
        // SAFETY: as above.
        .all(|i| unsafe { core::ptr::read_volatile((addr + i * 8) as *const u64) } == i ^ 0x6e76);
    let mut answers = answers;
    answers[8].1 = driver.request(UNPLUG, addr + block, 1)?;
    answers[9].1 = driver.request(STATE, addr, 2)?;
    answers[10].1 = driver.request(UNPLUG_ALL, 0, 0)?;
    let after = config_u64(40);
    let shown: alloc::vec::Vec<alloc::string::String> = answers
        .iter()
        .map(|(name, (kind, state))| alloc::format!("\"{name}\":[{kind},{state}]"))
        .collect();
    report!(
        "{{\"event\":\"virtio_mem\",\"block_size\":{block},\"node_id\":{node},\"addr\":{addr},\"region_size\":{region},\"requested\":{requested},\"plugged\":{plugged},\"plugged_after\":{after},\"nonzero_words\":{nonzero},\"pattern_kept\":{kept},{}}}",
        shown.join(",")
    );
    Ok(addr)
}

fn paging_map(start: u64, bytes: u64) -> Result<(), &'static str> {
    if crate::paging::is_mapped(start, start + bytes) {
        return Ok(());
    }
    crate::paging::map_identity(start, start + bytes)
}
