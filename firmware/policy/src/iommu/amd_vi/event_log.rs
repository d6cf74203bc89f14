//! Draining an AMD-Vi unit's event log (AMD IOMMU spec 48882 §2.5 "Event Logging", §3.4
//! Event Log Head/Tail, Status EventOverflow).
//!
//! The IOMMU writes 16-byte entries at the tail and moves Event Log Tail; software reads from
//! Event Log Head up to the tail and then moves the head, which frees the entries. When the
//! log is full the IOMMU drops the event, sets EventOverflow and stops logging (EventLogRun
//! clears). Restarting, as the spec and Linux do it: EventLogEn off, wait for EventLogRun to
//! clear, write 1 to EventOverflow, EventLogEn on, wait for EventLogRun.

use super::registers::control::EVENT_LOG_EN;
use super::registers::{status, CONTROL, EVENT_HEAD, EVENT_TAIL, POINTER_MASK, STATUS};
use super::unit::{ENTRY_BYTES, RING_ENTRIES};
use super::{decode_event, AmdViError, AmdViMemory, AmdViUnit};
use crate::iommu::{FaultLog, RegisterAccess};

/// A head or tail register as an entry index in the ring (a bad value is folded into it).
fn entry_index(register: u64) -> u64 {
    (register & POINTER_MASK) / ENTRY_BYTES % RING_ENTRIES
}

impl<R: RegisterAccess> AmdViUnit<R> {
    /// Takes every entry between Event Log Head and Tail, oldest first: IO_PAGE_FAULT and
    /// ILLEGAL_DEV_TABLE_ENTRY become faults, any other entry (command and hardware errors,
    /// unknown codes) is counted in `other_events`. Moves the head past them. The tail is
    /// read once, so a unit that keeps logging cannot keep this loop going (at most one
    /// ring's worth per call). If Status says EventOverflow, reports it and restarts the log.
    ///
    /// Under QEMU 7.2 the log stays empty (see the module notes).
    pub fn take_faults(&mut self, memory: &impl AmdViMemory) -> Result<FaultLog, AmdViError> {
        let running = self.running.ok_or(AmdViError::NotStarted)?;
        let overflowed = self.regs.read64(STATUS) & status::EVENT_OVERFLOW != 0;
        let mut log = FaultLog {
            overflowed,
            ..FaultLog::default()
        };
        let mut head = entry_index(self.regs.read64(EVENT_HEAD));
        let tail = entry_index(self.regs.read64(EVENT_TAIL));
        while head != tail {
            // head < 256: inside the event log's page.
            let address = running.layout.event_log + head * ENTRY_BYTES;
            let entry = [memory.read_qword(address), memory.read_qword(address + 8)];
            match decode_event(entry) {
                Some(fault) => log.faults.push(fault),
                None => log.other_events = log.other_events.saturating_add(1),
            }
            head = (head + 1) % RING_ENTRIES;
        }
        self.regs.write64(EVENT_HEAD, head * ENTRY_BYTES);
        if overflowed {
            self.restart_event_log(running.control)?;
        }
        Ok(log)
    }

    /// Restarts logging after an overflow (the log has just been drained).
    fn restart_event_log(&mut self, control: u64) -> Result<(), AmdViError> {
        self.regs.write64(CONTROL, control & !EVENT_LOG_EN);
        self.wait_status(status::EVENT_LOG_RUN, false, "EventLogRun")?;
        self.regs.write64(STATUS, status::EVENT_OVERFLOW);
        self.regs.write64(CONTROL, control);
        self.wait_status(status::EVENT_LOG_RUN, true, "EventLogRun")
    }
}
