//! The driver's side of virtio-mmio (VIRTIO 1.2 §4.2.2, version 2) and of split virtqueues
//! (§2.7), shared by the test guest's polling drivers: the balloon (`virtio_balloon.rs`) and
//! the network card's hostile probe (`virtio_net_probe.rs`).
//!
//! [`Window`] reads and writes a device's registers as plain `mov`s and runs the steps of
//! the initialization (§3.1.1) one at a time, so a probe can also take them out of order.
//! [`DeviceMemory`] is page-aligned memory in the guest's own `.bss` for rings and buffers;
//! [`Ring`] lays out one split virtqueue in it (descriptor table, available ring, used ring,
//! one page each, for any queue size up to 256). The device reads and writes that memory
//! from other CPUs at any time, so every access is a volatile one by address.

use core::cell::UnsafeCell;
use core::sync::atomic::{fence, Ordering};

// The register offsets, status bits and ring flags are the device model's own (VIRTIO 1.2
// §4.2.2, §2.1, §2.7.5): one definition for both sides of the window.
pub use numavisor_policy::devices::virtio::mmio::{reg, CONFIG_OFFSET, MAGIC};
pub use numavisor_policy::devices::virtio::queue::{
    AVAIL_F_NO_INTERRUPT, DESC_F_NEXT, DESC_F_WRITE,
};
pub use numavisor_policy::devices::virtio::status;

/// VERSION_1 (feature bit 32): bit 0 of the high feature word.
pub const F_VERSION_1_HIGH: u32 = 1;
/// Polls of a register or a ring before a request counts as lost.
pub const MAX_POLLS: u64 = 10_000_000;
const PAGE: u64 = 4096;

/// One device's virtio-mmio window, by guest-physical address (identity mapped below 4 GiB
/// by the entry code).
#[derive(Clone, Copy)]
pub struct Window(pub u64);

