//! Split virtqueues (VIRTIO 1.2 §2.7): the descriptor table, the available ring the driver
//! fills and the used ring the device fills, all in guest memory.
//!
//! The driver's queue registers arrive as a raw [`QueueConfig`]; only [`SplitQueue::new`]
//! turns them into a queue the device uses, after checking the size (a power of two, at most
//! QueueNumMax: packed rings are not offered) and the ring alignments. Every later read is
//! bounded: a chain holds at most `size` descriptors (more is a loop), the available index may
//! run at most `size` entries ahead, and the bytes a chain describes are capped by the caller.
//! Indirect descriptors (VIRTIO_F_INDIRECT_DESC) are not offered, so none is accepted.
//!
//! Used-buffer interrupts are suppressed one of two ways (§2.7.7, §2.7.10). Without
//! VIRTIO_F_EVENT_IDX the driver's NO_INTERRUPT flag in the available ring says "none"; with
//! it (a device offers it and the transport tells the queue, [`SplitQueue::set_event_idx`])
//! the driver names the used index it wants an interrupt at (`used_event`, after the available
//! ring's entries) and the device names the available index it wants a notification at
//! (`avail_event`, after the used ring's entries). Completions can be batched: add several
//! with [`SplitQueue::add_used`], then ask once with [`SplitQueue::needs_interrupt`].
//! Both words lie inside the rings the driver sized, so reading or writing one outside guest
//! RAM is the same structural error as any ring access there.

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use super::{GuestError, QueueMemory};

/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (otherwise device-readable).
pub const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of descriptors (not offered).
pub const DESC_F_INDIRECT: u16 = 4;
/// Available-ring flag: the driver asks for no used-buffer interrupt.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Bytes of one descriptor table entry: addr (le64), len (le32), flags (le16), next (le16).
const DESC_SIZE: u64 = 16;
/// Bytes of one used ring element: id (le32), len (le32).
const USED_ELEM_SIZE: u64 = 8;
/// The ring headers: flags (le16) then idx (le16), before the entries.
const RING_HEADER: u64 = 4;

/// A queue's registers as the driver wrote them (QueueNum, QueueDesc, QueueDriver,
/// QueueDevice): nothing here is trusted until [`SplitQueue::new`] checks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// QueueNum: the queue size the driver chose.
    pub size: u32,
    /// QueueDesc: guest-physical address of the descriptor table.
    pub desc: u64,
    /// QueueDriver: guest-physical address of the available ring.
    pub driver: u64,
    /// QueueDevice: guest-physical address of the used ring.
    pub device: u64,
}

/// One descriptor of a chain, its address not yet checked against guest RAM (reads and
/// writes through [`QueueMemory`] do that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub writable: bool,
}

/// A descriptor chain taken from the available ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head's index: what the used ring element names.
    pub head: u16,
    /// The descriptors, in chain order (at most the queue size).
    pub descriptors: Vec<Descriptor>,
}

impl Chain {
    /// The bytes of all device-readable descriptors, concatenated: refuses a device-writable
    /// descriptor ([`GuestError::WrongDirection`]) and a range outside guest RAM.
    pub fn read_all(&self, memory: &dyn QueueMemory) -> Result<Vec<u8>, GuestError> {
        let mut bytes = Vec::new();
        for descriptor in &self.descriptors {
            if descriptor.writable {
                return Err(GuestError::WrongDirection);
            }
            let start = bytes.len();
            bytes.resize(start + descriptor.len as usize, 0);
            if !memory.read(descriptor.addr, &mut bytes[start..]) {
                return Err(GuestError::BadAddress {
                    gpa: descriptor.addr,
                });
            }
        }
        Ok(bytes)
    }
}

/// A checked, live split virtqueue: the driver set QueueReady with valid registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitQueue {
    index: u16,
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    /// The next available-ring entry the device will take (free-running, mod 2^16).
    next_avail: u16,
    /// The used ring's idx as the device last wrote it (free-running, mod 2^16).
    next_used: u16,
    /// The used index at the last interrupt decision: the completions after it are the ones
    /// [`needs_interrupt`](Self::needs_interrupt) decides on.
    signalled_used: u16,
    /// VIRTIO_F_EVENT_IDX was negotiated: `used_event` and `avail_event` are in use.
    event_idx: bool,
}

