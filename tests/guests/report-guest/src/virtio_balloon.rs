//! A minimal polling driver for the partition's virtio balloon (VIRTIO 1.2 §5.5) on its
//! virtio-mmio window (version 2, §4.2.2) at guest-physical `0xFEB0_0000`
//! (`docs/dynamic-memory.md`): the initialization of §3.1.1 with VERSION_1 and
//! MUST_TELL_HOST, then the inflate (0) and deflate (1) queues as split virtqueues (§2.7) of
//! one descriptor per request, each a buffer of le32 4 KiB frame numbers. No interrupts: after
//! QueueNotify the driver polls the used ring's index (the hypervisor answers a notification
//! before the write returns, or soon after). The statistics queue is left unset.
//!
//! Every refusal (a missing device, a feature not offered, DEVICE_NEEDS_RESET, a buffer that
//! never comes back) is an `Err` naming it: the caller reports it, never a quiet pass.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// The balloon's virtio-mmio window.
const WINDOW: u64 = 0xFEB0_0000;
/// Register offsets (§4.2.2).
const MAGIC_VALUE: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0A0;
const QUEUE_DEVICE_HIGH: u64 = 0x0A4;

/// "virt", device type 5 (memory balloon).
const MAGIC: u32 = 0x7472_6976;
const BALLOON_DEVICE: u32 = 5;
/// Status bits (§2.1).
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
const DEVICE_NEEDS_RESET: u32 = 0x40;
/// Feature bits: MUST_TELL_HOST (bit 0 of word 0), VERSION_1 (bit 32: bit 0 of word 1).
const F_MUST_TELL_HOST: u32 = 1;
const F_VERSION_1_HIGH: u32 = 1;

/// The queues this driver uses.
pub const INFLATE: u16 = 0;
pub const DEFLATE: u16 = 1;
/// Frame numbers one request carries (the device takes at most 1024 a chain).
pub const PFNS_PER_REQUEST: usize = 1024;
/// Entries of each queue this driver sets up (one request is in flight at a time).
const QUEUE_SIZE: u16 = 4;
/// Polls of the used ring before a request counts as lost.
const MAX_POLLS: u64 = 10_000_000;

/// One split virtqueue and its request buffer, page aligned, in the guest's own `.bss`.
#[repr(C, align(4096))]
struct Ring {
    /// Descriptor table: addr (le64), len (le32), flags (le16), next (le16).
    desc: [[u8; 16]; QUEUE_SIZE as usize],
    /// Available ring: flags, idx, ring[QUEUE_SIZE], used_event.
    avail: [u16; 3 + QUEUE_SIZE as usize],
    _pad: [u8; 2048 - 16 * QUEUE_SIZE as usize - 2 * (3 + QUEUE_SIZE as usize)],
    /// Used ring: flags, idx (le16 each), then ring[QUEUE_SIZE] of (id, len) and avail_event.
    used: [u32; 2 + 2 * QUEUE_SIZE as usize],
    _pad2: [u8; 2048 - 4 * (2 + 2 * QUEUE_SIZE as usize)],
    /// The frame numbers of the request in flight.
    pfns: [u32; PFNS_PER_REQUEST],
}

const EMPTY_RING: Ring = Ring {
    desc: [[0; 16]; QUEUE_SIZE as usize],
    avail: [0; 3 + QUEUE_SIZE as usize],
    _pad: [0; 2048 - 16 * QUEUE_SIZE as usize - 2 * (3 + QUEUE_SIZE as usize)],
    used: [0; 2 + 2 * QUEUE_SIZE as usize],
    _pad2: [0; 2048 - 4 * (2 + 2 * QUEUE_SIZE as usize)],
    pfns: [0; PFNS_PER_REQUEST],
};

/// The inflate and deflate rings (the guest is single-threaded; only [`Balloon`] uses them).
static mut RINGS: [Ring; 2] = [EMPTY_RING, EMPTY_RING];

/// A register read, as a plain `mov` (what Linux's `readl` emits): a volatile read may be
/// folded into another instruction (`and edx, [rcx+0x10]`), which the hypervisor's MMIO
/// decoder need not take.
fn read(offset: u64) -> u32 {
    let value: u32;
    // SAFETY: an aligned 4-byte read of the balloon's register window (identity mapped below
    // 4 GiB by the entry code); the hypervisor intercepts it, no memory is touched.
    unsafe {
        core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) WINDOW + offset,
            options(nostack, preserves_flags))
    };
    value
}

/// A register write, as a plain `mov` (Linux's `writel`).
fn write(offset: u64, value: u32) {
    // SAFETY: as for `read`, a 4-byte register write.
    unsafe {
        core::arch::asm!("mov dword ptr [{0}], {1:e}", in(reg) WINDOW + offset, in(reg) value,
            options(nostack, preserves_flags))
    };
}

/// The balloon, initialized, its inflate and deflate queues live.
pub struct Balloon {
    /// Requests made on each queue so far (the available ring's index).
    sent: [u16; 2],
}

