//! The two ways to reach the APIC's registers (Intel SDM vol. 3A Table 11-1 and Table 11-6):
//! xAPIC MMIO, register `n` at offset `n * 16` of the 4 KiB page at 0xFEE00000, and x2APIC
//! MSRs, register `n` at MSR `0x800 + n`. One table below serves both; what differs is how a
//! refused access ends.
//!
//! xAPIC: only 4-byte accesses at a 16-byte-aligned offset below 0x1000 reach a register.
//! Anything else (other sizes, unaligned or in-between offsets), reserved offsets and writes
//! to read-only registers: reads 0, writes ignored. Upper bits of a 64-bit value are dropped.
//!
//! x2APIC: #GP for MSRs with no register (APR, RRD, DFR, ICR high, reserved), RDMSR of the
//! write-only EOI and SELF IPI, WRMSR to read-only registers (ID, version, PPR, LDR, ISR,
//! TMR, IRR, current count), a non-zero WRMSR to EOI or ESR, SELF IPI values above 0xFF, and
//! bits 32–63 set in anything but the ICR. Other reserved bits are dropped without a fault.
//!
//! MMIO is dead in x2APIC mode and MSRs are #GP outside it; both are dead while disabled.

use super::icr::{self, ICR_HIGH_XAPIC_MASK, ICR_LOW_MASK};
use super::{ApicFault, ApicMode, LapicEffect, LocalApic, Lvt, DFR_MODEL, LDR_XAPIC_MASK, VERSION};

// Register numbers: MMIO offset / 16, or MSR - 0x800.
const ID: u32 = 0x02;
const VERSION_REG: u32 = 0x03;
const TPR: u32 = 0x08;
const APR: u32 = 0x09;
const PPR: u32 = 0x0A;
const EOI: u32 = 0x0B;
const RRD: u32 = 0x0C;
const LDR: u32 = 0x0D;
const DFR: u32 = 0x0E;
const SVR: u32 = 0x0F;
const ISR_FIRST: u32 = 0x10;
const ISR_LAST: u32 = 0x17;
const TMR_FIRST: u32 = 0x18;
const TMR_LAST: u32 = 0x1F;
const IRR_FIRST: u32 = 0x20;
const IRR_LAST: u32 = 0x27;
const ESR: u32 = 0x28;
const ICR_LOW: u32 = 0x30;
const ICR_HIGH: u32 = 0x31;
const LVT_TIMER: u32 = 0x32;
const LVT_THERMAL: u32 = 0x33;
const LVT_PERFORMANCE: u32 = 0x34;
const LVT_LINT0: u32 = 0x35;
const LVT_LINT1: u32 = 0x36;
const LVT_ERROR: u32 = 0x37;
const INITIAL_COUNT: u32 = 0x38;
const CURRENT_COUNT: u32 = 0x39;
const DIVIDE_CONFIG: u32 = 0x3E;
const SELF_IPI: u32 = 0x3F;

/// The first x2APIC MSR; the range is 0x800–0x8FF.
pub const X2APIC_MSR_BASE: u32 = 0x800;
/// Size of the xAPIC MMIO page.
pub const XAPIC_MMIO_SIZE: u64 = 0x1000;

/// The access reaches no register, or one that refuses it: 0/ignored in xAPIC, #GP in x2APIC.
struct Refused;

/// The LVT entry behind register `index`.
fn lvt_entry(index: u32) -> Option<Lvt> {
    Some(match index {
        LVT_TIMER => Lvt::Timer,
        LVT_THERMAL => Lvt::Thermal,
        LVT_PERFORMANCE => Lvt::Performance,
        LVT_LINT0 => Lvt::Lint0,
        LVT_LINT1 => Lvt::Lint1,
        LVT_ERROR => Lvt::Error,
        _ => return None,
    })
}

/// The register an MMIO access of `size` bytes at `offset` reaches, if it is well formed.
fn mmio_register(offset: u64, size: u8) -> Option<u32> {
    if size != 4 || offset & 0xF != 0 || offset >= XAPIC_MMIO_SIZE {
        return None;
    }
    // Below 0x1000 / 16 = 0x100.
    Some((offset >> 4) as u32)
}

/// The register behind an x2APIC MSR number.
fn msr_register(msr: u32) -> Option<u32> {
    msr.checked_sub(X2APIC_MSR_BASE)
        .filter(|index| *index < 0x100)
}

impl LocalApic {
    /// A guest read of `size` bytes at `offset` into the APIC page, at guest TSC `now`.
    ///
    /// A globally disabled APIC is no APIC (SDM vol. 3A §11.4.3), and in x2APIC mode the page
    /// behaves as in the disabled state (§11.12.2): the read reaches nothing and returns all
    /// ones, as an access to no device does.
    pub fn mmio_read(&mut self, offset: u64, size: u8, now: u64) -> u64 {
        if self.mode != ApicMode::XApic {
            return match size {
                1 | 2 | 4 => (1u64 << (8 * size)) - 1,
                _ => u64::MAX,
            };
        }
        let Some(index) = mmio_register(offset, size) else {
            return 0;
        };
        self.advance(now);
        self.read_register(index, now)
            .map_or(0, |value| value & 0xFFFF_FFFF)
    }

