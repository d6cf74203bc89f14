//! The traditional memory balloon (VIRTIO 1.2 §5.5, device ID 5) on a virtio-mmio window.
//!
//! The host sets a target ([`VirtioBalloon::set_target_pages`], the `num_pages` config
//! field); the driver gives pages up through the inflate queue (0), takes them back through
//! the deflate queue (1) and reports how full it is through the statistics queue (2), and
//! writes how many pages the balloon holds into `actual`. Balloon pages are 4 KiB guest
//! frames, named by their frame number (guest-physical address >> 12), whatever the guest's
//! own page size.
//!
//! Features offered: VERSION_1, STATS_VQ, and MUST_TELL_HOST — the driver must wait for the
//! deflate buffer to come back before it touches a deflated page, which is what lets the
//! hypervisor map the page back first (Linux waits anyway; the bit makes it the contract).
//! DEFLATE_ON_OOM is the host's choice ([`BalloonConfig::deflate_on_oom`]): with it, a guest
//! about to run out of memory deflates on its own (still through the deflate queue), so the
//! target becomes a request rather than a limit.
//!
//! Inflate and deflate buffers come out of [`VirtioBalloon::process`] as [`BalloonRequest`]s
//! carrying a [`Completion`]; the buffer goes back to the driver only when the caller passes
//! that to [`VirtioBalloon::complete`], after it has unmapped (inflate) or mapped back
//! (deflate) the pages. The protocol has no way to refuse single pages: a frame the
//! hypervisor cannot take stays mapped and the guest merely believes it gone. The statistics
//! buffer is kept by the device and returned on [`VirtioBalloon::request_stats`]; the driver
//! then refills it and makes it available again, which surfaces as [`BalloonRequest::Stats`].

use alloc::vec::Vec;

use super::mmio::{config_range, read_config, MmioTransport, TransportEvent, CONFIG_OFFSET};
use super::{interrupt, GuestError, QueueMemory};

/// Device type 5: the traditional memory balloon.
pub const DEVICE_ID: u32 = 5;
/// The driver must tell the host before it uses deflated pages.
pub const F_MUST_TELL_HOST: u64 = 1 << 0;
/// The statistics queue exists.
pub const F_STATS_VQ: u64 = 1 << 1;
/// The driver deflates the balloon when the guest runs out of memory.
pub const F_DEFLATE_ON_OOM: u64 = 1 << 2;
/// QueueNumMax of each of the three queues. Linux keeps one inflate or deflate buffer in
/// flight at a time (256 frames), so a small ring loses nothing and bounds the work of a call.
pub const QUEUE_SIZE: u16 = 64;
/// The most frame numbers one inflate or deflate chain may carry (Linux sends at most 256).
pub const MAX_PFNS_PER_BUFFER: usize = 1024;
/// The most tag/value pairs one statistics buffer may carry (Linux 6.1 sends 10).
pub const MAX_STATS_PER_BUFFER: usize = 64;
/// The balloon's page size: frame numbers count 4 KiB frames (§5.5.6).
pub const PAGE_SIZE: u64 = 4096;

const INFLATE_QUEUE: u16 = 0;
const DEFLATE_QUEUE: u16 = 1;
const STATS_QUEUE: u16 = 2;
/// Bytes of configuration space: `num_pages` (le32) and `actual` (le32).
const CONFIG_SIZE: u64 = 8;
/// Bytes of one statistics entry: tag (le16) and value (le64), packed.
const STAT_SIZE: usize = 10;

/// The host's choices for one balloon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalloonConfig {
    /// Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM.
    pub deflate_on_oom: bool,
}

/// Work for the caller, taken from the driver's queues.
#[derive(Debug, PartialEq, Eq)]
pub enum BalloonRequest {
    /// The driver gives these frames up: unmap them, then [`VirtioBalloon::complete`].
    Inflate {
        /// 4 KiB guest frame numbers, as the driver sent them (not yet checked against the
        /// partition's RAM: the caller skips any it does not own).
        pfns: Vec<u32>,
        /// Hands the buffer back to the driver.
        completion: Completion,
    },
    /// The driver wants these frames back: map them, then [`VirtioBalloon::complete`].
    Deflate {
        /// 4 KiB guest frame numbers, unchecked like [`BalloonRequest::Inflate`]'s.
        pfns: Vec<u32>,
        /// Hands the buffer back to the driver.
        completion: Completion,
    },
    /// The driver's memory statistics (§5.5.6.3), fresh after [`VirtioBalloon::request_stats`]
    /// or the driver's first report.
    Stats(BalloonStats),
}

