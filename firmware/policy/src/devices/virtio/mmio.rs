//! The virtio-mmio transport, version 2 (VIRTIO 1.2 §4.2.2): the register window a driver
//! finds a device through, negotiates features on and sets its queues up with.
//!
//! [`MmioTransport`] holds what every device shares — identification, feature negotiation,
//! device status, the queues' registers, the interrupt status — and leaves the
//! device-specific configuration space (from [`CONFIG_OFFSET`]) to the device model that owns
//! it. Registers below [`CONFIG_OFFSET`] are 32 bits wide and taken only as aligned 4-byte
//! accesses; any other access reads 0 and is ignored on write (§4.2.2.2 lets a device treat
//! it as undefined). Reserved offsets read 0.
//!
//! Status follows §2.1 and §3.1.1: writing 0 resets the device; FEATURES_OK sticks only when
//! the driver accepted a subset of the offered features that includes VERSION_1 (and any the
//! device model requires, [`MmioTransport::require_features`]); queues are
//! taken into use (and checked, see [`SplitQueue::new`]) when the driver writes QueueReady = 1;
//! notifications are queued and serviced once the driver has set DRIVER_OK — Linux's balloon
//! kicks its statistics queue before that. A guest that breaks a rule sets
//! DEVICE_NEEDS_RESET and, with DRIVER_OK, raises a configuration-change interrupt (§2.1.2);
//! the device then does no more queue work until it is reset.
//!
//! VIRTIO_F_EVENT_IDX is in use only when the device offered it and the driver accepted it
//! with FEATURES_OK ([`MmioTransport::event_idx`]); the transport tells every queue so when
//! the queue is made ready or FEATURES_OK sticks, whichever comes last.

use alloc::vec::Vec;

use super::queue::{QueueConfig, SplitQueue};
use super::{feature, interrupt, status, GuestError};

/// Bytes of one virtio-mmio window: registers to 0x100, then up to 0x100 of configuration.
pub const MMIO_WINDOW: u64 = 0x200;
/// Where the device-specific configuration space starts in the window.
pub const CONFIG_OFFSET: u64 = 0x100;
/// MagicValue: "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;
/// Version: 2, the modern (non-legacy) interface.
pub const VERSION: u32 = 2;
/// VendorID numavisor's devices report: "NV" (0x4E56).
pub const VENDOR_ID: u32 = 0x4E56;

/// Register offsets (§4.2.2, table "MMIO Device Register Layout"); the test guest's drivers
/// use them too.
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00C;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0A0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0A4;
    pub const SHM_LEN_LOW: u64 = 0x0B0;
    pub const SHM_LEN_HIGH: u64 = 0x0B4;
    pub const SHM_BASE_LOW: u64 = 0x0B8;
    pub const SHM_BASE_HIGH: u64 = 0x0BC;
    pub const CONFIG_GENERATION: u64 = 0x0FC;
}

/// What a register write asks of the device model or its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// Nothing beyond the register change.
    None,
    /// A queue was notified (or DRIVER_OK made earlier notifications serviceable): there is
    /// queue work for the device model.
    QueueWork,
    /// The driver reset the device (Status = 0): everything it had handed the device is void.
    Reset,
}

/// One queue's registers and, once the driver made it ready, its checked form.
#[derive(Clone, Debug)]
struct QueueSlot {
    max_size: u16,
    config: QueueConfig,
    live: Option<SplitQueue>,
}

/// The virtio-mmio register state shared by every device.
#[derive(Clone, Debug)]
pub struct MmioTransport {
    device_id: u32,
    device_features: u64,
    /// Offered features the driver must accept for FEATURES_OK to stick.
    required_features: u64,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<QueueSlot>,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    /// Queues notified and not yet serviced, one bit per queue.
    notified: u32,
    /// Bumped on every reset and queue (re)configuration, so that work handed out before
    /// cannot be completed into a queue that no longer exists.
    epoch: u32,
    last_error: Option<GuestError>,
}

impl MmioTransport {
    /// A transport for device type `device_id` offering `device_features` (VERSION_1 is
    /// added), with one queue per entry of `queue_max_sizes` (each a power of two, at most
    /// 32 queues; a 0 entry is a queue that does not exist).
    pub fn new(device_id: u32, device_features: u64, queue_max_sizes: &[u16]) -> MmioTransport {
        let queues = queue_max_sizes
            .iter()
            .take(32)
            .map(|&max_size| QueueSlot {
                max_size,
                config: QueueConfig::default(),
                live: None,
            })
            .collect();
        MmioTransport {
            device_id,
            device_features: device_features | feature::VERSION_1,
            required_features: feature::VERSION_1,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            notified: 0,
            epoch: 0,
            last_error: None,
        }
    }

