//! The driver of one VT-d remapping unit: its capabilities, the global command protocol, the
//! root table and translation on/off (Intel VT-d spec 4.1 §10.4.4–§10.4.6).
//!
//! # GCMD
//!
//! GCMD is a register of commands, not of state: every write is a full command, and a bit
//! written 0 turns that feature off. So each write starts from GSTS (the enabled features:
//! TE, QIE, IRE, CFI, ...) with the one-shot status bits removed, and changes one bit — as
//! §10.4.4 prescribes. A write that started from 0 would turn translation off while
//! setting the root table.
//!
//! # Polls
//!
//! Every wait on the unit reads its register at most `spin_limit` times (default
//! [`DEFAULT_SPIN_LIMIT`]) and then fails with [`VtdError::Timeout`] naming the register and
//! bit.

use super::invalidation::Queue;
use super::registers::{global, Capabilities, RegisterAccess, CAP, ECAP, GCMD, GSTS, RTADDR, VER};
use super::VtdError;
use crate::memory::PAGE_SIZE;
use crate::slat::ADDRESS_MASK;

/// Polls before a wait gives up: about a second of uncached MMIO reads, far past the few
/// microseconds a unit takes.
pub const DEFAULT_SPIN_LIMIT: u32 = 1_000_000;

/// One VT-d remapping unit (a DRHD), driven through its registers.
#[derive(Debug)]
pub struct VtdUnit<R: RegisterAccess> {
    pub(super) regs: R,
    pub(super) caps: Capabilities,
    pub(super) spin_limit: u32,
    /// The invalidation queue, once enabled.
    pub(super) queue: Option<Queue>,
}

/// The name of a GCMD/GSTS bit, for timeouts.
fn status_name(bit: u32) -> &'static str {
    match bit {
        global::TE => "TES",
        global::SRTP => "RTPS",
        global::WBF => "WBFS",
        global::QIE => "QIES",
        global::IRE => "IRES",
        global::SIRTP => "IRTPS",
        global::CFI => "CFIS",
        _ => "status",
    }
}

impl<R: RegisterAccess> VtdUnit<R> {
    /// Reads VER, CAP and ECAP; refuses a unit that cannot walk 4-level second-level tables.
    /// Changes nothing on the unit.
    pub fn new(mut regs: R) -> Result<Self, VtdError> {
        let version = regs.read32(VER);
        let cap = regs.read64(CAP);
        let ecap = regs.read64(ECAP);
        let caps = Capabilities::new(version, cap, ecap);
        if !caps.supports_four_level() {
            return Err(VtdError::NoFourLevelTables {
                sagaw: caps.sagaw(),
            });
        }
        Ok(VtdUnit {
            regs,
            caps,
            spin_limit: DEFAULT_SPIN_LIMIT,
            queue: None,
        })
    }

    /// The same unit with waits bounded at `polls` reads.
    pub fn with_spin_limit(mut self, polls: u32) -> Self {
        self.spin_limit = polls.max(1);
        self
    }

    /// What the unit can do.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The register access, for the firmware's own diagnostics.
    pub fn registers(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Hands the register access back.
    pub fn into_registers(self) -> R {
        self.regs
    }

    /// Points the unit at `root_table` (a 4 KiB-aligned root table in legacy format,
    /// [`ContextTables::root_address`](super::ContextTables::root_address)): RTADDR, then
    /// GCMD.SRTP, waiting for GSTS.RTPS. The unit then uses it for every request; invalidate
    /// the context cache and IOTLB globally afterwards
    /// ([`invalidate_all`](Self::invalidate_all)).
    pub fn set_root_table(&mut self, root_table: u64) -> Result<(), VtdError> {
        if !root_table.is_multiple_of(PAGE_SIZE) || root_table & !ADDRESS_MASK != 0 {
            return Err(VtdError::BadAddress {
                what: "root table",
                address: root_table,
            });
        }
        // RTADDR bits 11:10 (TTM) = 00: legacy-mode root and context entries.
        self.regs.write64(RTADDR, root_table);
        self.command(global::SRTP, true, global::SRTP)
    }

    /// Turns DMA remapping on (GCMD.TE, waiting for GSTS.TES). Program the root table first.
    pub fn enable_translation(&mut self) -> Result<(), VtdError> {
        self.command(global::TE, true, global::TE)
    }

    /// Turns DMA remapping off (devices then reach all memory untranslated).
    pub fn disable_translation(&mut self) -> Result<(), VtdError> {
        self.command(global::TE, false, global::TE)
    }

    /// Whether translation is on, as GSTS says.
    pub fn translation_enabled(&mut self) -> bool {
        self.regs.read32(GSTS) & global::TE != 0
    }

    /// Issues a GCMD write that sets (`on`) or clears `bit` and keeps every other enabled
    /// feature as it is, then waits for `status` in GSTS to follow: set when `on`, clear when
    /// not. One-shot commands (SRTP, SIRTP) report completion by setting their status bit.
    pub(super) fn command(&mut self, bit: u32, on: bool, status: u32) -> Result<(), VtdError> {
        self.write_command(bit, on);
        self.wait_status(status, on)
    }

    /// The GCMD write of [`command`](Self::command), without the wait.
    pub(super) fn write_command(&mut self, bit: u32, on: bool) {
        let current = self.regs.read32(GSTS) & !global::ONE_SHOT;
        let command = if on { current | bit } else { current & !bit };
        self.regs.write32(GCMD, command);
    }

    /// Waits until GSTS's `status` bit is `expected`.
    pub(super) fn wait_status(&mut self, status: u32, expected: bool) -> Result<(), VtdError> {
        for _ in 0..self.spin_limit {
            if (self.regs.read32(GSTS) & status != 0) == expected {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout {
            register: "GSTS",
            bit: status_name(status),
            expected,
            polls: self.spin_limit,
        })
    }

    /// Waits until the 64-bit register at `offset` has `bit` clear; its last value.
    pub(super) fn wait_clear64(
        &mut self,
        offset: u32,
        bit: u64,
        register: &'static str,
        bit_name: &'static str,
    ) -> Result<u64, VtdError> {
        for _ in 0..self.spin_limit {
            let value = self.regs.read64(offset);
            if value & bit == 0 {
                return Ok(value);
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout {
            register,
            bit: bit_name,
            expected: false,
            polls: self.spin_limit,
        })
    }
}