/// The receipt for an inflate or deflate buffer the driver is waiting on. Only the device
/// makes one; it is consumed by [`VirtioBalloon::complete`] and void after a device reset.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "the driver waits until the buffer is completed"]
pub struct Completion {
    queue: u16,
    head: u16,
    epoch: u32,
}

/// One statistics report; each field is `None` when the driver did not send that tag.
/// Byte counts are in bytes, event counts are counts (§5.5.6.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalloonStats {
    /// Tag 0: bytes swapped in.
    pub swap_in: Option<u64>,
    /// Tag 1: bytes swapped out.
    pub swap_out: Option<u64>,
    /// Tag 2: major page faults.
    pub major_faults: Option<u64>,
    /// Tag 3: minor page faults.
    pub minor_faults: Option<u64>,
    /// Tag 4: free memory, in bytes.
    pub free: Option<u64>,
    /// Tag 5: total memory, in bytes.
    pub total: Option<u64>,
    /// Tag 6: memory available for new work without swapping, in bytes.
    pub available: Option<u64>,
    /// Tag 7: disk caches, in bytes.
    pub disk_caches: Option<u64>,
    /// Tag 8: successful huge page allocations.
    pub hugetlb_allocations: Option<u64>,
    /// Tag 9: failed huge page allocations.
    pub hugetlb_failures: Option<u64>,
}

impl BalloonStats {
    /// Parses the packed tag/value entries of a statistics buffer; unknown tags (later
    /// revisions add more) and a trailing partial entry are skipped.
    pub fn parse(bytes: &[u8]) -> BalloonStats {
        let mut stats = BalloonStats::default();
        for entry in bytes.chunks_exact(STAT_SIZE) {
            let tag = u16::from_le_bytes([entry[0], entry[1]]);
            let mut value = [0u8; 8];
            value.copy_from_slice(&entry[2..]);
            let value = Some(u64::from_le_bytes(value));
            match tag {
                0 => stats.swap_in = value,
                1 => stats.swap_out = value,
                2 => stats.major_faults = value,
                3 => stats.minor_faults = value,
                4 => stats.free = value,
                5 => stats.total = value,
                6 => stats.available = value,
                7 => stats.disk_caches = value,
                8 => stats.hugetlb_allocations = value,
                9 => stats.hugetlb_failures = value,
                _ => {}
            }
        }
        stats
    }
}

/// What an MMIO write asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonEvent {
    /// Nothing.
    None,
    /// There is queue work: call [`VirtioBalloon::process`].
    QueueWork,
    /// The driver reset the device. The new driver will believe every page is its own, and
    /// pending [`Completion`]s are void: map every ballooned frame back.
    Reset,
}

/// A virtio balloon behind a virtio-mmio window.
#[derive(Clone, Debug)]
pub struct VirtioBalloon {
    transport: MmioTransport,
    /// The host's target balloon size in 4 KiB pages (`num_pages`).
    target_pages: u32,
    /// The driver's balloon size in 4 KiB pages (`actual`), as it last wrote it.
    actual_pages: u32,
    /// The statistics buffer the device holds, to return on the next request.
    stats_head: Option<u16>,
    /// Inflate/deflate buffers handed to the caller and not yet completed, per queue.
    in_flight: [u16; 2],
}

impl VirtioBalloon {
    /// A balloon with a target of 0 pages.
    pub fn new(config: BalloonConfig) -> VirtioBalloon {
        let mut features = F_MUST_TELL_HOST | F_STATS_VQ;
        if config.deflate_on_oom {
            features |= F_DEFLATE_ON_OOM;
        }
        VirtioBalloon {
            transport: MmioTransport::new(DEVICE_ID, features, &[QUEUE_SIZE; 3]),
            target_pages: 0,
            actual_pages: 0,
            stats_head: None,
            in_flight: [0; 2],
        }
    }

