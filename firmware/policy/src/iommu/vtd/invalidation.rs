//! Invalidating a VT-d unit's caches after table changes (Intel VT-d spec 4.1 §6.5): the
//! context cache, the IOTLB (second-level translations and paging-structure caches) and the
//! interrupt entry cache.
//!
//! Two mechanisms: the registers CCMD and IOTLB (§6.5.1, §10.4.7–§10.4.8), one request at a
//! time, and the invalidation queue (§6.5.2), a ring of 128-bit descriptors in memory that
//! the unit consumes from IQH to IQT. Once the queue is enabled the registers must not be
//! used (QEMU logs an error and ignores them), and interrupt entries can only be invalidated
//! through the queue. [`VtdUnit::invalidate_domain`] and [`VtdUnit::invalidate_all`] pick
//! the mechanism.
//!
//! A batch on the queue ends with an invalidation wait descriptor that writes a status
//! dword to memory (SW, fence FN); the driver waits for that write. It never sets IF with SW:
//! QEMU 7.2 aborts on a wait descriptor with both.

use super::registers::{
    context_command, fault_status, global, iotlb_command, CCMD, FSTS, IQA, IQH, IQT,
};
use super::{VtdError, VtdUnit};
use crate::iommu::DomainId;
use crate::memory::PAGE_SIZE;
use crate::slat::ADDRESS_MASK;

/// The memory the invalidation queue and its status dword live in. The firmware implements
/// it over identity-mapped memory (the status read must be volatile: the unit writes it).
pub trait QueueMemory {
    /// Stores the 128-bit `descriptor` (low qword at `address`, high at `address + 8`).
    fn write_descriptor(&mut self, address: u64, descriptor: [u64; 2]);
    /// The dword at `address`.
    fn read_status(&self, address: u64) -> u32;
    /// Stores `value` in the dword at `address`.
    fn write_status(&mut self, address: u64, value: u32);
}

/// Where the invalidation queue lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The ring's base, aligned to 4 KiB.
    pub base: u64,
    /// IQA.QS: the ring holds 256 × 2^`size_log2` descriptors (4 KiB × 2^`size_log2`), 0..=7.
    pub size_log2: u8,
    /// The dword the wait descriptors write, 4-byte aligned, outside the ring.
    pub status: u64,
}

/// The driver's view of an enabled queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Queue {
    config: QueueConfig,
    /// Descriptors in the ring.
    entries: u64,
    /// The next free slot (what IQT says).
    tail: u64,
    /// The value the last wait descriptor wrote.
    sequence: u32,
}

/// What a context-cache invalidation covers (§6.5.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextScope {
    Global,
    Domain(DomainId),
}

/// What an IOTLB invalidation covers (§6.5.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotlbScope {
    Global,
    Domain(DomainId),
    /// 2^`mask_order` pages of `domain` from `address` (aligned to that size); needs CAP.PSI
    /// and `mask_order` ≤ CAP.MAMV.
    Pages {
        domain: DomainId,
        address: u64,
        mask_order: u8,
    },
}

/// What an interrupt-entry-cache invalidation covers (§6.5.2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptEntryScope {
    Global,
    /// 2^`mask_order` entries from `index` (aligned to that count).
    Entries {
        index: u16,
        mask_order: u8,
    },
}

/// Descriptor type codes (bits 3:0).
const TYPE_CONTEXT: u64 = 0x1;
const TYPE_IOTLB: u64 = 0x2;
const TYPE_INTERRUPT_ENTRY: u64 = 0x4;
const TYPE_WAIT: u64 = 0x5;
/// Granularity field (bits 5:4) of context and IOTLB descriptors: 1 global, 2 domain, 3
/// device (context) or page (IOTLB).
const GRANULARITY_SHIFT: u32 = 4;
/// Domain ID in bits 31:16 of context and IOTLB descriptors.
const DESCRIPTOR_DID_SHIFT: u32 = 16;
/// IOTLB descriptor: drain writes (bit 6), drain reads (bit 7).
const IOTLB_DRAIN_WRITES: u64 = 1 << 6;
const IOTLB_DRAIN_READS: u64 = 1 << 7;
/// Wait descriptor: status write (bit 5), fence (bit 6): later descriptors wait for this one.
const WAIT_STATUS_WRITE: u64 = 1 << 5;
const WAIT_FENCE: u64 = 1 << 6;

