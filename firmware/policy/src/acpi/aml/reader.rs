//! Bounds-checked decoding of AML's framing (ACPI 6.5 §20.2): PkgLength (§20.2.4), NameString
//! (§20.2.2), and stepping over the data objects and the few TermArgs (§20.2.3, §20.2.5) that
//! declarations use as operands.
//!
//! Every read goes through [`Reader::byte`], which stops at the `end` the caller passes (the end
//! of the enclosing object), so nothing here reads past what its container claims. Every
//! function that nests (packages, arithmetic operands) carries a depth and stops at
//! [`MAX_DEPTH`]; every loop consumes at least one byte per turn and counts a step.

use alloc::vec::Vec;

use super::{Unreadable, MAX_DEPTH};

/// A NameSeg (§20.2.2): four characters from `A-Z`, `0-9`, `_`, the first not a digit.
pub(super) type Seg = [u8; 4];

/// `\` (RootChar).
const ROOT_CHAR: u8 = 0x5C;
/// `^` (ParentPrefixChar).
const PARENT_PREFIX: u8 = 0x5E;
const DUAL_NAME_PREFIX: u8 = 0x2E;
const MULTI_NAME_PREFIX: u8 = 0x2F;
const NULL_NAME: u8 = 0x00;
/// ExtOpPrefix (§20.2.3): the next byte completes a two-byte opcode.
pub(super) const EXT_PREFIX: u8 = 0x5B;

/// Where reading stopped and why; the caller decides what is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stop {
    pub at: usize,
    pub why: StopKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopKind {
    /// Bytes we could not step over.
    Unreadable(Unreadable),
    /// Nesting beyond [`MAX_DEPTH`].
    TooDeep,
}

pub(super) type Read<T> = Result<T, Stop>;

fn stop<T>(at: usize, why: Unreadable) -> Read<T> {
    Err(Stop {
        at,
        why: StopKind::Unreadable(why),
    })
}

/// A NameString as written (§20.2.2), before it is resolved against a scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NameString {
    /// Starts with `\`.
    pub root: bool,
    /// How many `^` precede the path.
    pub parents: usize,
    pub segs: Vec<Seg>,
}

impl NameString {
    /// The absolute path this names when it appears in `scope` (§5.3: relative names are
    /// relative to the current scope; each `^` goes up one level). `None` when the `^`s climb
    /// past the root or the path would exceed `max_segs`.
    pub fn resolve(&self, scope: &[Seg], max_segs: usize) -> Option<Vec<Seg>> {
        let base: &[Seg] = if self.root {
            &[]
        } else {
            scope.get(..scope.len().checked_sub(self.parents)?)?
        };
        if base.len().checked_add(self.segs.len())? > max_segs {
            return None;
        }
        let mut path = Vec::with_capacity(base.len() + self.segs.len());
        path.extend_from_slice(base);
        path.extend_from_slice(&self.segs);
        Some(path)
    }

    /// A single NameSeg with no prefix: the only form the parent search rule applies to (§5.3).
    pub fn is_single_seg(&self) -> bool {
        !self.root && self.parents == 0 && self.segs.len() == 1
    }
}