    /// A guest read of `size` bytes at `offset` in the window.
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u64 {
        if offset < CONFIG_OFFSET {
            return u64::from(self.transport.read(offset, size));
        }
        read_config(&self.config_bytes(), offset, size, 8)
    }

    /// A guest write of `size` bytes at `offset` in the window.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64) -> BalloonEvent {
        if offset < CONFIG_OFFSET {
            // Registers are 32 bits; wider accesses are refused by the transport.
            return match self.transport.write(offset, size, value as u32) {
                TransportEvent::None => BalloonEvent::None,
                TransportEvent::QueueWork => BalloonEvent::QueueWork,
                TransportEvent::Reset => {
                    self.reset();
                    BalloonEvent::Reset
                }
            };
        }
        // Only `actual` (bytes 4..8) is the driver's to write; `num_pages` is the host's.
        if let Some(range) = config_range(offset, size, CONFIG_SIZE as usize, 8) {
            let mut config = self.config_bytes();
            let bytes = value.to_le_bytes();
            for (at, byte) in range.zip(bytes) {
                if at >= 4 {
                    config[at] = byte;
                }
            }
            self.actual_pages = u32::from_le_bytes([config[4], config[5], config[6], config[7]]);
        }
        BalloonEvent::None
    }

    /// Services the notified queues: at most [`QUEUE_SIZE`] chains a queue, each of at most
    /// [`QUEUE_SIZE`] descriptors. A guest error puts the device into DEVICE_NEEDS_RESET and
    /// ends the pass; requests taken before it are still returned.
    pub fn process(&mut self, memory: &dyn QueueMemory) -> Vec<BalloonRequest> {
        let mut requests = Vec::new();
        let notified = self.transport.take_notified();
        for queue in [INFLATE_QUEUE, DEFLATE_QUEUE, STATS_QUEUE] {
            if notified & (1 << queue) == 0 {
                continue;
            }
            if let Err(error) = self.drain(queue, memory, &mut requests) {
                self.transport.fail(error);
                break;
            }
        }
        requests
    }

    /// Returns an inflate or deflate buffer to the driver, with a used-buffer interrupt
    /// unless the driver suppressed it. A completion from before a reset (or from before its
    /// queue was set up again) is dropped. [`BalloonEvent::QueueWork`]: buffers held back
    /// while the ring was all in flight can now be taken; call [`process`](Self::process).
    pub fn complete(&mut self, completion: Completion, memory: &dyn QueueMemory) -> BalloonEvent {
        if completion.epoch != self.transport.epoch() {
            return BalloonEvent::None;
        }
        if let Some(count) = self.in_flight.get_mut(usize::from(completion.queue)) {
            *count = count.saturating_sub(1);
        }
        self.give_back(completion.queue, completion.head, memory);
        if self.transport.has_notified() {
            BalloonEvent::QueueWork
        } else {
            BalloonEvent::None
        }
    }

    /// Asks the driver for fresh statistics by returning the buffer it left with the device.
    /// Returns `false` when there is none to return (no statistics queue, or the driver has
    /// not refilled it since the last request); the answer arrives as a
    /// [`BalloonRequest::Stats`] from a later [`process`](Self::process).
    pub fn request_stats(&mut self, memory: &dyn QueueMemory) -> bool {
        if !self.transport.is_live() {
            return false;
        }
        match self.stats_head.take() {
            Some(head) => {
                self.give_back(STATS_QUEUE, head, memory);
                true
            }
            None => false,
        }
    }

    /// Sets the host's target, in 4 KiB pages; a change raises a configuration-change
    /// interrupt so the driver inflates or deflates towards it.
    pub fn set_target_pages(&mut self, pages: u32) {
        if pages != self.target_pages {
            self.target_pages = pages;
            self.transport.config_changed();
        }
    }

    /// The host's target, in 4 KiB pages.
    pub fn target_pages(&self) -> u32 {
        self.target_pages
    }

    /// The balloon size the driver last reported (`actual`), in 4 KiB pages. The driver's
    /// word only: the hypervisor's own count of unmapped frames is the one to trust.
    pub fn actual_pages(&self) -> u32 {
        self.actual_pages
    }

    /// Whether the interrupt line is asserted (InterruptStatus is non-zero): a level, to be
    /// driven onto the device's I/O APIC pin after every access and completion.
    pub fn interrupt_asserted(&self) -> bool {
        self.transport.interrupt_status() != 0
    }

    /// Whether the device is in DEVICE_NEEDS_RESET, and the guest error that put it there.
    pub fn guest_error(&self) -> Option<GuestError> {
        self.transport.last_error()
    }

    /// The features the driver accepted.
    pub fn negotiated_features(&self) -> u64 {
        self.transport.negotiated_features()
    }

    fn drain(
        &mut self,
        queue: u16,
        memory: &dyn QueueMemory,
        requests: &mut Vec<BalloonRequest>,
    ) -> Result<(), GuestError> {
        let epoch = self.transport.epoch();
        let max_bytes = if queue == STATS_QUEUE {
            (MAX_STATS_PER_BUFFER * STAT_SIZE) as u64
        } else {
            (MAX_PFNS_PER_BUFFER * 4) as u64
        };
        for _ in 0..QUEUE_SIZE {
            let Some(ring) = self.transport.queue_mut(queue) else {
                return Ok(());
            };
            // A driver never has more buffers out than its ring holds; one that seems to is
            // reusing descriptors, and waits until the caller completes some.
            let size = ring.size();
            if self
                .in_flight
                .get(usize::from(queue))
                .is_some_and(|&count| count >= size)
            {
                self.transport.renotify(queue);
                return Ok(());
            }
            let Some(ring) = self.transport.queue_mut(queue) else {
                return Ok(());
            };
            let Some(chain) = ring.pop(memory, max_bytes)? else {
                return Ok(());
            };
            let bytes = chain.read_all(memory)?;
            let completion = Completion {
                queue,
                head: chain.head,
                epoch,
            };
            match queue {
                STATS_QUEUE => {
                    // A driver sends one buffer at a time; an older one still held goes back.
                    if let Some(previous) = self.stats_head.replace(chain.head) {
                        self.give_back(STATS_QUEUE, previous, memory);
                    }
                    requests.push(BalloonRequest::Stats(BalloonStats::parse(&bytes)));
                }
                _ => {
                    let pfns = bytes
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    if let Some(count) = self.in_flight.get_mut(usize::from(queue)) {
                        *count += 1;
                    }
                    requests.push(if queue == INFLATE_QUEUE {
                        BalloonRequest::Inflate { pfns, completion }
                    } else {
                        BalloonRequest::Deflate { pfns, completion }
                    });
                }
            }
        }
        Ok(())
    }

    /// Puts `head` on `queue`'s used ring (nothing written into it) and raises the
    /// used-buffer interrupt if the driver wants one.
    fn give_back(&mut self, queue: u16, head: u16, memory: &dyn QueueMemory) {
        let Some(ring) = self.transport.queue_mut(queue) else {
            return;
        };
        match ring.push_used(memory, head, 0) {
            Ok(true) => self.transport.raise(interrupt::USED_BUFFER),
            Ok(false) => {}
            Err(error) => self.transport.fail(error),
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE as usize] {
        let mut bytes = [0u8; CONFIG_SIZE as usize];
        bytes[..4].copy_from_slice(&self.target_pages.to_le_bytes());
        bytes[4..].copy_from_slice(&self.actual_pages.to_le_bytes());
        bytes
    }

    fn reset(&mut self) {
        self.actual_pages = 0;
        self.stats_head = None;
        self.in_flight = [0; 2];
    }
}

impl crate::devices::device::Device for VirtioBalloon {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        self.mmio_read(at.offset, at.size)
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        let id = crate::devices::device::DeviceId::VirtioBalloon;
        match self.mmio_write(at.offset, at.size, value) {
            BalloonEvent::None => crate::devices::device::Effect::None,
            BalloonEvent::QueueWork => crate::devices::device::Effect::QueueWork(id),
            BalloonEvent::Reset => crate::devices::device::Effect::DriverReset(id),
        }
    }

    fn interrupt_line(&self) -> Option<bool> {
        Some(self.interrupt_asserted())
    }
}