/// The context-cache invalidation descriptor for `scope`.
pub fn context_descriptor(scope: ContextScope) -> [u64; 2] {
    let low = match scope {
        ContextScope::Global => 1 << GRANULARITY_SHIFT,
        ContextScope::Domain(domain) => {
            2 << GRANULARITY_SHIFT | u64::from(domain.0) << DESCRIPTOR_DID_SHIFT
        }
    };
    [TYPE_CONTEXT | low, 0]
}

/// The IOTLB invalidation descriptor for `scope`; `drain` asks the unit to drain pending
/// reads and writes first (only where CAP.DRD / CAP.DWD say it can).
pub fn iotlb_descriptor(scope: IotlbScope, drain_reads: bool, drain_writes: bool) -> [u64; 2] {
    let mut low = TYPE_IOTLB;
    if drain_reads {
        low |= IOTLB_DRAIN_READS;
    }
    if drain_writes {
        low |= IOTLB_DRAIN_WRITES;
    }
    let domain_bits = |domain: DomainId| u64::from(domain.0) << DESCRIPTOR_DID_SHIFT;
    match scope {
        IotlbScope::Global => [low | 1 << GRANULARITY_SHIFT, 0],
        IotlbScope::Domain(domain) => [low | 2 << GRANULARITY_SHIFT | domain_bits(domain), 0],
        IotlbScope::Pages {
            domain,
            address,
            mask_order,
        } => [
            low | 3 << GRANULARITY_SHIFT | domain_bits(domain),
            // ADDR 63:12, IH 6 clear (paging-structure caches too), AM 5:0.
            (address & ADDRESS_MASK) | u64::from(mask_order & 0x3f),
        ],
    }
}

/// The interrupt-entry-cache invalidation descriptor for `scope`: G (bit 4) 0 global, 1
/// index-selective with IM in bits 31:27 and IIDX in 47:32.
pub fn interrupt_entry_descriptor(scope: InterruptEntryScope) -> [u64; 2] {
    let low = match scope {
        InterruptEntryScope::Global => 0,
        InterruptEntryScope::Entries { index, mask_order } => {
            1 << 4 | u64::from(mask_order & 0x1f) << 27 | u64::from(index) << 32
        }
    };
    [TYPE_INTERRUPT_ENTRY | low, 0]
}

/// The invalidation wait descriptor that writes `data` to the dword at `status` once every
/// earlier descriptor has completed.
pub fn wait_descriptor(status: u64, data: u32) -> [u64; 2] {
    [
        TYPE_WAIT | WAIT_STATUS_WRITE | WAIT_FENCE | u64::from(data) << 32,
        status & !0b11,
    ]
}

