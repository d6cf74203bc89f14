//! A virtual local APIC, one per vCPU, as a pure register model (Intel SDM vol. 3A ch. 11,
//! "Advanced Programmable Interrupt Controller"; AMD APM vol. 2 ch. 16): the register file,
//! interrupt acceptance and priority (§11.8), the timer (§11.5.4, in [`timer`]), IPIs through
//! the ICR (§11.6, in [`icr`]), and the xAPIC MMIO and x2APIC MSR interfaces (§11.4, §11.12,
//! in [`registers`]).
//!
//! Time is guest TSC ticks, passed in as `now`; nothing here ticks on its own. The caller
//! arms a host timer for [`LocalApic::next_deadline`] and calls [`LocalApic::advance`] when it
//! fires. Writes return a [`LapicEffect`] the caller must carry out (an IPI to route, an EOI to
//! forward to the I/O APIC); the model never delivers to itself or to anyone else.
//!
//! Choices where the SDM leaves room, or where we do less than hardware:
//! - Version register 0x0005_0014: six LVT entries counted (timer, thermal, performance,
//!   LINT0, LINT1, error, so max LVT index 5) and no EOI-broadcast suppression (bit 24 clear;
//!   SVR bit 12 is not writable). There is no LVT CMCI register: the vCPU offers no machine
//!   check architecture, so no CMCI (MCG_CAP bit 10); offset 0x2F0 reads 0 and drops writes
//!   in xAPIC mode, and MSR 0x82F is #GP in x2APIC mode, as for any absent register.
//! - The base address is fixed at 0xFEE00000: an IA32_APIC_BASE write that moves it is #GP.
//!   The BSP bit reads as constructed; the value written there is ignored.
//! - Clearing IA32_APIC_BASE's enable bit resets the register state (the SDM leaves it
//!   undefined from xAPIC and lost from x2APIC), keeping the APIC ID.
//! - Thermal, performance and LINT entries are stored only; the caller owns those
//!   sources. NMI, SMI, INIT and SIPI are the caller's too, which is why a software-disabled
//!   APIC here refuses every vector through [`LocalApic::accept`].
//! - ESR bit 7 (illegal register address) is never set.

pub(crate) mod icr;
mod registers;
mod timer;
mod vectors;

#[cfg(test)]
mod tests;

pub use icr::{Ipi, IpiDelivery, Shorthand};
pub use registers::{X2APIC_MSR_BASE, XAPIC_MMIO_SIZE};

use timer::{ApicTimer, TimerMode};
use vectors::VectorSet;

/// What the caller must do after a register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicEffect {
    None,
    /// The guest ended the interrupt `vector`; for a level-triggered one the I/O APIC clears
    /// the remote IRR of the entries that carry it.
    Eoi {
        vector: u8,
        level_triggered: bool,
    },
    /// Deliver an IPI (to destinations found with [`LocalApic::matches_destination`]).
    Ipi(Ipi),
}

/// A guest access the architecture refuses with an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicFault {
    /// Inject #GP(0) instead of completing the RDMSR/WRMSR.
    GeneralProtection,
}

/// The architectural base address of the APIC's MMIO page.
pub const XAPIC_BASE: u64 = 0xFEE0_0000;
/// IA32_APIC_BASE bit 8: this processor is the bootstrap processor.
const BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode.
const BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: global enable.
const BASE_EN: u64 = 1 << 11;
/// IA32_APIC_BASE bits 12–51: the base address.
const BASE_ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;

/// Version register: version 0x14, max LVT entry 5, no EOI-broadcast suppression.
const VERSION: u32 = 0x0005_0014;
/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// SVR bits the guest can write: spurious vector, software enable, focus checking.
const SVR_MASK: u32 = 0x3FF;
/// LVT bit 16: masked.
const LVT_MASKED: u32 = 1 << 16;
/// DFR bits 28–31: the model (0xF flat, 0x0 cluster); the rest read as ones.
const DFR_MODEL: u32 = 0xF000_0000;
/// LDR bits 24–31: the xAPIC logical ID.
const LDR_XAPIC_MASK: u32 = 0xFF00_0000;

