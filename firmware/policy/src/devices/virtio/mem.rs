//! The virtio memory device (VIRTIO 1.2 §5.15, device ID 24) on a virtio-mmio window:
//! memory hot(un)plug in blocks, from one region of guest-physical space the device manages.
//!
//! The host asks for an amount of memory ([`VirtioMem::set_requested_size`], the
//! `requested_size` config field); the driver picks blocks and asks, one request at a time on
//! the guest-request queue (0), to plug or unplug them. The device keeps which blocks are
//! plugged ([`VirtioMem::plugged_ranges`]); `plugged_size` follows it.
//!
//! A request the device can answer alone — STATE, and every request the rules refuse — is
//! answered inside [`VirtioMem::process`]: the response written, the buffer used, the
//! interrupt raised. A valid PLUG, UNPLUG or UNPLUG_ALL needs the hypervisor to map or unmap
//! memory, so it comes out as a [`MemRequest`] carrying a [`Completion`]; the driver gets its
//! answer when the caller passes that to [`VirtioMem::complete`]. One request is in flight at
//! a time (Linux sends one and waits); the ones behind it stay in the ring until it completes.
//!
//! The rules (§5.15.6): a range not aligned to `block_size`, of no blocks, or reaching outside
//! the usable region is an ERROR, as is plugging a plugged block or unplugging an unplugged
//! one; plugging past `requested_size` is a NACK, decided by the device before the hypervisor
//! is asked. An unknown request type is answered ERROR rather than treated as a broken driver,
//! so that a driver of a later revision learns the device does not know it. Choices the
//! specification leaves to the device:
//! - `usable_region_size` is the whole region, always: it is then never below
//!   `requested_size` and never has to shrink or grow (so no configuration notification for it).
//! - A refusal by the hypervisor (`done = false`) is BUSY, "cannot be processed right now",
//!   for every request (PLUG: no free memory to back it). Not NACK for PLUG: NACK says the
//!   request goes against `requested_size`, and Linux asks again at once, so a host short of
//!   memory would see the same request thousands of times a second. After BUSY Linux waits
//!   for its retry timer (50 s at first) or a configuration-change interrupt, which the
//!   hypervisor raises with [`VirtioMem::retry_refused`] when it may have memory again.
//! - UNPLUG_ALL with nothing plugged is acknowledged by the device alone.
//! - VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE is offered and required (FEATURES_OK does not stick
//!   without it, as §5.15.4.2 allows): the hypervisor never maps unplugged blocks, so a
//!   driver that might read them (Linux before 5.16 for a dump) would fault its partition.
//!
//! A device reset leaves the blocks as they are (§5.15.4.2: the device MUST NOT change their
//! state on a device reset); the new driver finds `plugged_size` and unplugs. A request in
//! flight across a reset must still be completed: the blocks follow what the hypervisor did,
//! because the mapping changed whether or not anyone hears of it, but the answer goes nowhere
//! (the rings it belonged to are gone) and no new request is taken until then.
//!
//! A malformed buffer — a request shorter than 24 bytes, less than 10 device-writable bytes
//! for the response, a device-readable descriptor after a device-writable one — breaks the
//! virtqueue rules and puts the device into DEVICE_NEEDS_RESET, like any queue error.

use alloc::vec::Vec;
use core::ops::Range;

use super::mem_blocks::BlockBitmap;
use super::mmio::{read_config, MmioTransport, TransportEvent, CONFIG_OFFSET};
use super::queue::Descriptor;
use super::{interrupt, GuestError, QueueMemory};

/// Device type 24: the memory device.
pub const DEVICE_ID: u32 = 24;
/// `node_id` is valid and is an ACPI proximity domain.
pub const F_ACPI_PXM: u64 = 1 << 0;
/// The driver must not read unplugged blocks.
pub const F_UNPLUGGED_INACCESSIBLE: u64 = 1 << 1;
/// QueueNumMax of the guest-request queue. Linux has one request out at a time, so a small
/// ring loses nothing and bounds the work of a call.
pub const QUEUE_SIZE: u16 = 32;
/// Bytes of a request: type, padding, then address, block count and padding (§5.15.6).
pub const REQUEST_SIZE: usize = 24;
/// Bytes of a response: type, padding, then the state of a STATE request.
pub const RESPONSE_SIZE: usize = 10;
/// The smallest block the device uses: a 4 KiB page, the smallest the SLAT maps.
pub const MIN_BLOCK_SIZE: u64 = 4096;
/// The most blocks one region has: 1 TiB of 2 MiB blocks, a 64 KiB bitmap.
pub const MAX_BLOCKS: u64 = 1 << 19;