    /// A guest write of `size` bytes at `offset` into the APIC page, at guest TSC `now`.
    /// Dropped while the APIC is disabled or in x2APIC mode (see [`LocalApic::mmio_read`]).
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64, now: u64) -> LapicEffect {
        let Some(index) = mmio_register(offset, size) else {
            return LapicEffect::None;
        };
        if self.mode != ApicMode::XApic {
            return LapicEffect::None;
        }
        self.advance(now);
        self.write_register(index, value & 0xFFFF_FFFF, now)
            .unwrap_or(LapicEffect::None)
    }

    /// RDMSR of an x2APIC register (0x800–0x8FF) at guest TSC `now`. IA32_APIC_BASE and
    /// IA32_TSC_DEADLINE have their own methods.
    pub fn msr_read(&mut self, msr: u32, now: u64) -> Result<u64, ApicFault> {
        let index = msr_register(msr).ok_or(ApicFault::GeneralProtection)?;
        if self.mode != ApicMode::X2Apic {
            return Err(ApicFault::GeneralProtection);
        }
        self.advance(now);
        self.read_register(index, now)
            .map_err(|Refused| ApicFault::GeneralProtection)
    }

    /// WRMSR of an x2APIC register (0x800–0x8FF) at guest TSC `now`.
    pub fn msr_write(&mut self, msr: u32, value: u64, now: u64) -> Result<LapicEffect, ApicFault> {
        let index = msr_register(msr).ok_or(ApicFault::GeneralProtection)?;
        if self.mode != ApicMode::X2Apic {
            return Err(ApicFault::GeneralProtection);
        }
        if index != ICR_LOW && value >> 32 != 0 {
            return Err(ApicFault::GeneralProtection);
        }
        self.advance(now);
        self.write_register(index, value, now)
            .map_err(|Refused| ApicFault::GeneralProtection)
    }

    /// Register `index` as the current mode shows it. The timer is already at `now`.
    fn read_register(&self, index: u32, now: u64) -> Result<u64, Refused> {
        let x2apic = self.mode == ApicMode::X2Apic;
        let value = match index {
            ID if x2apic => self.initial_id,
            ID => u32::from(self.xapic_id) << 24,
            VERSION_REG => VERSION,
            TPR => u32::from(self.tpr),
            APR | RRD if !x2apic => 0,
            PPR => u32::from(self.ppr()),
            EOI if !x2apic => 0,
            LDR if x2apic => self.x2apic_ldr(),
            LDR => self.ldr,
            DFR if !x2apic => self.dfr,
            SVR => self.svr,
            ISR_FIRST..=ISR_LAST => self.isr.word((index - ISR_FIRST) as usize),
            TMR_FIRST..=TMR_LAST => self.tmr.word((index - TMR_FIRST) as usize),
            IRR_FIRST..=IRR_LAST => self.irr.word((index - IRR_FIRST) as usize),
            ESR => self.esr,
            // Delivery status (bit 12) is never stored: the ICR always reads idle.
            ICR_LOW if x2apic => {
                return Ok(u64::from(self.icr_high) << 32 | u64::from(self.icr_low))
            }
            ICR_LOW => self.icr_low,
            ICR_HIGH if !x2apic => self.icr_high,
            INITIAL_COUNT => self.timer.initial_count(),
            CURRENT_COUNT => self.timer.current_count(now),
            DIVIDE_CONFIG => self.timer.divide_config(),
            _ => match lvt_entry(index) {
                Some(entry) => self.lvt[entry as usize],
                None => return Err(Refused),
            },
        };
        Ok(u64::from(value))
    }

    /// A write of `value` to register `index`; x2APIC callers have already refused bits
    /// 32–63 outside the ICR. The timer is already at `now`.
    fn write_register(&mut self, index: u32, value: u64, now: u64) -> Result<LapicEffect, Refused> {
        let x2apic = self.mode == ApicMode::X2Apic;
        let low = value as u32;
        match index {
            ID if !x2apic => self.xapic_id = (low >> 24) as u8,
            TPR => self.tpr = low as u8,
            EOI if x2apic && low != 0 => return Err(Refused),
            EOI => return Ok(self.end_of_interrupt()),
            LDR if !x2apic => self.ldr = low & LDR_XAPIC_MASK,
            DFR if !x2apic => self.dfr = low | !DFR_MODEL,
            SVR => self.write_svr(low),
            ESR if x2apic && low != 0 => return Err(Refused),
            ESR => self.latch_errors(),
            ICR_LOW => {
                self.icr_low = low & ICR_LOW_MASK;
                let destination = if x2apic {
                    self.icr_high = (value >> 32) as u32;
                    self.icr_high
                } else {
                    self.icr_high >> 24
                };
                return Ok(self.send(icr::decode(self.icr_low, destination)));
            }
            ICR_HIGH if !x2apic => self.icr_high = low & ICR_HIGH_XAPIC_MASK,
            INITIAL_COUNT => self.timer.set_initial_count(low, now),
            DIVIDE_CONFIG => self.timer.set_divide_config(low, now),
            SELF_IPI if x2apic && low <= 0xFF => {
                return Ok(LapicEffect::Ipi(icr::self_ipi(low as u8)))
            }
            // Read-only registers: ignored in xAPIC mode, #GP in x2APIC mode.
            ID | VERSION_REG | APR | PPR | RRD | ISR_FIRST..=IRR_LAST | CURRENT_COUNT
                if !x2apic => {}
            _ => match lvt_entry(index) {
                Some(entry) => self.write_lvt(entry, low, now),
                None => return Err(Refused),
            },
        }
        Ok(LapicEffect::None)
    }
}