/// ESR bit 5: this APIC tried to send a fixed or lowest-priority IPI with a vector below 16.
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: this APIC received a vector below 16.
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// The local vector table entries, in `lvt` order, with the bits each can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lvt {
    Timer = 0,
    Thermal = 1,
    Performance = 2,
    Lint0 = 3,
    Lint1 = 4,
    Error = 5,
}

impl Lvt {
    /// Writable bits: vector, delivery mode, polarity, trigger mode, mask, timer mode, as
    /// the entry has them (SDM Figure 11-8). Delivery status and remote IRR always read 0.
    fn writable(self) -> u32 {
        match self {
            Lvt::Timer => 0x0007_00FF,
            Lvt::Thermal | Lvt::Performance => 0x0001_07FF,
            Lvt::Lint0 | Lvt::Lint1 => 0x0001_A7FF,
            Lvt::Error => 0x0001_00FF,
        }
    }
}

/// IA32_APIC_BASE's EN and EXTD bits as a state (SDM §11.12.5, Figure 11-27).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ApicMode {
    Disabled,
    XApic,
    X2Apic,
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct LocalApic {
    /// The hardware (x2APIC) ID; its low byte is the xAPIC ID at power-up.
    initial_id: u32,
    bsp: bool,
    mode: ApicMode,
    /// The xAPIC ID register's bits 24–31 (writable in xAPIC mode).
    xapic_id: u8,
    tpr: u8,
    /// xAPIC LDR (bits 24–31); in x2APIC mode the LDR is derived from the ID instead.
    ldr: u32,
    dfr: u32,
    svr: u32,
    irr: VectorSet,
    isr: VectorSet,
    tmr: VectorSet,
    /// ESR as the guest reads it: the errors latched by the last ESR write.
    esr: u32,
    /// Errors seen since the last ESR write.
    esr_pending: u32,
    icr_low: u32,
    /// xAPIC: ICR bits 32–63 as written (destination in 24–31); x2APIC: the destination.
    icr_high: u32,
    lvt: [u32; 6],
    timer: ApicTimer,
}

impl LocalApic {
    /// A local APIC after power-up: globally enabled in xAPIC mode, software-disabled, all
    /// LVT entries masked. `tsc_hz` is the guest TSC rate, `timer_hz` the APIC timer's input
    /// clock before the divider; a zero rate is treated as 1 Hz.
    pub fn new(apic_id: u32, bsp: bool, tsc_hz: u64, timer_hz: u64) -> LocalApic {
        let mut apic = LocalApic {
            initial_id: apic_id,
            bsp,
            mode: ApicMode::XApic,
            // The xAPIC ID is the low byte of the hardware ID (SDM §11.12.5.1).
            xapic_id: apic_id as u8,
            tpr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            irr: VectorSet::default(),
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [0; 6],
            timer: ApicTimer::new(tsc_hz, timer_hz),
        };
        apic.reset();
        apic
    }