/// Request types (§5.15.6).
pub mod request {
    /// Plug consecutive unplugged blocks.
    pub const PLUG: u16 = 0;
    /// Unplug consecutive plugged blocks.
    pub const UNPLUG: u16 = 1;
    /// Unplug every plugged block.
    pub const UNPLUG_ALL: u16 = 2;
    /// The state of consecutive blocks.
    pub const STATE: u16 = 3;
}

/// Response types (§5.15.6).
pub mod response {
    /// Done.
    pub const ACK: u16 = 0;
    /// Refused for now (plugging more than requested, no memory).
    pub const NACK: u16 = 1;
    /// Cannot be processed now; try again.
    pub const BUSY: u16 = 2;
    /// Against the rules (a bad range, a block in the wrong state).
    pub const ERROR: u16 = 3;
}

/// The states a STATE request answers (§5.15.6.4).
pub mod state {
    /// Every block of the range is plugged.
    pub const PLUGGED: u16 = 0;
    /// Every block of the range is unplugged.
    pub const UNPLUGGED: u16 = 1;
    /// Some of each.
    pub const MIXED: u16 = 2;
}

const GUEST_QUEUE: u16 = 0;
/// Bytes of configuration space: `struct virtio_mem_config`.
const CONFIG_SIZE: usize = 56;
/// The most bytes one request chain may describe; Linux's are 24 + 10.
const MAX_CHAIN_BYTES: u64 = 4096;

/// The region one device manages, as the host lays it out.
///
/// `block_size` is a power of two of at least [`MIN_BLOCK_SIZE`]; `addr` and `region_size` are
/// multiples of it, the region at most [`MAX_BLOCKS`] blocks and ending below 2^64. The
/// firmware passes 2 MiB blocks and 128 MiB-aligned regions; anything else is brought into
/// line by [`VirtioMem::new`] (block size rounded up, address up, size down), never trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemConfig {
    /// Guest-physical start of the region.
    pub addr: u64,
    /// Bytes of the region.
    pub region_size: u64,
    /// Bytes of a block: the unit of plugging.
    pub block_size: u64,
    /// The region's ACPI proximity domain (its vnode), as the guest's SRAT numbers it.
    pub node_id: u16,
}

impl MemConfig {
    /// This configuration brought into line with the rules on [`MemConfig`].
    fn checked(self) -> MemConfig {
        let block_size = self
            .block_size
            .max(MIN_BLOCK_SIZE)
            .checked_next_power_of_two()
            .unwrap_or(1 << 63);
        let addr = self.addr.checked_next_multiple_of(block_size);
        let room = addr.map_or(0, |addr| u64::MAX - addr);
        let blocks = (self.region_size.min(room) / block_size).min(MAX_BLOCKS);
        MemConfig {
            addr: addr.unwrap_or(0),
            region_size: blocks * block_size,
            block_size,
            node_id: self.node_id,
        }
    }
}

/// Work for the caller, taken from the driver's queue.
#[derive(Debug, PartialEq, Eq)]
pub enum MemRequest {
    /// Map `bytes` of memory at guest-physical `gpa` (whole blocks, all unplugged, inside the
    /// region), then [`VirtioMem::complete`].
    Plug {
        /// Where the blocks start.
        gpa: u64,
        /// How many bytes (a multiple of the block size).
        bytes: u64,
        /// Answers the driver.
        completion: Completion,
    },
    /// Unmap `bytes` of memory at guest-physical `gpa` (whole blocks, all plugged), then
    /// [`VirtioMem::complete`].
    Unplug {
        /// Where the blocks start.
        gpa: u64,
        /// How many bytes (a multiple of the block size).
        bytes: u64,
        /// Answers the driver.
        completion: Completion,
    },
    /// Unmap everything plugged, then [`VirtioMem::complete`].
    UnplugAll {
        /// What is plugged now: (guest-physical start, bytes), in order, merged.
        ranges: Vec<(u64, u64)>,
        /// Answers the driver.
        completion: Completion,
    },
}

