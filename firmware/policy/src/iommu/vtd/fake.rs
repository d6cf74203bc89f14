//! A fake VT-d unit for the driver's tests: registers that behave as the spec (and QEMU 7.2)
//! says, with knobs for slow and broken units. GCMD changes reach GSTS after `delay` reads;
//! CCMD and IOTLB requests stay busy for `delay` reads; IQT writes make it consume the
//! invalidation queue from shared memory, checking each descriptor against QEMU 7.2's
//! reserved-bit masks (a bad one sets FSTS.IQE, as QEMU does); fault records can be injected.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::registers::tests::{QEMU_CAP, QEMU_ECAP};
use super::registers::*;
use super::QueueMemory;

/// Memory the driver writes descriptors into and the fake reads them from.
#[derive(Clone, Debug, Default)]
pub struct SharedMemory(pub Rc<RefCell<BTreeMap<u64, u64>>>);

impl SharedMemory {
    fn qword(&self, address: u64) -> u64 {
        self.0.borrow().get(&address).copied().unwrap_or(0)
    }
}

impl QueueMemory for SharedMemory {
    fn write_descriptor(&mut self, address: u64, descriptor: [u64; 2]) {
        let mut memory = self.0.borrow_mut();
        memory.insert(address, descriptor[0]);
        memory.insert(address + 8, descriptor[1]);
    }

    fn read_status(&self, address: u64) -> u32 {
        self.qword(address) as u32
    }

    fn write_status(&mut self, address: u64, value: u32) {
        self.0.borrow_mut().insert(address, u64::from(value));
    }
}

/// One invalidation the fake performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Performed {
    /// A CCMD write with ICC (the value written).
    ContextRegister(u64),
    /// An IOTLB register write with IVT (the value written).
    IotlbRegister(u64),
    /// A queued descriptor other than a wait.
    Descriptor([u64; 2]),
}

const PERSISTENT: u32 = global::TE | global::EAFL | global::QIE | global::IRE | global::CFI;

#[derive(Debug)]
pub struct FakeUnit {
    pub cap: u64,
    pub ecap: u64,
    pub gsts: u32,
    /// GSTS reads before a GCMD change shows, and busy reads of CCMD/IOTLB.
    pub delay: u32,
    /// GSTS bits this unit never sets (a broken unit).
    pub never_sets: u32,
    /// Whether CCMD/IOTLB requests never complete.
    pub stuck_invalidation: bool,
    /// Whether CCMD/IOTLB report "not performed" (actual granularity 0).
    pub refuse_invalidation: bool,
    /// Whether the queue is never consumed.
    pub ignore_queue: bool,
    /// Descriptor type this unit rejects with IQE.
    pub reject_type: Option<u64>,
    pub gcmd_writes: Vec<u32>,
    pub performed: Vec<Performed>,
    /// Register invalidations issued while the queue was enabled (QEMU ignores them).
    pub registers_while_queued: u32,
    pub rtaddr: u64,
    pub irta: u64,
    pub iqa: u64,
    pub iqh: u64,
    pub iqt: u64,
    pub fsts: u32,
    /// Fault recording registers, [low, high].
    pub records: Vec<[u64; 2]>,
    /// The record FSTS.FRI names while it is full (default: the first full one).
    pub first_record: Option<usize>,
    pub memory: SharedMemory,
    pending: Option<(u32, u32)>,
    ccmd: (u64, u32),
    iotlb: (u64, u32),
}