impl Window {
    /// A register read, as a plain `mov` (what Linux's `readl` emits): a volatile read may be
    /// folded into another instruction (`and edx, [rcx+0x10]`), which the hypervisor's MMIO
    /// decoder need not take.
    pub fn read(self, offset: u64) -> u32 {
        let value: u32;
        // SAFETY: an aligned 4-byte read of a device's register window; the hypervisor
        // intercepts it, no memory is touched.
        unsafe {
            core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) self.0 + offset,
                options(nostack, preserves_flags))
        };
        value
    }

    /// A register write, as a plain `mov` (Linux's `writel`).
    pub fn write(self, offset: u64, value: u32) {
        // SAFETY: as for `read`, a 4-byte register write.
        unsafe {
            core::arch::asm!("mov dword ptr [{0}], {1:e}", in(reg) self.0 + offset, in(reg) value,
                options(nostack, preserves_flags))
        };
    }

    /// Whether the window holds a version 2 device of type `device_id`.
    pub fn find(self, device_id: u32) -> Result<(), &'static str> {
        if self.read(reg::MAGIC_VALUE) != MAGIC || self.read(reg::VERSION) != 2 {
            return Err("no virtio-mmio version 2 window there");
        }
        if self.read(reg::DEVICE_ID) != device_id {
            return Err("the virtio-mmio device there is of another type");
        }
        Ok(())
    }

    /// The device status register.
    pub fn status(self) -> u32 {
        self.read(reg::STATUS)
    }

    /// Resets the device (status 0).
    pub fn reset(self) {
        self.write(reg::STATUS, 0);
    }

    /// Reset, ACKNOWLEDGE, DRIVER, then the features `(low, high)` if the device offers them
    /// all, then FEATURES_OK (§3.1.1 steps 1 to 6).
    pub fn negotiate(self, low: u32, high: u32) -> Result<(), &'static str> {
        self.reset();
        self.write(reg::STATUS, status::ACKNOWLEDGE);
        self.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.write(reg::DEVICE_FEATURES_SEL, 0);
        let offered_low = self.read(reg::DEVICE_FEATURES);
        self.write(reg::DEVICE_FEATURES_SEL, 1);
        let offered_high = self.read(reg::DEVICE_FEATURES);
        if offered_low & low != low || offered_high & high != high {
            return Err("the device does not offer the features wanted");
        }
        self.write(reg::DRIVER_FEATURES_SEL, 0);
        self.write(reg::DRIVER_FEATURES, low);
        self.write(reg::DRIVER_FEATURES_SEL, 1);
        self.write(reg::DRIVER_FEATURES, high);
        self.write(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        if self.status() & status::FEATURES_OK == 0 {
            return Err("the device refused FEATURES_OK");
        }
        Ok(())
    }

    /// Writes queue `queue`'s registers (QueueNum `size` and `ring`'s addresses) without
    /// setting QueueReady.
    pub fn configure_queue(self, queue: u16, size: u32, ring: &Ring) {
        self.write(reg::QUEUE_SEL, u32::from(queue));
        self.write(reg::QUEUE_NUM, size);
        for (low, high, gpa) in [
            (reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, ring.desc()),
            (reg::QUEUE_DRIVER_LOW, reg::QUEUE_DRIVER_HIGH, ring.avail()),
            (reg::QUEUE_DEVICE_LOW, reg::QUEUE_DEVICE_HIGH, ring.used()),
        ] {
            self.write(low, gpa as u32);
            self.write(high, (gpa >> 32) as u32);
        }
    }

    /// Sets up queue `queue` on `ring` (its size) and enables it; an error if the device has
    /// a smaller queue or refuses it.
    pub fn enable_queue(self, queue: u16, ring: &Ring) -> Result<(), &'static str> {
        self.write(reg::QUEUE_SEL, u32::from(queue));
        if self.read(reg::QUEUE_NUM_MAX) < u32::from(ring.size()) {
            return Err("a queue of the device is smaller than the driver's ring");
        }
        self.configure_queue(queue, u32::from(ring.size()), ring);
        self.write(reg::QUEUE_READY, 1);
        if self.read(reg::QUEUE_READY) != 1 {
            return Err("the device refused a queue");
        }
        Ok(())
    }

    /// Sets DRIVER_OK (§3.1.1 step 8) and checks the device took it.
    pub fn driver_ok(self) -> Result<(), &'static str> {
        self.write(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        self.check_status()
    }

    /// Whether the device is running: DRIVER_OK, no DEVICE_NEEDS_RESET.
    pub fn check_status(self) -> Result<(), &'static str> {
        match self.status() {
            s if s & status::DEVICE_NEEDS_RESET != 0 => Err("the device set DEVICE_NEEDS_RESET"),
            s if s & status::DRIVER_OK == 0 => Err("the device dropped DRIVER_OK"),
            _ => Ok(()),
        }
    }

    /// QueueNotify for `queue`.
    pub fn notify(self, queue: u16) {
        fence(Ordering::SeqCst);
        self.write(reg::QUEUE_NOTIFY, u32::from(queue));
    }
}

/// `N` bytes of page-aligned memory in `.bss` that a device reads and writes (rings and
/// buffers), reached only by address through the volatile accessors below.
#[repr(C, align(4096))]
pub struct DeviceMemory<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the guest runs one CPU; the memory is only reached through volatile accesses by
// address, never through references.
unsafe impl<const N: usize> Sync for DeviceMemory<N> {}

impl<const N: usize> DeviceMemory<N> {
    pub const fn new() -> DeviceMemory<N> {
        DeviceMemory(UnsafeCell::new([0; N]))
    }

    /// Its guest-physical address (the guest is identity mapped).
    pub fn base(&self) -> u64 {
        self.0.get() as u64
    }