/// The receipt for the request in flight. Only the device makes one; it is consumed by
/// [`VirtioMem::complete`], and must be, even after a reset: no other request is taken until.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "the driver waits until the request is completed"]
pub struct Completion {
    ticket: u32,
}

/// What an MMIO write or a completion asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemEvent {
    /// Nothing.
    None,
    /// There is queue work: call [`VirtioMem::process`].
    QueueWork,
    /// The driver reset the device. The blocks stay as they are; a request in flight must
    /// still be completed.
    Reset,
}

/// A block state change the hypervisor is carrying out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Plug(Range<usize>),
    Unplug(Range<usize>),
    UnplugAll,
}

/// The request handed to the caller and not yet completed.
#[derive(Clone, Debug)]
struct InFlight {
    ticket: u32,
    head: u16,
    /// The transport's epoch when it was taken: its rings are gone once that moved on.
    epoch: u32,
    /// The device-writable descriptors the response goes into.
    response: Vec<Descriptor>,
    change: Change,
}

/// A request chain, checked for shape: the request's first [`REQUEST_SIZE`] bytes and where
/// the response goes.
struct Message {
    head: u16,
    request: [u8; REQUEST_SIZE],
    response: Vec<Descriptor>,
}

/// What the device makes of a request.
enum Decision {
    /// Answer it now: response type and, for STATE, the state.
    Answer(u16, u16),
    /// Hand it to the caller.
    Hand(Change),
}

/// A virtio memory device behind a virtio-mmio window.
#[derive(Clone, Debug)]
pub struct VirtioMem {
    transport: MmioTransport,
    config: MemConfig,
    /// Which of the partition's virtio-mem devices (the `n` of `DeviceId::VirtioMem`).
    index: u8,
    /// The host's wish, in bytes: a multiple of the block size, at most the region.
    requested_size: u64,
    blocks: BlockBitmap,
    in_flight: Option<InFlight>,
    next_ticket: u32,
}

impl VirtioMem {
    /// A device managing `config`'s region (brought into line, see [`MemConfig`]), nothing
    /// plugged and nothing requested; device index 0.
    pub fn new(config: MemConfig) -> VirtioMem {
        let config = config.checked();
        let mut transport = MmioTransport::new(
            DEVICE_ID,
            F_ACPI_PXM | F_UNPLUGGED_INACCESSIBLE,
            &[QUEUE_SIZE],
        );
        transport.require_features(F_UNPLUGGED_INACCESSIBLE);
        VirtioMem {
            transport,
            config,
            index: 0,
            requested_size: 0,
            // Bounded by MAX_BLOCKS.
            blocks: BlockBitmap::new((config.region_size / config.block_size) as usize),
            in_flight: None,
            next_ticket: 0,
        }
    }

    /// The same device as the partition's virtio-mem device `index` (`DeviceId::VirtioMem`).
    pub fn with_index(mut self, index: u8) -> VirtioMem {
        self.index = index;
        self
    }

    /// The region as the device uses it.
    pub fn config(&self) -> MemConfig {
        self.config
    }

    /// A guest read of `size` bytes at `offset` in the window.
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u64 {
        if offset < CONFIG_OFFSET {
            return u64::from(self.transport.read(offset, size));
        }
        read_config(&self.config_bytes(), offset, size, 8)
    }

