//! Virtio devices over the virtio-mmio transport (VIRTIO 1.2, OASIS, 2022): the register
//! window ([`mmio`], §4.2.2), split virtqueues ([`queue`], §2.7), the traditional memory
//! balloon ([`balloon`], §5.5), the network card ([`net`], §5.1) with its offloads
//! ([`net_offload`]) and the memory device ([`mem`], §5.15).
//!
//! Everything here reads guest-controlled memory through [`QueueMemory`], which the firmware
//! implements over the partition's RAM. A guest that breaks the queue rules (a descriptor loop,
//! an address outside its RAM, a ring index past the queue size) puts the device into
//! `DEVICE_NEEDS_RESET` (§2.1.2); nothing a guest writes makes this code panic, and the work
//! one call does is bounded by the queue sizes, not by anything the guest chooses.

pub mod balloon;
pub mod mem;
mod mem_blocks;
pub mod mmio;
pub mod net;
pub mod net_offload;
pub mod queue;

#[cfg(test)]
mod mem_tests;
#[cfg(test)]
mod net_offload_tests;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

/// Guest-physical memory as the device sees it: the rings and the buffers they point at.
///
/// Both methods refuse (return `false`, leaving `buf` in an unspecified state for reads) a range
/// that is not entirely ordinary guest RAM; the device then treats the access as a guest error.
/// An implementation must check `gpa + len` for overflow itself.
pub trait QueueMemory {
    /// Copies `buf.len()` bytes from guest-physical `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Copies `bytes` to guest-physical `gpa`.
    fn write(&self, gpa: u64, bytes: &[u8]) -> bool;
}

/// Device status bits (§2.1).
pub mod status {
    /// The guest OS has found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest OS knows how to drive the device.
    pub const DRIVER: u32 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 4;
    /// The driver has acknowledged the features it understands; feature negotiation is over.
    pub const FEATURES_OK: u32 = 8;
    /// The device has hit an error it cannot recover from; the driver must reset it.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver has given up on the device.
    pub const FAILED: u32 = 0x80;
}

/// Device-independent feature bits (§6).
pub mod feature {
    /// The device follows VIRTIO 1.x, not the legacy interface (bit 32). A version-2
    /// virtio-mmio device must offer it, and Linux refuses one that does not.
    pub const VERSION_1: u64 = 1 << 32;
    /// Event suppression by index (bit 29, §2.7.10): the driver's `used_event` and the
    /// device's `avail_event` replace the rings' flags. Only a device that offers it and a
    /// driver that accepts it use it ([`MmioTransport::event_idx`](super::mmio::MmioTransport::event_idx)).
    pub const EVENT_IDX: u64 = 1 << 29;
}

/// Interrupt status bits (§4.2.2, InterruptStatus).
pub mod interrupt {
    /// The device has used a buffer in at least one virtqueue.
    pub const USED_BUFFER: u32 = 1;
    /// The device's configuration (or its status, with `DEVICE_NEEDS_RESET`) has changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// How a guest broke the virtio rules; the device answers any of them with
/// `DEVICE_NEEDS_RESET` and a configuration-change interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestError {
    /// QueueReady was set with a size that is zero, not a power of two, or above QueueNumMax.
    BadQueueSize {
        /// The queue.
        queue: u16,
        /// The size the driver wrote.
        size: u32,
    },
    /// QueueReady was set with a ring address not aligned as §2.7 requires (descriptor table
    /// 16, available ring 2, used ring 4 bytes).
    MisalignedRing {
        /// The queue.
        queue: u16,
    },
    /// A ring or buffer address lies (partly) outside guest RAM.
    BadAddress {
        /// The guest-physical address that was refused.
        gpa: u64,
    },
    /// The available ring's index moved more than the queue size past the device's.
    AvailIndexJump {
        /// The driver's index.
        avail_idx: u16,
        /// The device's last-seen index.
        last_seen: u16,
    },
    /// A descriptor index (a chain head or a `next`) was not below the queue size.
    DescriptorIndex {
        /// The index.
        index: u16,
    },
    /// A chain had more descriptors than the queue has entries: a loop.
    ChainTooLong,
    /// A descriptor carried VIRTQ_DESC_F_INDIRECT, a feature the device does not offer.
    IndirectDescriptor,
    /// A buffer's direction is wrong for its queue (a device-writable descriptor in a
    /// driver-to-device queue).
    WrongDirection,
    /// A buffer is larger than the device accepts for its queue.
    BufferTooLarge {
        /// Its total length in bytes.
        len: u64,
    },
    /// A buffer is smaller than the message it must hold (a virtio-mem request shorter than
    /// 24 bytes, or less than 10 device-writable bytes for its response).
    BufferTooSmall {
        /// Its length in bytes, in the direction that fell short.
        len: u64,
        /// The bytes the message needs.
        needed: u64,
    },
}