/// A data object's value, as far as a static reader can know it (§20.2.3 DataRefObject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Data<'a> {
    Integer(u64),
    /// A String's bytes, without the terminating NUL.
    String(&'a [u8]),
    /// A Buffer's initializer bytes (its declared size, a TermArg, is not evaluated).
    Buffer(&'a [u8]),
    Package(Vec<Data<'a>>),
    /// A Method whose body is more than `Return (constant)`: we do not evaluate it.
    Computed,
    /// Anything else (an object reference, Revision, a package we could not read).
    Other,
}

/// Reads over one table's AML bytes, counting the work done.
pub(super) struct Reader<'a> {
    pub aml: &'a [u8],
    /// Loop turns and nested calls so far: the bound the tests hold linear in the input.
    pub steps: usize,
    /// Faults inside packages, which their PkgLength let us step over (with where reading
    /// resumed): the walker reports them.
    pub inner: Vec<(Stop, usize)>,
}

impl<'a> Reader<'a> {
    pub fn new(aml: &'a [u8]) -> Reader<'a> {
        Reader {
            aml,
            steps: 0,
            inner: Vec::new(),
        }
    }

    /// The byte at `*at`, if it lies before `end`; advances.
    pub fn byte(&self, at: &mut usize, end: usize) -> Read<u8> {
        let b = if *at < end { self.aml.get(*at) } else { None };
        match b {
            Some(&b) => {
                *at += 1;
                Ok(b)
            }
            None => stop(*at, Unreadable::Truncated),
        }
    }

    /// The byte at `at` without consuming it.
    pub fn peek(&self, at: usize, end: usize) -> Read<u8> {
        self.byte(&mut { at }, end)
    }

    /// `n` bytes from `*at`, all before `end`; advances.
    pub fn bytes(&self, at: &mut usize, n: usize, end: usize) -> Read<&'a [u8]> {
        let start = *at;
        match start.checked_add(n) {
            Some(stop_at) if stop_at <= end && stop_at <= self.aml.len() => {
                *at = stop_at;
                Ok(&self.aml[start..stop_at])
            }
            _ => stop(start, Unreadable::Truncated),
        }
    }

    /// A little-endian unsigned integer of `n` ≤ 8 bytes.
    fn uint(&self, at: &mut usize, n: usize, end: usize) -> Read<u64> {
        let b = self.bytes(at, n, end)?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    }

    /// An opcode: one byte, or `0x5B` and one more (returned as `0x5Bxx`).
    pub fn opcode(&self, at: &mut usize, end: usize) -> Read<u16> {
        let first = self.byte(at, end)?;
        if first == EXT_PREFIX {
            Ok(u16::from_be_bytes([first, self.byte(at, end)?]))
        } else {
            Ok(u16::from(first))
        }
    }

    /// A PkgLength (§20.2.4) starting at `*at`: returns where the package ends, which must not
    /// lie past `end`. The length counts its own encoding bytes.
    ///
    /// The lead byte's bits 7–6 give how many bytes follow (0–3). With none, bits 5–0 are the
    /// length; otherwise bits 3–0 are its low nibble and each following byte the next eight
    /// bits. Bits 5–4 of a multi-byte lead are reserved; like ACPICA
    /// (`AcpiPsGetNextPackageLength`) we ignore them rather than reject the table.
    pub fn pkg_length(&self, at: &mut usize, end: usize) -> Read<usize> {
        let start = *at;
        let lead = self.byte(at, end)?;
        let follow = usize::from(lead >> 6);
        let mut length = if follow == 0 {
            u32::from(lead & 0x3F)
        } else {
            u32::from(lead & 0x0F)
        };
        for i in 0..follow {
            // At most 4 + 3 * 8 = 28 bits: no overflow.
            length |= u32::from(self.byte(at, end)?) << (4 + 8 * i);
        }
        let length = length as usize;
        if length < 1 + follow {
            return stop(start, Unreadable::BadPkgLength);
        }
        match start.checked_add(length) {
            Some(pkg_end) if pkg_end <= end => Ok(pkg_end),
            _ => stop(
                start,
                Unreadable::PkgLengthPastEnd {
                    end: start.saturating_add(length),
                    limit: end,
                },
            ),
        }
    }

    /// One NameSeg (§20.2.2): a lead character `A-Z` or `_`, then three of `A-Z`, `0-9`, `_`.
    fn name_seg(&self, at: &mut usize, end: usize) -> Read<Seg> {
        let start = *at;
        let b = self.bytes(at, 4, end)?;
        let seg: Seg = [b[0], b[1], b[2], b[3]];
        let lead_ok = is_lead_name_char(seg[0]);
        let rest_ok = seg[1..]
            .iter()
            .all(|&c| is_lead_name_char(c) || c.is_ascii_digit());
        if lead_ok && rest_ok {
            Ok(seg)
        } else {
            stop(start, Unreadable::BadNameSeg(seg))
        }
    }

    /// A NameString (§20.2.2): `\` or any number of `^`, then a NameSeg, a DualNamePath
    /// (`0x2E` + two segs), a MultiNamePath (`0x2F`, a count, that many segs) or NullName
    /// (`0x00`, no segs).
    pub fn name_string(&mut self, at: &mut usize, end: usize) -> Read<NameString> {
        let mut name = NameString::default();
        let mut first = self.byte(at, end)?;
        if first == ROOT_CHAR {
            name.root = true;
            first = self.byte(at, end)?;
        } else {
            while first == PARENT_PREFIX {
                self.steps += 1;
                name.parents += 1;
                first = self.byte(at, end)?;
            }
        }
        let count = match first {
            NULL_NAME => 0,
            DUAL_NAME_PREFIX => 2,
            MULTI_NAME_PREFIX => usize::from(self.byte(at, end)?),
            _ => {
                // A plain NameSeg: its lead character is the byte just read.
                *at -= 1;
                1
            }
        };
        for _ in 0..count {
            self.steps += 1;
            let seg = self.name_seg(at, end)?;
            name.segs.push(seg);
        }
        Ok(name)
    }

    /// A String (§20.2.3, after its `0x0D` prefix): ASCII up to a NUL.
    fn string(&self, at: &mut usize, end: usize) -> Read<&'a [u8]> {
        let start = *at;
        let limit = end.min(self.aml.len());
        let rest = self.aml.get(start..limit).unwrap_or(&[]);
        match rest.iter().position(|&b| b == 0) {
            Some(n) => {
                *at = start + n + 1;
                Ok(&rest[..n])
            }
            None => stop(start, Unreadable::Truncated),
        }
    }

    /// Counts one step of work at `at` and refuses nesting beyond [`MAX_DEPTH`].
    fn step(&mut self, at: usize, depth: usize) -> Read<()> {
        self.steps += 1;
        if depth > MAX_DEPTH {
            return Err(Stop {
                at,
                why: StopKind::TooDeep,
            });
        }
        Ok(())
    }

    /// Step over one TermArg (§20.2.5) of the kinds declarations use as operands: integer
    /// constants, Revision, String, Buffer, Package, VarPackage, a name (taken as an object or
    /// a method with no arguments), ArgN/LocalN, and Add, Subtract, Multiply, ShiftLeft,
    /// ShiftRight, And, Or with their Target. Anything else stops the read.
    pub fn skip_term_arg(&mut self, at: &mut usize, end: usize, depth: usize) -> Read<()> {
        self.step(*at, depth)?;
        let start = *at;
        let lead = self.peek(start, end)?;
        if is_name_start(lead) {
            self.name_string(at, end)?;
            return Ok(());
        }
        match self.opcode(at, end)? {
            // Local0–7, Arg0–6 (§20.2.6.1, §20.2.6.2).
            0x60..=0x6E => Ok(()),
            0x72 | 0x74 | 0x77 | 0x79 | 0x7A | 0x7B | 0x7D => {
                self.skip_term_arg(at, end, depth + 1)?;
                self.skip_term_arg(at, end, depth + 1)?;
                self.skip_target(at, end)
            }
            _ => {
                *at = start;
                self.data(at, end, depth).map(|_| ())
            }
        }
    }

    /// A Target (§20.2.5): NullName, a name, ArgN/LocalN, or the Debug object.
    fn skip_target(&mut self, at: &mut usize, end: usize) -> Read<()> {
        let start = *at;
        let lead = self.peek(start, end)?;
        if is_name_start(lead) || lead == NULL_NAME {
            self.name_string(at, end)?;
            return Ok(());
        }
        match self.opcode(at, end)? {
            0x60..=0x6E | 0x5B31 => Ok(()),
            op => stop(start, Unreadable::UnknownOpcode(op)),
        }
    }

    /// A DataRefObject (§20.2.3) as a value: integer constants, String, Buffer, Package and
    /// VarPackage are read; Revision and object references are [`Data::Other`]. Anything else
    /// stops the read.
    pub fn data(&mut self, at: &mut usize, end: usize, depth: usize) -> Read<Data<'a>> {
        self.step(*at, depth)?;
        let start = *at;
        if is_name_start(self.peek(start, end)?) {
            self.name_string(at, end)?;
            return Ok(Data::Other);
        }
        Ok(match self.opcode(at, end)? {
            0x00 => Data::Integer(0),
            0x01 => Data::Integer(1),
            // Ones: all bits set (32 of them in a revision-1 table; the callers never need
            // to tell the difference).
            0xFF => Data::Integer(u64::MAX),
            0x0A => Data::Integer(self.uint(at, 1, end)?),
            0x0B => Data::Integer(self.uint(at, 2, end)?),
            0x0C => Data::Integer(self.uint(at, 4, end)?),
            0x0E => Data::Integer(self.uint(at, 8, end)?),
            0x5B30 => Data::Other,
            0x0D => Data::String(self.string(at, end)?),
            0x11 => {
                // DefBuffer := 0x11 PkgLength BufferSize(TermArg) ByteList
                let pkg_end = self.pkg_length(at, end)?;
                self.skip_term_arg(at, pkg_end, depth + 1)?;
                let bytes = self.bytes(at, pkg_end.saturating_sub(*at), pkg_end)?;
                Data::Buffer(bytes)
            }
            op @ (0x12 | 0x13) => {
                // DefPackage := 0x12 PkgLength NumElements(byte) PackageElementList;
                // DefVarPackage := 0x13 PkgLength VarNumElements(TermArg) ...
                let pkg_end = self.pkg_length(at, end)?;
                if op == 0x12 {
                    self.byte(at, pkg_end)?;
                } else {
                    self.skip_term_arg(at, pkg_end, depth + 1)?;
                }
                let mut elements = Vec::new();
                while *at < pkg_end {
                    match self.data(at, pkg_end, depth + 1) {
                        Ok(d) => elements.push(d),
                        // The package's own length frames it: an element we cannot read
                        // makes the whole package unknown, not the scope around it.
                        Err(e) => {
                            self.inner.push((e, pkg_end));
                            *at = pkg_end;
                            return Ok(Data::Other);
                        }
                    }
                }
                Data::Package(elements)
            }
            op => return stop(start, Unreadable::UnknownOpcode(op)),
        })
    }
}

/// `A-Z` or `_`.
fn is_lead_name_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c == b'_'
}

/// Whether a byte can begin a NameString (other than NullName, which is also ZeroOp).
pub(super) fn is_name_start(c: u8) -> bool {
    is_lead_name_char(c)
        || c == ROOT_CHAR
        || c == PARENT_PREFIX
        || c == DUAL_NAME_PREFIX
        || c == MULTI_NAME_PREFIX
}