    /// A guest write of `size` bytes at `offset` in the window. The configuration space is
    /// read-only to the driver (§5.15.4): writes there are ignored.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64) -> MemEvent {
        if offset >= CONFIG_OFFSET {
            return MemEvent::None;
        }
        // Registers are 32 bits; wider accesses are refused by the transport.
        match self.transport.write(offset, size, value as u32) {
            TransportEvent::None => MemEvent::None,
            TransportEvent::QueueWork => MemEvent::QueueWork,
            // Nothing of the device's own changes: the blocks stay, the request in flight
            // stays until the caller completes it.
            TransportEvent::Reset => MemEvent::Reset,
        }
    }

    /// Services the guest-request queue: answers what the device can answer alone and stops
    /// at the first request for the caller, or when one is already in flight. At most
    /// [`QUEUE_SIZE`] chains a call, as many as a ring can hold. A guest error puts the
    /// device into DEVICE_NEEDS_RESET.
    pub fn process(&mut self, memory: &dyn QueueMemory) -> Option<MemRequest> {
        if self.transport.take_notified() & (1 << GUEST_QUEUE) == 0 {
            return None;
        }
        for _ in 0..QUEUE_SIZE {
            if self.in_flight.is_some() {
                // Left in the ring; the completion says to come back.
                self.transport.renotify(GUEST_QUEUE);
                return None;
            }
            match self.take_request(memory) {
                Ok(Some(Decision::Answer(..))) => {}
                Ok(Some(Decision::Hand(_))) => return self.handed_request(memory),
                Ok(None) => return None,
                Err(error) => {
                    self.transport.fail(error);
                    return None;
                }
            }
        }
        None
    }

    /// Ends the request in flight: `done` says the hypervisor did what it asked (the blocks
    /// change state, the driver gets ACK), otherwise nothing changes and the driver gets BUSY.
    /// After a reset the blocks still follow `done`, but the answer is dropped.
    /// [`MemEvent::QueueWork`]: requests wait behind it.
    pub fn complete(
        &mut self,
        completion: Completion,
        done: bool,
        memory: &dyn QueueMemory,
    ) -> MemEvent {
        let Some(in_flight) = self
            .in_flight
            .take_if(|in_flight| in_flight.ticket == completion.ticket)
        else {
            return self.pending();
        };
        let answer = if done {
            self.apply(&in_flight.change);
            response::ACK
        } else {
            response::BUSY
        };
        if in_flight.epoch == self.transport.epoch() && self.transport.is_live() {
            if let Err(error) =
                self.answer(in_flight.head, &in_flight.response, (answer, 0), memory)
            {
                self.transport.fail(error);
            }
        }
        self.pending()
    }

    /// Sets the host's wish, in bytes: rounded down to whole blocks, at most the region. A
    /// change raises a configuration-change interrupt so that the driver plugs or unplugs.
    pub fn set_requested_size(&mut self, bytes: u64) {
        let bytes = bytes.min(self.config.region_size);
        let bytes = bytes - bytes % self.config.block_size;
        if bytes != self.requested_size {
            self.requested_size = bytes;
            self.transport.config_changed();
        }
    }

    /// Tells the driver to try again what it was refused: a configuration-change interrupt
    /// with nothing changed (Linux's driver then runs at once instead of at its retry timer).
    pub fn retry_refused(&mut self) {
        self.transport.config_changed();
    }

    /// The host's wish, in bytes.
    pub fn requested_size(&self) -> u64 {
        self.requested_size
    }

    /// Whether a driver runs the device (DRIVER_OK, not failed): only then can a wish above
    /// what is plugged be carried out.
    pub fn driver_live(&self) -> bool {
        self.transport.is_live()
    }

    /// Bytes plugged (`plugged_size`).
    pub fn plugged_size(&self) -> u64 {
        // At most MAX_BLOCKS blocks of a region that fits below 2^64.
        self.blocks.ones() as u64 * self.config.block_size
    }

    /// The plugged memory as (guest-physical start, bytes), in order, adjacent blocks merged.
    pub fn plugged_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.blocks
            .runs()
            .map(|run| (self.block_address(run.start), self.bytes(run.len())))
    }

    /// Whether the block holding guest-physical `gpa` is plugged (outside the region: no).
    pub fn is_plugged(&self, gpa: u64) -> bool {
        gpa.checked_sub(self.config.addr)
            .filter(|&offset| offset < self.config.region_size)
            // Below the region's size: a block index of the bitmap.
            .is_some_and(|offset| self.blocks.get((offset / self.config.block_size) as usize))
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

    /// Takes one chain and answers it or makes it the request in flight; `None` when the
    /// ring is empty.
    fn take_request(&mut self, memory: &dyn QueueMemory) -> Result<Option<Decision>, GuestError> {
        let Some(ring) = self.transport.queue_mut(GUEST_QUEUE) else {
            return Ok(None);
        };
        let Some(chain) = ring.pop(memory, MAX_CHAIN_BYTES)? else {
            return Ok(None);
        };
        let message = read_message(chain.head, &chain.descriptors, memory)?;
        let decision = self.decide(&message.request);
        match &decision {
            Decision::Answer(kind, state) => {
                self.answer(message.head, &message.response, (*kind, *state), memory)?;
            }
            Decision::Hand(change) => {
                let ticket = self.next_ticket;
                self.next_ticket = ticket.wrapping_add(1);
                self.in_flight = Some(InFlight {
                    ticket,
                    head: message.head,
                    epoch: self.transport.epoch(),
                    response: message.response,
                    change: change.clone(),
                });
            }
        }
        Ok(Some(decision))
    }

    /// The request in flight, as the caller sees it. Buffers made available behind it are
    /// remembered, so that its completion says to come back for them.
    fn handed_request(&mut self, memory: &dyn QueueMemory) -> Option<MemRequest> {
        let more = self
            .transport
            .queue_mut(GUEST_QUEUE)
            .is_some_and(|ring| ring.has_available(memory).unwrap_or(true));
        if more {
            self.transport.renotify(GUEST_QUEUE);
        }
        let in_flight = self.in_flight.as_ref()?;
        let completion = Completion {
            ticket: in_flight.ticket,
        };
        Some(match &in_flight.change {
            Change::Plug(blocks) => MemRequest::Plug {
                gpa: self.block_address(blocks.start),
                bytes: self.bytes(blocks.len()),
                completion,
            },
            Change::Unplug(blocks) => MemRequest::Unplug {
                gpa: self.block_address(blocks.start),
                bytes: self.bytes(blocks.len()),
                completion,
            },
            Change::UnplugAll => MemRequest::UnplugAll {
                ranges: self.plugged_ranges().collect(),
                completion,
            },
        })
    }

    /// The rules of §5.15.6 for one request.
    fn decide(&self, request: &[u8; REQUEST_SIZE]) -> Decision {
        let error = Decision::Answer(response::ERROR, 0);
        let kind = u16::from_le_bytes([request[0], request[1]]);
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&request[8..16]);
        let addr = u64::from_le_bytes(addr);
        let count = u16::from_le_bytes([request[16], request[17]]);
        match kind {
            request::PLUG => {
                let Some(blocks) = self.blocks_of(addr, count) else {
                    return error;
                };
                if self.blocks.count(blocks.clone()) != 0 {
                    return error;
                }
                let after = self.plugged_size().saturating_add(self.bytes(blocks.len()));
                if after > self.requested_size {
                    return Decision::Answer(response::NACK, 0);
                }
                Decision::Hand(Change::Plug(blocks))
            }
            request::UNPLUG => match self.blocks_of(addr, count) {
                Some(blocks) if self.blocks.count(blocks.clone()) == blocks.len() => {
                    Decision::Hand(Change::Unplug(blocks))
                }
                _ => error,
            },
            request::UNPLUG_ALL if self.blocks.ones() == 0 => Decision::Answer(response::ACK, 0),
            request::UNPLUG_ALL => Decision::Hand(Change::UnplugAll),
            request::STATE => {
                let Some(blocks) = self.blocks_of(addr, count) else {
                    return error;
                };
                let state = match self.blocks.count(blocks.clone()) {
                    0 => state::UNPLUGGED,
                    plugged if plugged == blocks.len() => state::PLUGGED,
                    _ => state::MIXED,
                };
                Decision::Answer(response::ACK, state)
            }
            _ => error,
        }
    }

    /// The blocks `count` blocks from guest-physical `addr` name, if `addr` is aligned,
    /// `count` is not 0 and all of them lie in the usable region (all of it).
    fn blocks_of(&self, addr: u64, count: u16) -> Option<Range<usize>> {
        let block_size = self.config.block_size;
        if count == 0 || !addr.is_multiple_of(block_size) {
            return None;
        }
        let first = addr.checked_sub(self.config.addr)? / block_size;
        let end = first.checked_add(u64::from(count))?;
        // Both at most the bitmap's length, a usize.
        (end <= self.blocks.len() as u64).then_some(first as usize..end as usize)
    }

    fn apply(&mut self, change: &Change) {
        let before = self.blocks.ones();
        match change {
            Change::Plug(blocks) => self.blocks.set(blocks.clone(), true),
            Change::Unplug(blocks) => self.blocks.set(blocks.clone(), false),
            Change::UnplugAll => self.blocks.clear(),
        }
        if self.blocks.ones() != before {
            // plugged_size moved: no interrupt for it (§5.15.4.2), but a new generation.
            self.transport.bump_config_generation();
        }
    }

    /// Writes the response (type, state) into `response`, returns `head` to the driver and
    /// raises the used-buffer interrupt if the driver wants one.
    fn answer(
        &mut self,
        head: u16,
        response: &[Descriptor],
        (kind, state): (u16, u16),
        memory: &dyn QueueMemory,
    ) -> Result<(), GuestError> {
        let mut bytes = [0u8; RESPONSE_SIZE];
        bytes[..2].copy_from_slice(&kind.to_le_bytes());
        bytes[8..].copy_from_slice(&state.to_le_bytes());
        let mut written = 0;
        for descriptor in response {
            let take = (RESPONSE_SIZE - written).min(descriptor.len as usize);
            if take == 0 {
                continue;
            }
            if !memory.write(descriptor.addr, &bytes[written..written + take]) {
                return Err(GuestError::BadAddress {
                    gpa: descriptor.addr,
                });
            }
            written += take;
        }
        let Some(ring) = self.transport.queue_mut(GUEST_QUEUE) else {
            return Ok(());
        };
        if ring.push_used(memory, head, RESPONSE_SIZE as u32)? {
            self.transport.raise(interrupt::USED_BUFFER);
        }
        Ok(())
    }

    /// [`MemEvent::QueueWork`] when notified requests wait.
    fn pending(&self) -> MemEvent {
        if self.transport.has_notified() {
            MemEvent::QueueWork
        } else {
            MemEvent::None
        }
    }

    fn block_address(&self, block: usize) -> u64 {
        // Inside the region, which ends below 2^64.
        self.config.addr + self.bytes(block)
    }

    fn bytes(&self, blocks: usize) -> u64 {
        blocks as u64 * self.config.block_size
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut bytes = [0u8; CONFIG_SIZE];
        let region = self.config.region_size;
        bytes[..8].copy_from_slice(&self.config.block_size.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.config.node_id.to_le_bytes());
        // 10..16: padding.
        for (at, field) in [
            self.config.addr,
            region,
            // usable_region_size: the whole region (see the module notes).
            region,
            self.plugged_size(),
            self.requested_size,
        ]
        .into_iter()
        .enumerate()
        {
            bytes[16 + 8 * at..24 + 8 * at].copy_from_slice(&field.to_le_bytes());
        }
        bytes
    }
}