    /// Reads the register at `offset` (below [`CONFIG_OFFSET`]) with an access of `size`
    /// bytes.
    pub fn read(&self, offset: u64, size: u8) -> u32 {
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        let queue = self.selected_queue();
        match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device_id,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features as u32,
                1 => (self.device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size)),
            reg::QUEUE_READY => queue.map_or(0, |q| u32::from(q.live.is_some())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            // No shared memory regions: a length of all ones says "absent" (§4.2.2).
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    /// Writes `value` to the register at `offset` (below [`CONFIG_OFFSET`]) with an access of
    /// `size` bytes.
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> TransportEvent {
        if size != 4 || !offset.is_multiple_of(4) {
            return TransportEvent::None;
        }
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES => self.write_driver_features(value),
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => self.write_queue_config(|c| c.size = value),
            reg::QUEUE_DESC_LOW => self.write_queue_config(|c| set_low(&mut c.desc, value)),
            reg::QUEUE_DESC_HIGH => self.write_queue_config(|c| set_high(&mut c.desc, value)),
            reg::QUEUE_DRIVER_LOW => self.write_queue_config(|c| set_low(&mut c.driver, value)),
            reg::QUEUE_DRIVER_HIGH => self.write_queue_config(|c| set_high(&mut c.driver, value)),
            reg::QUEUE_DEVICE_LOW => self.write_queue_config(|c| set_low(&mut c.device, value)),
            reg::QUEUE_DEVICE_HIGH => self.write_queue_config(|c| set_high(&mut c.device, value)),
            reg::QUEUE_READY => self.write_queue_ready(value),
            reg::QUEUE_NOTIFY => return self.notify(value),
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => return self.write_status(value),
            _ => {}
        }
        TransportEvent::None
    }

    /// The features both sides agreed on (meaningful once FEATURES_OK is set).
    pub fn negotiated_features(&self) -> u64 {
        self.driver_features & self.device_features
    }

    /// Whether VIRTIO_F_EVENT_IDX is in use: offered, accepted, and FEATURES_OK set.
    pub fn event_idx(&self) -> bool {
        self.status & status::FEATURES_OK != 0
            && self.negotiated_features() & feature::EVENT_IDX != 0
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The driver has set DRIVER_OK after a successful negotiation, and the device has not
    /// failed: queue work may be done.
    pub fn is_live(&self) -> bool {
        let wanted = status::FEATURES_OK | status::DRIVER_OK;
        self.status & wanted == wanted
            && self.status & (status::DEVICE_NEEDS_RESET | status::FAILED) == 0
    }

    /// The first guest error since the last reset, if any (for the console).
    pub fn last_error(&self) -> Option<GuestError> {
        self.last_error
    }

    /// The InterruptStatus register: non-zero while the interrupt line is asserted (it is a
    /// level: the driver lowers it by writing InterruptACK).
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// Raises interrupt cause `bits` ([`interrupt::USED_BUFFER`], [`interrupt::CONFIG_CHANGE`]).
    pub fn raise(&mut self, bits: u32) {
        self.interrupt_status |= bits;
    }

    /// Makes FEATURES_OK stick only when the driver also accepted `features` (those of them
    /// the device offers): for a device that cannot work with a driver lacking them, which
    /// §3.1.1 lets it refuse at FEATURES_OK.
    pub fn require_features(&mut self, features: u64) {
        self.required_features |= features & self.device_features;
    }

    /// The device changed a configuration field it does not interrupt the driver about
    /// (virtio-mem's `plugged_size`): a new ConfigGeneration only, so that a driver reading
    /// the field in two halves sees that it moved (§2.5.1).
    pub fn bump_config_generation(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
    }

    /// The device changed its configuration space: a new ConfigGeneration and, once the driver
    /// is running, a configuration-change interrupt.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            self.raise(interrupt::CONFIG_CHANGE);
        }
    }

    /// Records a guest error: DEVICE_NEEDS_RESET, and a configuration-change interrupt if the
    /// driver is running (§2.1.2). Queue work stops until the driver resets the device.
    pub fn fail(&mut self, error: GuestError) {
        if self.last_error.is_none() {
            self.last_error = Some(error);
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        self.notified = 0;
        if self.status & status::DRIVER_OK != 0 {
            self.raise(interrupt::CONFIG_CHANGE);
        }
    }

    /// Takes the set of queues notified since the last call (bit `n` = queue `n`); empty
    /// unless the device [`is_live`](Self::is_live).
    pub fn take_notified(&mut self) -> u32 {
        if !self.is_live() {
            return 0;
        }
        core::mem::take(&mut self.notified)
    }

    /// Marks `queue` notified again: work the device model left for later.
    pub fn renotify(&mut self, queue: u16) {
        if usize::from(queue) < self.queues.len() {
            self.notified |= 1 << queue;
        }
    }

    /// Whether queues are notified and not yet serviced (and the device is live).
    pub fn has_notified(&self) -> bool {
        self.is_live() && self.notified != 0
    }

    /// Whether `queue` is notified and not yet serviced (and the device is live).
    pub fn is_notified(&self, queue: u16) -> bool {
        self.is_live() && queue < 32 && self.notified & (1 << queue) != 0
    }

    /// Queue `index`, if the driver has made it ready.
    pub fn queue_mut(&mut self, index: u16) -> Option<&mut SplitQueue> {
        self.queues
            .get_mut(usize::from(index))
            .and_then(|slot| slot.live.as_mut())
    }

    /// The current epoch: it changes on reset and whenever a queue is (re)configured.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn selected_queue(&self) -> Option<&QueueSlot> {
        usize::try_from(self.queue_sel)
            .ok()
            .and_then(|index| self.queues.get(index))
            .filter(|slot| slot.max_size != 0)
    }

    fn write_driver_features(&mut self, value: u32) {
        // Features are fixed once FEATURES_OK is set (§3.1.1).
        if self.status & status::FEATURES_OK != 0 {
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xFFFF_FFFF) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xFFFF_FFFF) | (u64::from(value) << 32)
            }
            _ => {}
        }
    }

    /// A queue register write; ignored for an absent queue and for a ready one (§4.2.2.3:
    /// the driver must not change a queue in use).
    fn write_queue_config(&mut self, change: impl FnOnce(&mut QueueConfig)) {
        let Ok(index) = usize::try_from(self.queue_sel) else {
            return;
        };
        if let Some(slot) = self.queues.get_mut(index) {
            if slot.max_size != 0 && slot.live.is_none() {
                change(&mut slot.config);
            }
        }
    }

    fn write_queue_ready(&mut self, value: u32) {
        let event_idx = self.event_idx();
        let Ok(index) = u16::try_from(self.queue_sel) else {
            return;
        };
        let Some(slot) = self.queues.get_mut(usize::from(index)) else {
            return;
        };
        if slot.max_size == 0 {
            return;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if value & 1 == 0 {
            slot.live = None;
            return;
        }
        if slot.live.is_some() {
            return;
        }
        match SplitQueue::new(index, slot.config, slot.max_size) {
            Ok(mut queue) => {
                queue.set_event_idx(event_idx);
                slot.live = Some(queue);
            }
            Err(error) => self.fail(error),
        }
    }

    fn notify(&mut self, value: u32) -> TransportEvent {
        // Without VIRTIO_F_NOTIFICATION_DATA the value is just the queue index.
        let Some(slot) = usize::try_from(value).ok().and_then(|i| self.queues.get(i)) else {
            return TransportEvent::None;
        };
        if slot.live.is_none() || self.status & status::DEVICE_NEEDS_RESET != 0 {
            return TransportEvent::None;
        }
        self.notified |= 1 << value;
        if self.is_live() {
            TransportEvent::QueueWork
        } else {
            TransportEvent::None
        }
    }

    fn write_status(&mut self, value: u32) -> TransportEvent {
        if value == 0 {
            self.reset();
            return TransportEvent::Reset;
        }
        let was_live = self.is_live();
        // The driver may only add bits (§2.1.1); DEVICE_NEEDS_RESET is the device's to set.
        let mut new =
            (value & !status::DEVICE_NEEDS_RESET) | (self.status & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let accepted = self.driver_features;
            let required = self.required_features;
            let acceptable =
                accepted & !self.device_features == 0 && accepted & required == required;
            if !acceptable {
                new &= !status::FEATURES_OK;
            }
        }
        self.status = new;
        let event_idx = self.event_idx();
        for queue in self.queues.iter_mut().filter_map(|slot| slot.live.as_mut()) {
            queue.set_event_idx(event_idx);
        }
        if !was_live && self.is_live() && self.notified != 0 {
            TransportEvent::QueueWork
        } else {
            TransportEvent::None
        }
    }

    /// Status = 0: back to the state after power-on (§4.2.2.1), the epoch moved on.
    fn reset(&mut self) {
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        for slot in &mut self.queues {
            slot.config = QueueConfig::default();
            slot.live = None;
        }
        self.status = 0;
        self.interrupt_status = 0;
        self.notified = 0;
        self.epoch = self.epoch.wrapping_add(1);
        self.last_error = None;
    }
}