impl<R: super::RegisterAccess> VtdUnit<R> {
    /// Sets up and turns on the invalidation queue (§6.5.2): IQT = 0, IQA = base | QS, then
    /// GCMD.QIE, waiting for GSTS.QIES. From now on invalidations go through it.
    pub fn enable_queued_invalidation(&mut self, config: QueueConfig) -> Result<(), VtdError> {
        if !self.caps.queued_invalidation() {
            return Err(VtdError::Unsupported {
                feature: "queued invalidation (ECAP.QI)",
            });
        }
        if !config.base.is_multiple_of(PAGE_SIZE) || config.base & !ADDRESS_MASK != 0 {
            return Err(VtdError::BadAddress {
                what: "invalidation queue base",
                address: config.base,
            });
        }
        if config.size_log2 > 7 {
            return Err(VtdError::BadAddress {
                what: "invalidation queue size (QS 0..=7)",
                address: u64::from(config.size_log2),
            });
        }
        let ring_end = config.base + (PAGE_SIZE << config.size_log2);
        if !config.status.is_multiple_of(4) || (config.base..ring_end).contains(&config.status) {
            return Err(VtdError::BadAddress {
                what: "invalidation wait status dword",
                address: config.status,
            });
        }
        self.regs.write64(IQT, 0);
        // IQA bit 11 (DW) = 0: 128-bit descriptors.
        self.regs
            .write64(IQA, config.base | u64::from(config.size_log2));
        self.command(global::QIE, true, global::QIE)?;
        self.queue = Some(Queue {
            config,
            entries: 256 << config.size_log2,
            tail: 0,
            sequence: 0,
        });
        Ok(())
    }

    /// Whether invalidations go through the queue.
    pub fn queued_invalidation_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Invalidates what the unit caches for `domain`: its context entries, then its IOTLB
    /// entries (in that order, §6.5). Call after assigning or unassigning a device of the
    /// domain, and after changing its second-level tables (mapping too, under caching mode).
    pub fn invalidate_domain(
        &mut self,
        memory: &mut impl QueueMemory,
        domain: DomainId,
    ) -> Result<(), VtdError> {
        self.invalidate(
            memory,
            ContextScope::Domain(domain),
            IotlbScope::Domain(domain),
        )
    }

    /// Invalidates every context entry and IOTLB entry the unit caches: after setting the root
    /// table.
    pub fn invalidate_all(&mut self, memory: &mut impl QueueMemory) -> Result<(), VtdError> {
        self.invalidate(memory, ContextScope::Global, IotlbScope::Global)
    }

    /// Invalidates the whole interrupt entry cache: after setting the interrupt remapping
    /// table and after changing an IRTE. Needs the invalidation queue.
    pub fn invalidate_interrupt_entries(
        &mut self,
        memory: &mut impl QueueMemory,
    ) -> Result<(), VtdError> {
        if self.queue.is_none() {
            return Err(VtdError::Unsupported {
                feature: "the invalidation queue (needed for interrupt-entry invalidation)",
            });
        }
        self.submit(
            memory,
            &[interrupt_entry_descriptor(InterruptEntryScope::Global)],
        )
    }

    fn invalidate(
        &mut self,
        memory: &mut impl QueueMemory,
        context: ContextScope,
        iotlb: IotlbScope,
    ) -> Result<(), VtdError> {
        if self.caps.needs_write_buffer_flush() {
            // Table writes may sit in the unit's write buffer until flushed (CAP.RWBF).
            // WBFS is set while the flush runs: wait for it to clear, not to be seen set (a
            // fast unit finishes before the first read).
            self.write_command(global::WBF, true);
            self.wait_status(global::WBF, false)?;
        }
        let (drain_reads, drain_writes) = (self.caps.drains_reads(), self.caps.drains_writes());
        if self.queue.is_some() {
            return self.submit(
                memory,
                &[
                    context_descriptor(context),
                    iotlb_descriptor(iotlb, drain_reads, drain_writes),
                ],
            );
        }
        self.invalidate_context_register(context)?;
        self.invalidate_iotlb_register(iotlb, drain_reads, drain_writes)
    }

    /// CCMD: ICC with the granularity, then wait for ICC to clear; CAIG 0 means refused.
    fn invalidate_context_register(&mut self, scope: ContextScope) -> Result<(), VtdError> {
        let request = match scope {
            ContextScope::Global => context_command::GLOBAL,
            ContextScope::Domain(domain) => context_command::DOMAIN | u64::from(domain.0),
        };
        self.regs.write64(CCMD, context_command::ICC | request);
        let done = self.wait_clear64(CCMD, context_command::ICC, "CCMD", "ICC")?;
        if (done >> context_command::ACTUAL_SHIFT) & 0b11 == 0 {
            return Err(VtdError::InvalidationNotPerformed { register: "CCMD" });
        }
        Ok(())
    }