/// Checks a request chain's shape (device-readable descriptors, then device-writable ones;
/// at least [`REQUEST_SIZE`] bytes of the first and [`RESPONSE_SIZE`] of the second) and
/// reads the request. Bytes past the request are ignored, as §5.15.6 asks.
fn read_message(
    head: u16,
    descriptors: &[Descriptor],
    memory: &dyn QueueMemory,
) -> Result<Message, GuestError> {
    let mut request = [0u8; REQUEST_SIZE];
    let (mut readable, mut writable) = (0u64, 0u64);
    let mut response = Vec::new();
    for descriptor in descriptors {
        let len = u64::from(descriptor.len);
        if descriptor.writable {
            writable += len;
            response.push(*descriptor);
            continue;
        }
        if !response.is_empty() {
            return Err(GuestError::WrongDirection);
        }
        // `readable` so far is below REQUEST_SIZE whenever bytes are still wanted.
        let have = readable.min(REQUEST_SIZE as u64) as usize;
        let take = (REQUEST_SIZE - have).min(descriptor.len as usize);
        if take > 0 && !memory.read(descriptor.addr, &mut request[have..have + take]) {
            return Err(GuestError::BadAddress {
                gpa: descriptor.addr,
            });
        }
        readable += len;
    }
    for (len, needed) in [(readable, REQUEST_SIZE), (writable, RESPONSE_SIZE)] {
        if len < needed as u64 {
            return Err(GuestError::BufferTooSmall {
                len,
                needed: needed as u64,
            });
        }
    }
    Ok(Message {
        head,
        request,
        response,
    })
}

impl crate::devices::device::Device for VirtioMem {
    fn read(&mut self, at: crate::devices::device::Register, _now: u64) -> u64 {
        self.mmio_read(at.offset, at.size)
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        _now: u64,
    ) -> crate::devices::device::Effect {
        use crate::devices::device::{DeviceId, Effect};
        let id = DeviceId::VirtioMem(self.index);
        match self.mmio_write(at.offset, at.size, value) {
            MemEvent::None => Effect::None,
            MemEvent::QueueWork => Effect::QueueWork(id),
            MemEvent::Reset => Effect::DriverReset(id),
        }
    }

    fn interrupt_line(&self) -> Option<bool> {
        Some(self.interrupt_asserted())
    }
}
