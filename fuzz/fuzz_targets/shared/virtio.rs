//! What the virtio fuzz targets share: guest RAM, a flat byte vector the fuzzer fills, reached
//! at guest-physical 0.. as the device models reach guest memory; and Linux's probe of a
//! virtio-mmio device.

use std::cell::RefCell;

use numavisor_policy::devices::virtio::QueueMemory;

/// `0..len` of guest-physical memory; anything beyond is not RAM.
pub struct Ram(pub RefCell<Vec<u8>>);

impl QueueMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let ram = self.0.borrow();
        let Some(range) = range(gpa, buf.len(), ram.len()) else {
            return false;
        };
        buf.copy_from_slice(&ram[range]);
        true
    }
    fn write(&self, gpa: u64, bytes: &[u8]) -> bool {
        let mut ram = self.0.borrow_mut();
        let Some(range) = range(gpa, bytes.len(), ram.len()) else {
            return false;
        };
        ram[range].copy_from_slice(bytes);
        true
    }
}

fn range(gpa: u64, len: usize, ram: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(gpa).ok()?;
    let end = start.checked_add(len)?;
    (end <= ram).then_some(start..end)
}

/// Linux's virtio_mmio probe of a device through its register writes `write` (offset,
/// value): reset, ACKNOWLEDGE, DRIVER, driver features `features` (the low word; VERSION_1
/// in the high one), FEATURES_OK, then `queues` queues of 16 with queue `q`'s rings at
/// 0x1000 * q (descriptors, available ring at +0x100, used ring at +0x200), and DRIVER_OK.
pub fn probe(mut write: impl FnMut(u64, u32), features: u32, queues: u32) {
    write(0x070, 0);
    write(0x070, 1);
    write(0x070, 3);
    write(0x024, 1);
    write(0x020, 1);
    write(0x024, 0);
    write(0x020, features);
    write(0x070, 0xB);
    for q in 0..queues {
        write(0x030, q);
        write(0x038, 16);
        write(0x080, 0x1000 * q);
        write(0x090, 0x1000 * q + 0x100);
        write(0x0A0, 0x1000 * q + 0x200);
        write(0x044, 1);
    }
    write(0x070, 0xF);
}