impl Balloon {
    /// Finds the device and initializes it (§3.1.1): reset, ACKNOWLEDGE, DRIVER, features
    /// VERSION_1 and MUST_TELL_HOST, FEATURES_OK, the two queues, DRIVER_OK.
    pub fn init() -> Result<Balloon, &'static str> {
        if read(MAGIC_VALUE) != MAGIC || read(VERSION) != 2 {
            return Err("no virtio-mmio version 2 window at 0xFEB00000");
        }
        if read(DEVICE_ID) != BALLOON_DEVICE {
            return Err("the virtio-mmio device at 0xFEB00000 is not a balloon");
        }
        write(STATUS, 0);
        write(STATUS, ACKNOWLEDGE);
        write(STATUS, ACKNOWLEDGE | DRIVER);
        write(DEVICE_FEATURES_SEL, 0);
        let low = read(DEVICE_FEATURES);
        write(DEVICE_FEATURES_SEL, 1);
        let high = read(DEVICE_FEATURES);
        if high & F_VERSION_1_HIGH == 0 || low & F_MUST_TELL_HOST == 0 {
            return Err("the balloon does not offer VERSION_1 and MUST_TELL_HOST");
        }
        write(DRIVER_FEATURES_SEL, 0);
        write(DRIVER_FEATURES, F_MUST_TELL_HOST);
        write(DRIVER_FEATURES_SEL, 1);
        write(DRIVER_FEATURES, F_VERSION_1_HIGH);
        write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if read(STATUS) & FEATURES_OK == 0 {
            return Err("the balloon refused FEATURES_OK");
        }
        for queue in [INFLATE, DEFLATE] {
            write(QUEUE_SEL, u32::from(queue));
            if read(QUEUE_NUM_MAX) < u32::from(QUEUE_SIZE) {
                return Err("a balloon queue is smaller than 4 entries");
            }
            // SAFETY: only this driver touches RINGS, and the guest is single-threaded.
            let ring = unsafe { &*addr_of!(RINGS[queue as usize]) };
            let addresses = [
                (QUEUE_DESC_LOW, QUEUE_DESC_HIGH, ring.desc.as_ptr() as u64),
                (
                    QUEUE_DRIVER_LOW,
                    QUEUE_DRIVER_HIGH,
                    ring.avail.as_ptr() as u64,
                ),
                (
                    QUEUE_DEVICE_LOW,
                    QUEUE_DEVICE_HIGH,
                    ring.used.as_ptr() as u64,
                ),
            ];
            write(QUEUE_NUM, u32::from(QUEUE_SIZE));
            for (low, high, gpa) in addresses {
                write(low, gpa as u32);
                write(high, (gpa >> 32) as u32);
            }
            write(QUEUE_READY, 1);
            if read(QUEUE_READY) != 1 {
                return Err("the balloon refused a queue");
            }
        }
        write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        Balloon::check_status()?;
        Ok(Balloon { sent: [0; 2] })
    }

    fn check_status() -> Result<(), &'static str> {
        match read(STATUS) {
            s if s & DEVICE_NEEDS_RESET != 0 => Err("the balloon set DEVICE_NEEDS_RESET"),
            s if s & DRIVER_OK == 0 => Err("the balloon dropped DRIVER_OK"),
            _ => Ok(()),
        }
    }

    /// Sends the 4 KiB frames of `gpas` (4 KiB aligned) on `queue` ([`INFLATE`] or
    /// [`DEFLATE`]), [`PFNS_PER_REQUEST`] a request, and waits for each to be used: with
    /// MUST_TELL_HOST a deflated page is the guest's again only then.
    pub fn send(&mut self, queue: u16, gpas: &[u64]) -> Result<(), &'static str> {
        for chunk in gpas.chunks(PFNS_PER_REQUEST) {
            self.request(queue, chunk)?;
        }
        Ok(())
    }

    fn request(&mut self, queue: u16, gpas: &[u64]) -> Result<(), &'static str> {
        let index = usize::from(queue);
        // SAFETY: only this driver touches RINGS; the device reads them only between the
        // notification below and the used-ring update this function waits for.
        let ring = unsafe { &mut *addr_of_mut!(RINGS[index]) };
        for (slot, gpa) in ring.pfns.iter_mut().zip(gpas) {
            *slot = u32::try_from(gpa >> 12).map_err(|_| "a frame above 16 TiB")?;
        }
        let slot = usize::from(self.sent[index] % QUEUE_SIZE);
        let mut descriptor = [0u8; 16];
        descriptor[..8].copy_from_slice(&(ring.pfns.as_ptr() as u64).to_le_bytes());
        descriptor[8..12].copy_from_slice(&(gpas.len() as u32 * 4).to_le_bytes());
        ring.desc[slot] = descriptor;
        ring.avail[2 + slot] = slot as u16;
        self.sent[index] = self.sent[index].wrapping_add(1);
        fence(Ordering::SeqCst);
        // SAFETY: the available ring's idx, a field of the ring above.
        unsafe { write_volatile(addr_of_mut!(ring.avail[1]), self.sent[index]) };
        fence(Ordering::SeqCst);
        write(QUEUE_NOTIFY, u32::from(queue));
        for _ in 0..MAX_POLLS {
            // SAFETY: the used ring's flags and idx (le16 each, one u32), written by the device.
            let used = unsafe { read_volatile(addr_of!(ring.used[0])) } >> 16;
            if used as u16 == self.sent[index] {
                fence(Ordering::SeqCst);
                return Balloon::check_status();
            }
            Balloon::check_status()?;
            core::hint::spin_loop();
        }
        Err("a balloon request was never used")
    }
}
