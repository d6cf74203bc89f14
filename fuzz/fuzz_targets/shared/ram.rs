//! Guest RAM for the virtio fuzz targets: a flat byte vector the fuzzer fills, reached at
//! guest-physical 0.. as the device models reach guest memory.

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