impl FakeUnit {
    /// QEMU 7.2's `intel-iommu,aw-bits=48,caching-mode=on,intremap=on`, with `records` fault
    /// records.
    pub fn qemu(records: usize) -> FakeUnit {
        let nfr = (records as u64 - 1) << 40;
        FakeUnit {
            cap: (QEMU_CAP & !(0xff << 40)) | nfr,
            ecap: QEMU_ECAP,
            gsts: 0,
            delay: 2,
            never_sets: 0,
            stuck_invalidation: false,
            refuse_invalidation: false,
            ignore_queue: false,
            reject_type: None,
            gcmd_writes: Vec::new(),
            performed: Vec::new(),
            registers_while_queued: 0,
            rtaddr: 0,
            irta: 0,
            iqa: 0,
            iqh: 0,
            iqt: 0,
            fsts: 0,
            records: alloc::vec![[0; 2]; records],
            first_record: None,
            memory: SharedMemory::default(),
            pending: None,
            ccmd: (0, 0),
            iotlb: (0, 0),
        }
    }

    /// The same unit without queued invalidation (register-based only).
    pub fn without_queue(mut self) -> FakeUnit {
        self.ecap &= !(1 << 1);
        self
    }

    /// Records a fault in record `index`, as hardware does (or sets PFO if it is full).
    pub fn inject_fault(&mut self, index: usize, low: u64, high: u64) {
        if self.records[index][1] >> 63 != 0 {
            self.fsts |= fault_status::PFO;
        } else {
            self.records[index] = [low, high | 1 << 63];
        }
    }

    fn fault_offset(&self) -> u32 {
        Capabilities::new(0, self.cap, self.ecap).fault_recording_offset()
    }

    fn iotlb_offset(&self) -> u32 {
        Capabilities::new(0, self.cap, self.ecap).iotlb_offset()
    }

    fn settle(&mut self) {
        if let Some((status, reads)) = self.pending {
            if reads == 0 {
                self.gsts = status & !self.never_sets;
                self.pending = None;
            } else {
                self.pending = Some((status, reads - 1));
            }
        }
    }

    fn gcmd(&mut self, command: u32) {
        self.gcmd_writes.push(command);
        if let Some((status, _)) = self.pending.take() {
            self.gsts = status & !self.never_sets;
        }
        // QEMU keeps RTPS and IRTPS set once set; hardware clears them at the command. Model
        // QEMU: they stay.
        let mut status = (self.gsts & !PERSISTENT) | (command & PERSISTENT);
        if command & global::SRTP != 0 {
            status |= global::SRTP;
        }
        if command & global::SIRTP != 0 {
            status |= global::SIRTP;
        }
        if command & global::QIE == 0 {
            self.iqh = 0;
        }
        self.pending = Some((status, self.delay));
    }

    /// Consumes the queue from IQH to IQT.
    fn run_queue(&mut self) {
        if self.ignore_queue || self.gsts & global::QIE == 0 || self.fsts & fault_status::IQE != 0 {
            return;
        }
        let base = self.iqa & !0xfff;
        let entries = 256u64 << (self.iqa & 7);
        while self.iqh != self.iqt {
            let address = base + self.iqh;
            let descriptor = [self.memory.qword(address), self.memory.qword(address + 8)];
            if !self.perform(descriptor) {
                self.fsts |= fault_status::IQE;
                return;
            }
            self.iqh = (self.iqh + 16) % (entries * 16);
        }
    }

    /// One descriptor, checked against QEMU 7.2's reserved masks; false if malformed.
    fn perform(&mut self, [low, high]: [u64; 2]) -> bool {
        let kind = low & 0xf;
        if Some(kind) == self.reject_type {
            return false;
        }
        let reserved: [u64; 2] = match kind {
            0x1 => [0xfffc_0000_0000_f1c0, u64::MAX],
            0x2 => [0xffff_ffff_0000_f100, 0xf80],
            0x4 => [0xffff_0000_07ff_f1e0, u64::MAX],
            0x5 => [0xffff_f180, 0b11],
            _ => return false,
        };
        if low & reserved[0] != 0 || high & reserved[1] != 0 {
            return false;
        }
        if kind == 0x5 {
            let (status_write, interrupt) = (low & 1 << 5 != 0, low & 1 << 4 != 0);
            if status_write == interrupt {
                // QEMU 7.2 aborts on both and refuses neither.
                return false;
            }
            self.memory.0.borrow_mut().insert(high, low >> 32);
        } else {
            self.performed.push(Performed::Descriptor([low, high]));
        }
        true
    }

