//! A function's interrupt messages: the routes the guest's MSI capability and MSI-X table
//! ask for, and the hypervisor's programming of the physical ones.
//!
//! A route is reported whenever what the guest would receive changes (enable, mask,
//! function mask, address or data), not on every write. An entry's route is live only
//! while MSI-X is enabled, the function is not masked and the entry is not masked (PCI 3.0
//! §6.8.2.9): the hypervisor masks the physical entry for any other state, so a masked
//! vector's interrupt stays pending in the device's PBA, as the guest expects.

use alloc::vec::Vec;

use super::error::ProgramError;
use super::function::{with_memory_decoding, PassthroughFunction};
use super::message::{GuestMsi, HostMessage, InterruptSource, MessageRoute};
use super::msix_table::MsixEntry;

impl PassthroughFunction {
    /// The route of MSI-X entry `entry` now.
    pub(super) fn msix_route(&self, entry: u16) -> MessageRoute {
        let live = self.msix.is_some_and(|msix| msix.live());
        let target = self
            .table
            .as_ref()
            .and_then(|table| table.entry(entry))
            .filter(|e| live && !e.masked)
            .and_then(|e| GuestMsi::decode(e.message).ok());
        MessageRoute {
            source: InterruptSource::MsixEntry(entry),
            target,
        }
    }

    /// MSI-X entry `entry` as the guest wrote it (message and mask bit).
    pub fn msix_entry(&self, entry: u16) -> Option<MsixEntry> {
        self.table.as_ref()?.entry(entry)
    }

    /// The route of the MSI capability now.
    fn msi_route(&self) -> MessageRoute {
        MessageRoute {
            source: InterruptSource::Msi,
            target: self.msi.and_then(|msi| msi.target()),
        }
    }

    /// Every route of the function now: MSI (if it has the capability), then each MSI-X
    /// entry.
    pub fn routes(&self) -> Vec<MessageRoute> {
        let entries = self.table.as_ref().map_or(0, |t| t.entries());
        self.msi
            .map(|_| self.msi_route())
            .into_iter()
            .chain((0..entries).map(|entry| self.msix_route(entry)))
            .collect()
    }

    /// A guest write to dword `relative` of the MSI capability: the route, if it changed.
    pub(super) fn write_msi(&mut self, relative: u16, value: u32) -> Vec<MessageRoute> {
        let before = self.msi_route();
        if let Some(msi) = &mut self.msi {
            msi.write(relative, value);
        }
        let after = self.msi_route();
        if after != before {
            Vec::from([after])
        } else {
            Vec::new()
        }
    }

    /// A guest write to dword `relative` of the MSI-X capability: the routes of the entries
    /// whose state changed with Enable or Function Mask.
    pub(super) fn write_msix_control(&mut self, relative: u16, value: u32) -> Vec<MessageRoute> {
        let entries = self.table.as_ref().map_or(0, |t| t.entries());
        let before: Vec<MessageRoute> = (0..entries).map(|e| self.msix_route(e)).collect();
        let changed = match &mut self.msix {
            Some(msix) => msix.write(self.config.as_mut(), relative, value),
            None => false,
        };
        if !changed {
            return Vec::new();
        }
        (0..entries)
            .map(|e| self.msix_route(e))
            .zip(before)
            .filter(|(after, before)| after != before)
            .map(|(after, _)| after)
            .collect()
    }

    /// Programs the device's MSI with the host message `host` and enables it, or disables
    /// it for `None`: what the hypervisor does on an [`InterruptSource::Msi`] route.
    pub fn program_msi(&mut self, host: Option<HostMessage>) -> Result<(), ProgramError> {
        let msi = self.msi.ok_or(ProgramError::NoCapability)?;
        msi.program(self.config.as_mut(), host)
    }

    /// Programs the device's MSI-X entry `entry` with the host message `host` and unmasks
    /// it, or masks it for `None`: what the hypervisor does on an
    /// [`InterruptSource::MsixEntry`] route. Memory decoding is turned on for the writes if
    /// the guest has it off.
    pub fn program_msix(
        &mut self,
        entry: u16,
        host: Option<HostMessage>,
    ) -> Result<(), ProgramError> {
        let table = self.table.as_mut().ok_or(ProgramError::NoCapability)?;
        if entry >= table.entries() {
            return Err(ProgramError::NoSuchEntry(entry));
        }
        with_memory_decoding(self.config.as_mut(), |_| table.program(entry, host));
        Ok(())
    }
}