/// The byte range of a device's configuration space (`len` bytes from [`CONFIG_OFFSET`]) that
/// an access of `size` bytes at window `offset` covers: 1, 2, 4 or (with `widest` 8) 8 bytes,
/// naturally aligned, inside the space; `None` for any other access.
pub fn config_range(
    offset: u64,
    size: u8,
    len: usize,
    widest: u8,
) -> Option<core::ops::Range<usize>> {
    let at = offset.checked_sub(CONFIG_OFFSET)?;
    let allowed = matches!(size, 1 | 2 | 4 | 8) && size <= widest;
    let size = u64::from(size);
    if !allowed || !at.is_multiple_of(size) || at + size > len as u64 {
        return None;
    }
    Some(at as usize..(at + size) as usize)
}

/// A guest read of a device's configuration space `config` ([`config_range`]'s rules),
/// little-endian; any other access reads 0 (§4.2.2.2 lets a device treat it as undefined).
pub fn read_config(config: &[u8], offset: u64, size: u8, widest: u8) -> u64 {
    config_range(offset, size, config.len(), widest)
        .and_then(|range| config.get(range))
        .map_or(0, |bytes| {
            let mut value = [0u8; 8];
            value[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(value)
        })
}

fn set_low(field: &mut u64, value: u32) {
    *field = (*field & !0xFFFF_FFFF) | u64::from(value);
}

fn set_high(field: &mut u64, value: u32) {
    *field = (*field & 0xFFFF_FFFF) | (u64::from(value) << 32);
}
