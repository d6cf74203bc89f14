//! The capability list a guest sees (PCI Local Bus 3.0 §6.7): the physical list walked once
//! at creation, keeping only what the guest's driver needs and the model can present safely
//! (MSI, MSI-X, PCI Express, Power Management, and vendor-specific capabilities read-only:
//! virtio's modern transport finds its register blocks through them), relinked so the
//! others are skipped.
//!
//! The walk distrusts the device: at most 48 steps (as many as fit in the 192 bytes above
//! the header), pointers below 0x40 end the list, the two low bits are masked (§6.7: they are
//! reserved and software must mask them), a pointer seen before ends it (a loop), and a
//! capability whose structure would run past 0x100 or overlap one already kept is hidden.

use alloc::vec::Vec;

use super::physical::FunctionConfig;
use crate::pci::register::{CAPABILITIES_POINTER, COMMAND_STATUS, STATUS_CAPABILITIES};

/// Capability IDs (PCI Code and ID Assignment Specification §2).
const POWER_MANAGEMENT: u8 = 0x01;
const MSI: u8 = 0x05;
const EXPRESS: u8 = 0x10;
const MSIX: u8 = 0x11;
const VENDOR_SPECIFIC: u8 = 0x09;
/// Steps of the walk (see the module note).
const MAX_STEPS: usize = 48;
/// Where the list may start, and where it must end.
const FIRST: u8 = 0x40;
const END: u16 = 0x100;

/// A capability the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityKind {
    /// PCI Power Management (PCI PM 1.2 §3.2): read-through, writes dropped.
    PowerManagement,
    /// MSI (PCI 3.0 §6.8.1): virtual.
    Msi,
    /// PCI Express (PCIe Base 6.0 §7.5.3): read-through, writes dropped.
    Express,
    /// MSI-X (PCI 3.0 §6.8.2): control virtual and forwarded, locations read-through.
    Msix,
    /// Vendor-specific (PCI 3.0 §6.7, ID 09h; its length in byte 2): read-through, writes
    /// dropped (so virtio's configuration-access window, `VIRTIO_PCI_CAP_PCI_CFG`, reads
    /// but does not write; drivers use the BARs).
    VendorSpecific,
}

/// One kept capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Its offset (the same in the guest's space as in the host's).
    pub offset: u8,
    pub kind: CapabilityKind,
    /// Bytes of its structure.
    pub length: u8,
}

impl Capability {
    /// Whether configuration offset `at` falls inside the structure.
    pub fn holds(&self, at: u16) -> bool {
        let start = u16::from(self.offset);
        (start..start + u16::from(self.length)).contains(&at)
    }
}

/// The kept capabilities, in the physical list's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapabilityList {
    kept: Vec<Capability>,
}

impl CapabilityList {
    /// Walks the physical list of `config`.
    pub fn walk(config: &mut dyn FunctionConfig) -> CapabilityList {
        let mut list = CapabilityList::default();
        if config.read32(COMMAND_STATUS) & STATUS_CAPABILITIES == 0 {
            return list;
        }
        let mut at = (config.read32(CAPABILITIES_POINTER) & 0xFC) as u8;
        // One bit per dword of 0x40..0x100.
        let mut seen = 0u64;
        for _ in 0..MAX_STEPS {
            if at < FIRST {
                break;
            }
            let bit = 1u64 << ((at - FIRST) / 4);
            if seen & bit != 0 {
                break;
            }
            seen |= bit;
            let head = config.read32(u16::from(at));
            if let Some(capability) = Self::recognise(at, head) {
                if list.fits(&capability) {
                    list.kept.push(capability);
                }
            }
            at = (head >> 8) as u8 & 0xFC;
        }
        list
    }

    /// The capability at `at` whose first dword is `head`, if it is one the guest sees.
    fn recognise(at: u8, head: u32) -> Option<Capability> {
        let control = (head >> 16) as u16;
        let (kind, length) = match head as u8 {
            POWER_MANAGEMENT => (CapabilityKind::PowerManagement, 8),
            // Message control bit 7: 64-bit address; bit 8: per-vector masking (§6.8.1.3).
            MSI => (
                CapabilityKind::Msi,
                match (control & 1 << 7 != 0, control & 1 << 8 != 0) {
                    (false, false) => 0x0C,
                    (true, false) => 0x10,
                    (false, true) => 0x14,
                    (true, true) => 0x18,
                },
            ),
            // Capability version (bits 3:0 of the PCIe capabilities register): version 1
            // ends after the link registers, version 2 after Slot/Link Control 2 (§7.5.3).
            EXPRESS => (
                CapabilityKind::Express,
                if control & 0xF >= 2 { 0x3C } else { 0x24 },
            ),
            MSIX => (CapabilityKind::Msix, 0x0C),
            // At least the three header bytes.
            VENDOR_SPECIFIC => (CapabilityKind::VendorSpecific, (head >> 16) as u8),
            _ => return None,
        };
        Some(Capability {
            offset: at,
            kind,
            length,
        })
    }

    /// Whether `candidate` may join: at least its 3-byte header long, the first of its kind
    /// (vendor-specific ones excepted: a device may have several), inside the header's 256
    /// bytes and clear of every capability kept.
    fn fits(&self, candidate: &Capability) -> bool {
        let start = u16::from(candidate.offset);
        let end = start + u16::from(candidate.length);
        let many = candidate.kind == CapabilityKind::VendorSpecific;
        candidate.length >= 3
            && end <= END
            && self.kept.iter().all(|kept| {
                let kept_start = u16::from(kept.offset);
                let kept_end = kept_start + u16::from(kept.length);
                (many || kept.kind != candidate.kind) && (end <= kept_start || kept_end <= start)
            })
    }

    /// The kept capabilities.
    pub fn kept(&self) -> &[Capability] {
        &self.kept
    }

    /// The first kept capability of `kind`.
    pub fn find(&self, kind: CapabilityKind) -> Option<Capability> {
        self.kept.iter().copied().find(|c| c.kind == kind)
    }

    /// The capabilities pointer the guest reads: the first kept, or 0.
    pub fn first(&self) -> u8 {
        self.kept.first().map_or(0, |c| c.offset)
    }

    /// The kept capability holding configuration offset `at`, and the next pointer the
    /// guest reads in its header.
    pub fn holding(&self, at: u16) -> Option<(Capability, u8)> {
        let index = self.kept.iter().position(|c| c.holds(at))?;
        let next = self.kept.get(index + 1).map_or(0, |c| c.offset);
        Some((self.kept[index], next))
    }
}