impl SplitQueue {
    /// Checks the driver's registers for queue `index` against `max_size` (QueueNumMax, a
    /// power of two) and §2.7's alignments; the rings start empty.
    pub fn new(index: u16, config: QueueConfig, max_size: u16) -> Result<SplitQueue, GuestError> {
        let size = config.size;
        if size == 0 || !size.is_power_of_two() || size > u32::from(max_size) {
            return Err(GuestError::BadQueueSize { queue: index, size });
        }
        if !config.desc.is_multiple_of(16)
            || !config.driver.is_multiple_of(2)
            || !config.device.is_multiple_of(4)
        {
            return Err(GuestError::MisalignedRing { queue: index });
        }
        Ok(SplitQueue {
            index,
            // Checked above: size <= max_size, a u16.
            size: size as u16,
            desc: config.desc,
            driver: config.driver,
            device: config.device,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
            event_idx: false,
        })
    }

    /// Turns event suppression by index on or off: the transport's word on whether
    /// VIRTIO_F_EVENT_IDX was offered and accepted.
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Whether event suppression by index is in use.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }

    /// Whether the driver has made a chain available that the device has not taken yet.
    pub fn has_available(&self, memory: &dyn QueueMemory) -> Result<bool, GuestError> {
        let avail_idx = read_u16(memory, self.driver.wrapping_add(2))?;
        Ok(avail_idx != self.next_avail)
    }

    /// The queue's index on its device.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The queue size (entries in each ring).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Takes the next chain the driver made available, or `None` when the ring is empty.
    /// `max_bytes` caps the total length of the chain's descriptors.
    pub fn pop(
        &mut self,
        memory: &dyn QueueMemory,
        max_bytes: u64,
    ) -> Result<Option<Chain>, GuestError> {
        let mut avail_idx = read_u16(memory, self.driver.wrapping_add(2))?;
        if avail_idx == self.next_avail && self.event_idx {
            // Empty: ask for a notification at the next entry, then look once more, so that
            // an entry added before the driver could see the request is not missed (§2.7.10).
            self.publish_avail_event(memory)?;
            avail_idx = read_u16(memory, self.driver.wrapping_add(2))?;
        }
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(GuestError::AvailIndexJump {
                avail_idx,
                last_seen: self.next_avail,
            });
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = read_u16(memory, self.driver.wrapping_add(RING_HEADER + 2 * slot))?;
        let descriptors = self.walk(memory, head, max_bytes)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(Chain { head, descriptors }))
    }

    /// Follows the chain from `head`: at most `size` descriptors, each index below `size`.
    fn walk(
        &self,
        memory: &dyn QueueMemory,
        head: u16,
        max_bytes: u64,
    ) -> Result<Vec<Descriptor>, GuestError> {
        let mut descriptors = Vec::new();
        let mut index = head;
        let mut total: u64 = 0;
        loop {
            if index >= self.size {
                return Err(GuestError::DescriptorIndex { index });
            }
            if descriptors.len() >= usize::from(self.size) {
                return Err(GuestError::ChainTooLong);
            }
            let mut raw = [0u8; DESC_SIZE as usize];
            let at = self.desc.wrapping_add(u64::from(index) * DESC_SIZE);
            if !memory.read(at, &mut raw) {
                return Err(GuestError::BadAddress { gpa: at });
            }
            let addr = u64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]);
            let len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                return Err(GuestError::IndirectDescriptor);
            }
            total += u64::from(len);
            if total > max_bytes {
                return Err(GuestError::BufferTooLarge { len: total });
            }
            descriptors.push(Descriptor {
                addr,
                len,
                writable: flags & DESC_F_WRITE != 0,
            });
            if flags & DESC_F_NEXT == 0 {
                return Ok(descriptors);
            }
            index = next;
        }
    }

    /// Returns chain `head` to the driver with `written` bytes written into it: the used
    /// element first, then the used index, so the driver never sees an index ahead of its
    /// element. Returns whether the driver wants an interrupt for it; the same as
    /// [`add_used`](Self::add_used) then [`needs_interrupt`](Self::needs_interrupt).
    pub fn push_used(
        &mut self,
        memory: &dyn QueueMemory,
        head: u16,
        written: u32,
    ) -> Result<bool, GuestError> {
        self.add_used(memory, head, written)?;
        self.needs_interrupt(memory)
    }

    /// Returns chain `head` to the driver with `written` bytes written into it (element, then
    /// index), deciding nothing about interrupts: call [`needs_interrupt`](Self::needs_interrupt)
    /// once after a batch.
    pub fn add_used(
        &mut self,
        memory: &dyn QueueMemory,
        head: u16,
        written: u32,
    ) -> Result<(), GuestError> {
        self.add_used_together(memory, &[(head, written)])
    }

    /// Returns several chains `(head, written)` at once: every used element first, then the
    /// used index once, so the driver sees all of them or none (the buffers of one mergeable
    /// frame, which a driver reads as a unit). Decides nothing about interrupts.
    pub fn add_used_together(
        &mut self,
        memory: &dyn QueueMemory,
        used: &[(u16, u32)],
    ) -> Result<(), GuestError> {
        let mut next = self.next_used;
        for &(head, written) in used {
            let slot = u64::from(next % self.size);
            let at = self
                .device
                .wrapping_add(RING_HEADER + USED_ELEM_SIZE * slot);
            let mut element = [0u8; USED_ELEM_SIZE as usize];
            element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
            element[4..].copy_from_slice(&written.to_le_bytes());
            write_bytes(memory, at, &element)?;
            next = next.wrapping_add(1);
        }
        self.next_used = next;
        write_bytes(
            memory,
            self.device.wrapping_add(2),
            &self.next_used.to_le_bytes(),
        )
    }

    /// Gives back the last `count` chains [`pop`](Self::pop) took, untouched: the driver still
    /// owns them and the next `pop` takes them again (a frame that needs more buffers than
    /// are posted takes none of them).
    pub fn unpop(&mut self, count: u16) {
        self.next_avail = self.next_avail.wrapping_sub(count);
    }

    /// Whether the driver wants a used-buffer interrupt for the completions added since the
    /// last decision: none were added, no; with EVENT_IDX, whether the used index crossed the
    /// driver's `used_event` (`vring_need_event`, §2.7.10); without, whether the available
    /// ring's NO_INTERRUPT flag is clear.
    pub fn needs_interrupt(&mut self, memory: &dyn QueueMemory) -> Result<bool, GuestError> {
        let old = self.signalled_used;
        let new = self.next_used;
        if old == new {
            return Ok(false);
        }
        self.signalled_used = new;
        // The used index must be visible before the driver's word is read, or a driver that
        // re-armed in between would wait for an interrupt that never comes.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let used_event_at = RING_HEADER + 2 * u64::from(self.size);
            let event = read_u16(memory, self.driver.wrapping_add(used_event_at))?;
            Ok(need_event(event, new, old))
        } else {
            let flags = read_u16(memory, self.driver)?;
            Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
        }
    }

    /// Writes `avail_event` = the next entry the device will take: the driver notifies again
    /// once it makes that entry available.
    fn publish_avail_event(&self, memory: &dyn QueueMemory) -> Result<(), GuestError> {
        let avail_event_at = RING_HEADER + USED_ELEM_SIZE * u64::from(self.size);
        write_bytes(
            memory,
            self.device.wrapping_add(avail_event_at),
            &self.next_avail.to_le_bytes(),
        )?;
        fence(Ordering::SeqCst);
        Ok(())
    }
}

/// `vring_need_event` (§2.7.10): whether moving an index from `old` to `new` crossed `event`,
/// all free-running mod 2^16.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

fn read_u16(memory: &dyn QueueMemory, gpa: u64) -> Result<u16, GuestError> {
    let mut raw = [0u8; 2];
    if memory.read(gpa, &mut raw) {
        Ok(u16::from_le_bytes(raw))
    } else {
        Err(GuestError::BadAddress { gpa })
    }
}

fn write_bytes(memory: &dyn QueueMemory, gpa: u64, bytes: &[u8]) -> Result<(), GuestError> {
    if memory.write(gpa, bytes) {
        Ok(())
    } else {
        Err(GuestError::BadAddress { gpa })
    }
}
