//! A minimal polling driver for the partition's virtio balloon (VIRTIO 1.2 §5.5) on its
//! virtio-mmio window (version 2, §4.2.2) at guest-physical `0xFEB0_0000`
//! (`docs/dynamic-memory.md`): the initialization of §3.1.1 with VERSION_1 and
//! MUST_TELL_HOST, then the inflate (0) and deflate (1) queues as split virtqueues (§2.7) of
//! one descriptor per request, each a buffer of le32 4 KiB frame numbers (the transport and
//! the rings: `virtio_mmio.rs`). No interrupts: after
//! QueueNotify the driver polls the used ring's index (the hypervisor answers a notification
//! before the write returns, or soon after). The statistics queue is left unset.
//!
//! Every refusal (a missing device, a feature not offered, DEVICE_NEEDS_RESET, a buffer that
//! never comes back) is an `Err` naming it: the caller reports it, never a quiet pass.

use crate::virtio_mmio::{DeviceMemory, Ring, Window, F_VERSION_1_HIGH, MAX_POLLS, RING_BYTES};

/// The balloon's virtio-mmio window.
const WINDOW: Window = Window(0xFEB0_0000);
/// Device type 5: a memory balloon.
const BALLOON_DEVICE: u32 = 5;
/// Feature bit MUST_TELL_HOST (bit 0 of word 0).
const F_MUST_TELL_HOST: u32 = 1;

/// The queues this driver uses.
pub const INFLATE: u16 = 0;
pub const DEFLATE: u16 = 1;
/// Frame numbers one request carries (the device takes at most 1024 a chain).
pub const PFNS_PER_REQUEST: usize = 1024;
/// Entries of each queue this driver sets up (one request is in flight at a time).
const QUEUE_SIZE: u16 = 4;

/// The inflate and deflate rings, and the frame numbers of the request in flight (the
/// guest is single-threaded; only [`Balloon`] uses them).
static INFLATE_RING: DeviceMemory<RING_BYTES> = DeviceMemory::new();
static DEFLATE_RING: DeviceMemory<RING_BYTES> = DeviceMemory::new();
static PFNS: DeviceMemory<{ 4 * PFNS_PER_REQUEST }> = DeviceMemory::new();

/// The balloon, initialized, its inflate and deflate queues live.
pub struct Balloon {
    rings: [Ring; 2],
}

impl Balloon {
    /// Finds the device and initializes it (§3.1.1): reset, ACKNOWLEDGE, DRIVER, features
    /// VERSION_1 and MUST_TELL_HOST, FEATURES_OK, the two queues, DRIVER_OK.
    pub fn init() -> Result<Balloon, &'static str> {
        WINDOW
            .find(BALLOON_DEVICE)
            .map_err(|_| "no virtio balloon at 0xFEB00000")?;
        WINDOW
            .negotiate(F_MUST_TELL_HOST, F_VERSION_1_HIGH)
            .map_err(|_| "the balloon refused VERSION_1 and MUST_TELL_HOST")?;
        let rings = [
            Ring::new(&INFLATE_RING, QUEUE_SIZE),
            Ring::new(&DEFLATE_RING, QUEUE_SIZE),
        ];
        for (queue, ring) in [(INFLATE, &rings[0]), (DEFLATE, &rings[1])] {
            WINDOW.enable_queue(queue, ring)?;
        }
        WINDOW.driver_ok()?;
        Ok(Balloon { rings })
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
        for (i, gpa) in gpas.iter().enumerate() {
            let pfn = u32::try_from(gpa >> 12).map_err(|_| "a frame above 16 TiB")?;
            PFNS.write_bytes(4 * i, &pfn.to_le_bytes());
        }
        let ring = &mut self.rings[usize::from(queue)];
        let slot = ring.available() % QUEUE_SIZE;
        ring.set_descriptor(slot, PFNS.base(), gpas.len() as u32 * 4, 0, 0);
        ring.make_available(slot);
        WINDOW.notify(queue);
        // The device reads the frame numbers only between the notification and the used-ring
        // update waited for here.
        for _ in 0..MAX_POLLS {
            if ring.used_idx() == ring.available() {
                return WINDOW.check_status();
            }
            WINDOW.check_status()?;
            core::hint::spin_loop();
        }
        Err("a balloon request was never used")
    }
}