    /// Writes `bytes` at `offset`.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= N, "a write past device memory");
        for (i, &byte) in bytes.iter().enumerate() {
            // SAFETY: inside this memory (checked above), which nothing holds a reference to.
            unsafe { core::ptr::write_volatile((self.0.get() as *mut u8).add(offset + i), byte) };
        }
    }

    /// Reads `out.len()` bytes at `offset`.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= N, "a read past device memory");
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: as for `write_bytes`.
            *byte =
                unsafe { core::ptr::read_volatile((self.0.get() as *const u8).add(offset + i)) };
        }
    }

    /// Sets every byte to `value`.
    pub fn fill(&self, value: u8) {
        for offset in 0..N {
            // SAFETY: as for `write_bytes`.
            unsafe { core::ptr::write_volatile((self.0.get() as *mut u8).add(offset), value) };
        }
    }
}

/// Bytes of one ring's memory: descriptor table, available ring, used ring, a page each.
pub const RING_BYTES: usize = 3 * PAGE as usize;
/// The largest queue a [`Ring`] holds.
pub const MAX_RING_SIZE: u16 = 256;

/// One split virtqueue (§2.7) in a [`DeviceMemory`] of [`RING_BYTES`] bytes: the descriptor
/// table on its first page, the available ring on the second, the used ring on the third.
pub struct Ring {
    memory: &'static DeviceMemory<RING_BYTES>,
    size: u16,
    /// Entries made available so far (the available ring's idx).
    next_avail: u16,
}

impl Ring {
    /// An empty ring of `size` entries (at most [`MAX_RING_SIZE`]; any size, so that a probe
    /// can offer a bad one) over `memory`, zeroed; no interrupts wanted.
    pub fn new(memory: &'static DeviceMemory<RING_BYTES>, size: u16) -> Ring {
        assert!(size <= MAX_RING_SIZE, "a ring larger than its memory");
        memory.fill(0);
        let ring = Ring {
            memory,
            size,
            next_avail: 0,
        };
        ring.write_u16(PAGE as usize, AVAIL_F_NO_INTERRUPT);
        ring
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest-physical addresses of the descriptor table, the available and the used ring.
    pub fn desc(&self) -> u64 {
        self.memory.base()
    }

    pub fn avail(&self) -> u64 {
        self.memory.base() + PAGE
    }

    pub fn used(&self) -> u64 {
        self.memory.base() + 2 * PAGE
    }

    /// Writes descriptor `index` (of the table's 256; a probe may write past its size).
    pub fn set_descriptor(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        self.memory.write_bytes(16 * usize::from(index), &raw);
    }

    /// Makes the chain at `head` available: its ring entry, then the index.
    pub fn make_available(&mut self, head: u16) {
        let slot = usize::from(self.next_avail % self.size.max(1));
        self.write_u16(PAGE as usize + 4 + 2 * slot, head);
        self.next_avail = self.next_avail.wrapping_add(1);
        self.set_avail_idx(self.next_avail);
    }

    /// Writes the available ring's idx as it is, however far ahead of the entries (a probe).
    pub fn set_avail_idx(&self, idx: u16) {
        fence(Ordering::SeqCst);
        self.write_u16(PAGE as usize + 2, idx);
        fence(Ordering::SeqCst);
    }

    /// Chains made available so far.
    pub fn available(&self) -> u16 {
        self.next_avail
    }

    /// The used ring's idx, as the device last wrote it.
    pub fn used_idx(&self) -> u16 {
        let mut raw = [0u8; 2];
        self.memory.read_bytes(2 * PAGE as usize + 2, &mut raw);
        fence(Ordering::SeqCst);
        u16::from_le_bytes(raw)
    }

    /// Used element `n` (free-running): the chain's head and the bytes written into it.
    pub fn used_element(&self, n: u16) -> (u32, u32) {
        let slot = usize::from(n % self.size.max(1));
        let mut raw = [0u8; 8];
        self.memory
            .read_bytes(2 * PAGE as usize + 4 + 8 * slot, &mut raw);
        (
            u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        )
    }

    /// Polls until the device has used `count` chains in all, at most `polls` times;
    /// whether it did.
    pub fn wait_used(&self, count: u16, polls: u64) -> bool {
        for _ in 0..polls {
            if self.used_idx() == count {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    fn write_u16(&self, offset: usize, value: u16) {
        self.memory.write_bytes(offset, &value.to_le_bytes());
    }
}