    /// The IOTLB register (ECAP.IRO × 16 + 8): IVT with granularity, domain and drains, the
    /// address in IVA first for a page request; wait for IVT to clear; IAIG 0 means refused.
    fn invalidate_iotlb_register(
        &mut self,
        scope: IotlbScope,
        drain_reads: bool,
        drain_writes: bool,
    ) -> Result<(), VtdError> {
        let iva = self.caps.iotlb_offset();
        let register = iva + 8;
        let mut request = iotlb_command::IVT;
        if drain_reads {
            request |= iotlb_command::DRAIN_READS;
        }
        if drain_writes {
            request |= iotlb_command::DRAIN_WRITES;
        }
        let domain_bits = |domain: DomainId| u64::from(domain.0) << iotlb_command::DID_SHIFT;
        request |= match scope {
            IotlbScope::Global => iotlb_command::GLOBAL,
            IotlbScope::Domain(domain) => iotlb_command::DOMAIN | domain_bits(domain),
            IotlbScope::Pages {
                domain,
                address,
                mask_order,
            } => {
                self.regs
                    .write64(iva, (address & ADDRESS_MASK) | u64::from(mask_order & 0x3f));
                iotlb_command::PAGE | domain_bits(domain)
            }
        };
        self.regs.write64(register, request);
        let done = self.wait_clear64(register, iotlb_command::IVT, "IOTLB", "IVT")?;
        if (done >> iotlb_command::ACTUAL_SHIFT) & 0b11 == 0 {
            return Err(VtdError::InvalidationNotPerformed { register: "IOTLB" });
        }
        Ok(())
    }

    /// Queues `descriptors` and a wait descriptor, moves IQT past them, and waits for the
    /// wait's status write (or a queue error).
    fn submit(
        &mut self,
        memory: &mut impl QueueMemory,
        descriptors: &[[u64; 2]],
    ) -> Result<(), VtdError> {
        let Some(mut queue) = self.queue else {
            return Err(VtdError::Unsupported {
                feature: "queued invalidation (not enabled)",
            });
        };
        let head = (self.regs.read64(IQH) >> 4) % queue.entries;
        let used = (queue.tail + queue.entries - head) % queue.entries;
        // One slot stays empty: IQH == IQT means "empty", never "full".
        let free = queue.entries - 1 - used;
        let needed = descriptors.len() as u64 + 1;
        if needed > free {
            return Err(VtdError::QueueFull {
                needed: needed as u32,
                free: free as u32,
            });
        }
        queue.sequence = queue.sequence.wrapping_add(1).max(1);
        let status = queue.config.status;
        memory.write_status(status, 0);
        let wait = wait_descriptor(status, queue.sequence);
        for &descriptor in descriptors.iter().chain([&wait]) {
            memory.write_descriptor(queue.config.base + queue.tail * 16, descriptor);
            queue.tail = (queue.tail + 1) % queue.entries;
        }
        self.queue = Some(queue);
        self.regs.write64(IQT, queue.tail << 4);

        for _ in 0..self.spin_limit {
            if memory.read_status(status) == queue.sequence {
                return Ok(());
            }
            if self.regs.read32(FSTS) & fault_status::IQE != 0 {
                // The unit stopped at IQH. Drop the rest of the batch (IQT = IQH), then clear
                // IQE so the unit fetches again, from an empty queue.
                let head = self.regs.read64(IQH) & 0x7fff0;
                self.regs.write64(IQT, head);
                self.regs.write32(FSTS, fault_status::IQE);
                queue.tail = (head >> 4) % queue.entries;
                self.queue = Some(queue);
                return Err(VtdError::QueueError {
                    head: queue.config.base + head,
                });
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout {
            register: "invalidation wait status",
            bit: "status data",
            expected: true,
            polls: self.spin_limit,
        })
    }
}
