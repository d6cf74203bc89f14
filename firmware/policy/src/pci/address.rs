//! A function's address: segment, bus, device and function, written as Linux and the layout
//! write it (`0000:03:00.0`; the segment is optional on input).

use core::fmt;
use core::str::FromStr;

/// `segment:bus:device.function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub segment: u16,
    pub bus: u8,
    /// 0..=31.
    pub device: u8,
    /// 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// The address, if `device` and `function` are in range.
    pub fn new(segment: u16, bus: u8, device: u8, function: u8) -> Option<PciAddress> {
        (device < 32 && function < 8).then_some(PciAddress {
            segment,
            bus,
            device,
            function,
        })
    }

    /// The 16-bit requester ID (bus, device, function) DMA from this function carries.
    pub fn requester_id(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// Why a written address was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciAddressError {
    /// Not `[segment:]bus:device.function` in hexadecimal.
    Syntax,
    /// A device above 0x1f or a function above 7.
    OutOfRange,
}

impl fmt::Display for PciAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PciAddressError::Syntax => {
                "not a PCI address: write [segment:]bus:device.function in hexadecimal, e.g. 0000:03:00.0"
            }
            PciAddressError::OutOfRange => "a PCI device is 00..1f and a function 0..7",
        })
    }
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    fn from_str(text: &str) -> Result<PciAddress, PciAddressError> {
        let (location, function) = text.rsplit_once('.').ok_or(PciAddressError::Syntax)?;
        let mut parts = location.rsplit(':');
        let device = parts.next().ok_or(PciAddressError::Syntax)?;
        let bus = parts.next().ok_or(PciAddressError::Syntax)?;
        let segment = parts.next();
        if parts.next().is_some() {
            return Err(PciAddressError::Syntax);
        }
        let field = |s: &str, max_digits: usize| -> Result<u32, PciAddressError> {
            if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PciAddressError::Syntax);
            }
            u32::from_str_radix(s, 16).map_err(|_| PciAddressError::Syntax)
        };
        let segment = segment.map_or(Ok(0), |s| field(s, 4))?;
        let bus = field(bus, 2)?;
        let device = field(device, 2)?;
        let function = field(function, 1)?;
        let narrow = |v: u32| u8::try_from(v).map_err(|_| PciAddressError::OutOfRange);
        PciAddress::new(
            segment as u16,
            narrow(bus)?,
            narrow(device)?,
            narrow(function)?,
        )
        .ok_or(PciAddressError::OutOfRange)
    }
}