    /// INIT (SDM §11.4.7.3): every register to its reset value except the APIC ID and
    /// IA32_APIC_BASE (the mode is kept). Putting the vCPU in wait-for-SIPI is the caller's.
    pub fn reset(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = 0xFFFF_FFFF;
        self.svr = 0xFF;
        self.irr = VectorSet::default();
        self.isr = VectorSet::default();
        self.tmr = VectorSet::default();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; 6];
        self.timer.reset();
    }

    /// The task-priority register (written by MOV CR8 as well as through the register).
    pub fn task_priority(&self) -> u8 {
        self.tpr
    }

    pub fn set_task_priority(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// The APIC ID: 8 bits (the ID register's top byte) in xAPIC mode, the 32-bit x2APIC ID
    /// otherwise.
    pub fn id(&self) -> u32 {
        match self.mode {
            ApicMode::X2Apic => self.initial_id,
            ApicMode::XApic | ApicMode::Disabled => u32::from(self.xapic_id),
        }
    }

    /// Globally enabled (IA32_APIC_BASE bit 11), in either mode.
    pub fn enabled(&self) -> bool {
        self.mode != ApicMode::Disabled
    }

    /// In x2APIC mode (IA32_APIC_BASE bit 10): the MSR interface is live, MMIO is not.
    pub fn x2apic_enabled(&self) -> bool {
        self.mode == ApicMode::X2Apic
    }

    /// Software-enabled (SVR bit 8).
    pub fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// IA32_APIC_BASE (MSR 0x1B) as RDMSR returns it.
    pub fn apic_base_msr(&self) -> u64 {
        let mut value = XAPIC_BASE;
        if self.bsp {
            value |= BASE_BSP;
        }
        match self.mode {
            ApicMode::Disabled => {}
            ApicMode::XApic => value |= BASE_EN,
            ApicMode::X2Apic => value |= BASE_EN | BASE_EXTD,
        }
        value
    }

    /// WRMSR to IA32_APIC_BASE. Legal: xAPIC → x2APIC, either → disabled, disabled → xAPIC,
    /// and any write that keeps the mode. #GP: x2APIC → xAPIC, disabled → x2APIC, EXTD
    /// without EN, reserved bits (0–7, 9, 52–63), and any base address but 0xFEE00000.
    pub fn set_apic_base_msr(&mut self, value: u64) -> Result<(), ApicFault> {
        let known = BASE_ADDRESS | BASE_EN | BASE_EXTD | BASE_BSP;
        if value & !known != 0 || value & BASE_ADDRESS != XAPIC_BASE {
            return Err(ApicFault::GeneralProtection);
        }
        let new = match (value & BASE_EN != 0, value & BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return Err(ApicFault::GeneralProtection),
        };
        match (self.mode, new) {
            (old, new) if old == new => {}
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(ApicFault::GeneralProtection)
            }
            (old, ApicMode::Disabled) => {
                if old == ApicMode::X2Apic {
                    // The legacy xAPIC ID survives as the x2APIC ID's low byte.
                    self.xapic_id = self.initial_id as u8;
                }
                self.reset();
                self.mode = ApicMode::Disabled;
            }
            // xAPIC → x2APIC keeps the registers (their extended fields are undefined, and
            // the x2APIC ID and LDR come from the hardware ID); disabled → xAPIC finds the
            // state reset by the way in.
            (_, new) => self.mode = new,
        }
        Ok(())
    }

    /// Interrupts a new vector can arrive through: globally and software-enabled.
    fn accepting(&self) -> bool {
        self.enabled() && self.software_enabled()
    }

    /// A fixed (or lowest-priority) interrupt arrives: IRR set, and TMR set for a level-
    /// triggered one (cleared for edge). Vectors 0–15 are illegal: ESR "receive illegal
    /// vector" is set and the interrupt dropped. Dropped too while disabled.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) {
        if !self.accepting() {
            return;
        }
        if vector < 16 {
            self.record_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        self.irr.set(vector);
        if level_triggered {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
    }

    /// An error the ESR reports, raising the LVT error interrupt if it is unmasked.
    fn record_error(&mut self, error: u32) {
        self.esr_pending |= error;
        let entry = self.lvt[Lvt::Error as usize];
        if entry & LVT_MASKED != 0 || !self.accepting() {
            return;
        }
        let vector = entry as u8;
        if vector < 16 {
            // No recursion: the illegal error vector is itself a receive error.
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
        } else {
            self.irr.set(vector);
            self.tmr.clear(vector);
        }
    }

    /// Processor priority (SDM §11.8.3.1): the TPR if its class is at least that of the
    /// highest in-service vector, else that vector's class.
    fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// The vector to inject next: the highest requested one whose priority class is above the
    /// processor priority class; None while the APIC is disabled in either sense.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.accepting() {
            return None;
        }
        let vector = self.irr.highest()?;
        (vector >> 4 > self.ppr() >> 4).then_some(vector)
    }

    /// Whether a requested interrupt waits only for the task priority: it is above the highest
    /// in-service class but not above the TPR's. Lowering the TPR must then deliver it. (One
    /// that [`Self::pending_vector`] offers is above the TPR's class, so it never counts.)
    pub fn held_by_task_priority(&self) -> bool {
        if !self.accepting() {
            return false;
        }
        let in_service = self.isr.highest().unwrap_or(0) >> 4;
        self.irr
            .highest()
            .is_some_and(|vector| vector >> 4 > in_service && vector >> 4 <= self.tpr >> 4)
    }

    /// Whether [`Self::pending_vector`] has something to inject.
    pub fn has_pending_interrupt(&self) -> bool {
        self.pending_vector().is_some()
    }

    /// The vCPU took `vector` (at injection): IRR → ISR. Nothing if it was not requested.
    pub fn acknowledge(&mut self, vector: u8) {
        if self.irr.contains(vector) {
            self.irr.clear(vector);
            self.isr.set(vector);
        }
    }

    /// The vCPU did not take `vector` after all (the backend's offer lapsed): ISR → IRR,
    /// undoing [`Self::acknowledge`]. Nothing if it is not in service.
    pub fn withdraw(&mut self, vector: u8) {
        if self.isr.contains(vector) {
            self.isr.clear(vector);
            self.irr.set(vector);
        }
    }

    /// An EOI write: the highest in-service vector ends.
    fn end_of_interrupt(&mut self) -> LapicEffect {
        let Some(vector) = self.isr.highest() else {
            return LapicEffect::None;
        };
        self.isr.clear(vector);
        LapicEffect::Eoi {
            vector,
            level_triggered: self.tmr.contains(vector),
        }
    }

    /// The x2APIC logical ID (SDM §11.12.10.2): cluster `id >> 4` in bits 16–31, bit
    /// `id & 15` below.
    fn x2apic_ldr(&self) -> u32 {
        ((self.initial_id >> 4) << 16) | (1 << (self.initial_id & 15))
    }

    /// Whether an interrupt addressed to `destination` in physical or logical mode reaches
    /// this APIC (SDM §11.6.2). In xAPIC mode only the low 8 bits of `destination` count.
    /// Physical: the ID, or the broadcast ID (0xFF in xAPIC, 0xFFFFFFFF in x2APIC). Logical
    /// xAPIC: 0xFF reaches everyone; flat model (DFR 0xF) when the destination and LDR masks share
    /// a bit; cluster model (DFR 0x0; other DFR values are taken as flat) when the high
    /// nibbles are equal and the low nibbles share a bit. Logical x2APIC: bits 16–31 name the
    /// cluster, 0–15 the members. A globally disabled APIC matches nothing.
    pub fn matches_destination(&self, destination: u32, logical: bool) -> bool {
        match self.mode {
            ApicMode::Disabled => false,
            ApicMode::X2Apic if destination == u32::MAX => true,
            ApicMode::X2Apic if !logical => destination == self.initial_id,
            ApicMode::X2Apic => {
                let ldr = self.x2apic_ldr();
                destination >> 16 == ldr >> 16 && destination & ldr & 0xFFFF != 0
            }
            ApicMode::XApic => {
                let destination = destination & 0xFF;
                if destination == 0xFF {
                    return true;
                }
                if !logical {
                    return destination == u32::from(self.xapic_id);
                }
                let logical_id = self.ldr >> 24;
                if self.dfr & DFR_MODEL == 0 {
                    destination >> 4 == logical_id >> 4 && destination & logical_id & 0xF != 0
                } else {
                    destination & logical_id != 0
                }
            }
        }
    }

    /// Brings the timer up to guest TSC `now`, requesting its interrupt if it expired (once,
    /// however many periods passed; a masked timer counts but requests nothing).
    pub fn advance(&mut self, now: u64) {
        if self.timer.advance(now) {
            let entry = self.lvt[Lvt::Timer as usize];
            if entry & LVT_MASKED == 0 {
                self.accept(entry as u8, false);
            }
        }
    }

    /// Guest TSC of the next timer expiry, for the host timer; also when the LVT timer is
    /// masked. Valid after the last [`Self::advance`] or register access.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timer.next_deadline()
    }

    /// IA32_TSC_DEADLINE (MSR 0x6E0): the armed deadline, 0 when disarmed, fired, or the
    /// timer is not in TSC-deadline mode. Current as of the last [`Self::advance`].
    pub fn tsc_deadline(&self) -> u64 {
        self.timer.deadline()
    }

    /// WRMSR to IA32_TSC_DEADLINE at guest TSC `now`: arms the timer (0 disarms); ignored
    /// unless the LVT timer is in TSC-deadline mode. A deadline already past fires at once.
    pub fn set_tsc_deadline(&mut self, value: u64, now: u64) {
        self.advance(now);
        self.timer.set_deadline(value);
        self.advance(now);
    }

    /// A write to an LVT entry: only its defined bits, and masked while software-disabled
    /// (SDM §11.4.7.2). A new timer mode applies from `now` (see `ApicTimer::set_mode`).
    fn write_lvt(&mut self, entry: Lvt, value: u32, now: u64) {
        let mut value = value & entry.writable();
        if !self.software_enabled() {
            value |= LVT_MASKED;
        }
        if entry == Lvt::Timer {
            self.timer.set_mode(TimerMode::of_lvt(value), now);
        }
        self.lvt[entry as usize] = value;
    }

    /// A write to the SVR; clearing the enable bit masks every LVT entry.
    fn write_svr(&mut self, value: u32) {
        self.svr = value & SVR_MASK;
        if !self.software_enabled() {
            for entry in &mut self.lvt {
                *entry |= LVT_MASKED;
            }
        }
    }

    /// A write to the ESR: the errors seen so far become readable and the count restarts.
    fn latch_errors(&mut self) {
        self.esr = self.esr_pending;
        self.esr_pending = 0;
    }

    /// Sends an IPI the guest wrote to the ICR; a fixed or lowest-priority one with a vector
    /// below 16 is not sent and sets ESR "send illegal vector".
    fn send(&mut self, ipi: Ipi) -> LapicEffect {
        if icr::needs_legal_vector(&ipi) && ipi.vector < 16 {
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
            return LapicEffect::None;
        }
        LapicEffect::Ipi(ipi)
    }
}

/// The xAPIC MMIO page as a bus device. Its effects are the accessing vCPU's: an IPI from
/// it, or the end of a level-triggered interrupt it took.
impl crate::devices::device::Device for LocalApic {
    fn read(&mut self, at: crate::devices::device::Register, now: u64) -> u64 {
        self.mmio_read(at.offset, at.size, now)
    }

    fn write(
        &mut self,
        at: crate::devices::device::Register,
        value: u64,
        now: u64,
    ) -> crate::devices::device::Effect {
        self.mmio_write(at.offset, at.size, value, now).into()
    }
}

impl From<LapicEffect> for crate::devices::device::Effect {
    /// The end of an edge-triggered interrupt concerns no one beyond the local APIC.
    fn from(effect: LapicEffect) -> Self {
        match effect {
            LapicEffect::None => crate::devices::device::Effect::None,
            LapicEffect::Eoi {
                vector,
                level_triggered: true,
            } => crate::devices::device::Effect::EndOfInterrupt(vector),
            LapicEffect::Eoi { .. } => crate::devices::device::Effect::None,
            LapicEffect::Ipi(ipi) => crate::devices::device::Effect::Ipi(ipi),
        }
    }
}