    /// Completes a CCMD or IOTLB request after its busy reads.
    fn invalidation_read(
        &mut self,
        register: u64,
        busy: u32,
        busy_bit: u64,
        granularity_shift: u32,
        actual_shift: u32,
    ) -> (u64, u32) {
        if register & busy_bit == 0 || self.stuck_invalidation {
            return (register, busy);
        }
        if busy > 0 {
            return (register, busy - 1);
        }
        let granularity = (register >> granularity_shift) & 0b11;
        let actual = if self.refuse_invalidation {
            0
        } else {
            granularity
        };
        let done = (register & !busy_bit & !(0b11 << actual_shift)) | actual << actual_shift;
        (done, 0)
    }
}

impl RegisterAccess for FakeUnit {
    fn read32(&mut self, offset: u32) -> u32 {
        match offset {
            VER => 0x10,
            GSTS => {
                self.settle();
                self.gsts
            }
            FSTS => {
                let full = |index: &usize| self.records[*index][1] >> 63 != 0;
                let pending = self
                    .first_record
                    .filter(full)
                    .or_else(|| (0..self.records.len()).find(full));
                let mut fsts = self.fsts;
                if let Some(index) = pending {
                    fsts |= fault_status::PPF | (index as u32) << fault_status::FRI_SHIFT;
                }
                fsts
            }
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        match offset {
            GCMD => self.gcmd(value),
            FSTS => {
                let was_blocked = self.fsts & fault_status::IQE != 0;
                self.fsts &= !(value & fault_status::CLEAR);
                if was_blocked {
                    self.run_queue();
                }
            }
            _ => {}
        }
    }

    fn read64(&mut self, offset: u32) -> u64 {
        let (faults, iotlb) = (self.fault_offset(), self.iotlb_offset());
        match offset {
            CAP => self.cap,
            ECAP => self.ecap,
            RTADDR => self.rtaddr,
            CCMD => {
                let (value, busy) = self.ccmd;
                self.ccmd = self.invalidation_read(value, busy, context_command::ICC, 61, 59);
                self.ccmd.0
            }
            IQH => self.iqh,
            IQT => self.iqt,
            IQA => self.iqa,
            IRTA => self.irta,
            o if o == iotlb + 8 => {
                let (value, busy) = self.iotlb;
                self.iotlb = self.invalidation_read(value, busy, iotlb_command::IVT, 60, 57);
                self.iotlb.0
            }
            o if o >= faults && o < faults + 16 * self.records.len() as u32 => {
                let index = ((o - faults) / 16) as usize;
                self.records[index][((o - faults) % 16 / 8) as usize]
            }
            _ => 0,
        }
    }

    fn write64(&mut self, offset: u32, value: u64) {
        let (faults, iotlb) = (self.fault_offset(), self.iotlb_offset());
        let queued = self.gsts & global::QIE != 0;
        match offset {
            RTADDR => self.rtaddr = value,
            CCMD => {
                if queued {
                    self.registers_while_queued += 1;
                }
                self.performed.push(Performed::ContextRegister(value));
                self.ccmd = (value, self.delay);
            }
            IQT => {
                self.iqt = value & 0x7fff0;
                self.run_queue();
            }
            IQA => self.iqa = value,
            IRTA => self.irta = value,
            o if o == iotlb + 8 => {
                if queued {
                    self.registers_while_queued += 1;
                }
                self.performed.push(Performed::IotlbRegister(value));
                self.iotlb = (value, self.delay);
            }
            o if o >= faults && o < faults + 16 * self.records.len() as u32 => {
                let index = ((o - faults) / 16) as usize;
                if (o - faults) % 16 == 8 && value >> 63 != 0 {
                    self.records[index][1] &= !(1 << 63);
                }
            }
            _ => {}
        }
    }
}
