//! The static walk over each definition block's TermList (ACPI 6.5 §20.2.5.1, §20.2.5.2):
//! Scopes and Devices are entered, Names and Methods of interest recorded against their
//! absolute path, every other declaration stepped over — and nothing executed.
//!
//! The walk keeps its open Scopes and Devices on an explicit stack (no recursion), at most
//! [`MAX_DEPTH`] deep. Each turn of its loop reads one object and moves forward, so it ends.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::reader::{is_name_start, Data, NameString, Read, Reader, Seg, Stop, StopKind};
use super::{AmlFault, AmlProblem, Unreadable, MAX_DEPTH, MAX_PATH_SEGS};

/// What the tables declare at one absolute path, merged across tables.
#[derive(Clone, Debug, Default)]
pub(super) struct Node<'a> {
    /// Declared by a Device (not only opened by a Scope).
    pub device: bool,
    pub hid: Option<Data<'a>>,
    pub cid: Option<Data<'a>>,
    pub uid: Option<Data<'a>>,
    pub seg: Option<Data<'a>>,
    pub bbn: Option<Data<'a>>,
    pub pxm: Option<Data<'a>>,
    pub crs: Option<Data<'a>>,
}

impl<'a> Node<'a> {
    /// Where the object named `name` goes, if it is one we keep.
    fn slot(&mut self, name: Seg) -> Option<&mut Option<Data<'a>>> {
        Some(match &name {
            b"_HID" => &mut self.hid,
            b"_CID" => &mut self.cid,
            b"_UID" => &mut self.uid,
            b"_SEG" => &mut self.seg,
            b"_BBN" => &mut self.bbn,
            b"_PXM" => &mut self.pxm,
            b"_CRS" => &mut self.crs,
            _ => return None,
        })
    }
}

/// Every path the tables opened or declared, in path order.
pub(super) type Namespace<'a> = BTreeMap<Vec<Seg>, Node<'a>>;

/// One open Scope or Device body.
struct Frame {
    path: Vec<Seg>,
    end: usize,
}

/// What reading one object at the current position yields.
enum Step {
    /// Continue at this offset.
    Next(usize),
    /// Enter a Scope or Device body `[body, end)` at `path`.
    Enter {
        path: Vec<Seg>,
        body: usize,
        end: usize,
    },
}

/// Walks the tables in order into one namespace.
pub(super) struct Walker<'a, 'p> {
    pub nodes: Namespace<'a>,
    pub problems: &'p mut Vec<AmlProblem>,
    /// Work done over all tables (see [`Reader::steps`]).
    pub steps: usize,
}

impl<'a, 'p> Walker<'a, 'p> {
    pub fn new(problems: &'p mut Vec<AmlProblem>) -> Walker<'a, 'p> {
        Walker {
            nodes: BTreeMap::new(),
            problems,
            steps: 0,
        }
    }

    fn problem(&mut self, table: usize, offset: usize, what: AmlFault) {
        self.problems.push(AmlProblem {
            table,
            offset,
            what,
        });
    }

    fn stop(&mut self, table: usize, stop: Stop, resume: usize) {
        let what = match stop.why {
            StopKind::Unreadable(why) => AmlFault::Unreadable { why, resume },
            StopKind::TooDeep => AmlFault::TooDeep { resume },
        };
        self.problem(table, stop.at, what);
    }

    /// Walk one definition block body (a table without its 36-byte header).
    pub fn table(&mut self, table: usize, aml: &'a [u8]) {
        let mut r = Reader::new(aml);
        let mut stack = vec![Frame {
            path: Vec::new(),
            end: aml.len(),
        }];
        let mut at = 0;
        loop {
            while stack.last().is_some_and(|f| at >= f.end) {
                stack.pop();
            }
            let Some(frame) = stack.last() else { break };
            r.steps += 1;
            let read = self.object(&mut r, table, at, frame.end, &frame.path);
            for (stop, resume) in core::mem::take(&mut r.inner) {
                self.stop(table, stop, resume);
            }
            match read {
                Ok(Step::Next(next)) => at = next.max(at + 1),
                Ok(Step::Enter { path, body, end }) => {
                    if stack.len() > MAX_DEPTH {
                        self.problem(table, at, AmlFault::TooDeep { resume: end });
                        at = end;
                    } else {
                        self.nodes.entry(path.clone()).or_default();
                        stack.push(Frame { path, end });
                        at = body;
                    }
                }
                Err((stop, resume)) => {
                    self.stop(table, stop, resume);
                    at = resume.max(at + 1);
                }
            }
        }
        self.steps = self.steps.saturating_add(r.steps);
    }

    /// Read the object at `at` inside a body ending at `end` whose path is `scope`. On error,
    /// also says where to resume: the object's own end when its PkgLength was read (that
    /// frames it, §20.2.4), else the end of the enclosing body — we never guess a length.
    fn object(
        &mut self,
        r: &mut Reader<'a>,
        table: usize,
        start: usize,
        end: usize,
        scope: &[Seg],
    ) -> Result<Step, (Stop, usize)> {
        let whole = |e: Stop| (e, end);
        let mut at = start;
        let lead = r.peek(at, end).map_err(whole)?;
        if is_name_start(lead) {
            // A bare name at object level is a method call (a Type 2 opcode, §20.2.5.4):
            // how many arguments it takes is unknown without the method, so stop here.
            let op = u16::from(lead);
            return Err(whole(unknown(start, op)));
        }
        let op = r.opcode(&mut at, end).map_err(whole)?;
        match op {
            // DefScope := 0x10 PkgLength NameString TermList (§20.2.5.1)
            // DefDevice := 0x5B 0x82 PkgLength NameString TermList (§20.2.5.2)
            0x10 | 0x5B82 => {
                let pkg_end = r.pkg_length(&mut at, end).map_err(whole)?;
                let own = |e: Stop| (e, pkg_end);
                let name = r.name_string(&mut at, pkg_end).map_err(own)?;
                let path = if op == 0x10 {
                    self.scope_path(&name, scope)
                } else {
                    name.resolve(scope, MAX_PATH_SEGS)
                };
                let Some(path) = path else {
                    self.problem(table, start, AmlFault::BadPath { resume: pkg_end });
                    return Ok(Step::Next(pkg_end));
                };
                if op == 0x5B82 {
                    self.nodes.entry(path.clone()).or_default().device = true;
                }
                Ok(Step::Enter {
                    path,
                    body: at,
                    end: pkg_end,
                })
            }
            // DefName := 0x08 NameString DataRefObject (§20.2.5.1)
            0x08 => {
                let name = r.name_string(&mut at, end).map_err(whole)?;
                let value = r.data(&mut at, end, 0).map_err(whole)?;
                self.record(table, start, &name, scope, value, at);
                Ok(Step::Next(at))
            }
            // DefMethod := 0x14 PkgLength NameString MethodFlags TermList (§20.2.5.2)
            0x14 => {
                let pkg_end = r.pkg_length(&mut at, end).map_err(whole)?;
                let own = |e: Stop| (e, pkg_end);
                let name = r.name_string(&mut at, pkg_end).map_err(own)?;
                r.byte(&mut at, pkg_end).map_err(own)?;
                let value = constant_return(r, at, pkg_end);
                self.record(table, start, &name, scope, value, pkg_end);
                Ok(Step::Next(pkg_end))
            }
            // Framed by a PkgLength, nothing we look inside: Field 5B81, Processor 5B83,
            // PowerRes 5B84, ThermalZone 5B85, IndexField 5B86, BankField 5B87 (§20.2.5.2),
            // and If A0, Else A1, While A2 at object level (§20.2.5.3): what a conditional
            // declares depends on evaluating its predicate, which we do not.
            0x5B81 | 0x5B83 | 0x5B84 | 0x5B85 | 0x5B86 | 0x5B87 | 0xA0 | 0xA1 | 0xA2 => {
                { r.pkg_length(&mut at, end).map_err(whole) }.map(Step::Next)
            }
            // Noop (§20.2.5.3).
            0xA3 => Ok(Step::Next(at)),
            // The unframed declarations (§20.2.5.2), stepped over operand by operand.
            _ => {
                skip_unframed(r, op, start, &mut at, end).map_err(whole)?;
                Ok(Step::Next(at))
            }
        }
    }

    /// Scope's name refers to an existing object, so a single NameSeg follows the parent
    /// search rule (§5.3): if it is not below the current scope but is below an ancestor,
    /// that is the one reopened.
    fn scope_path(&self, name: &NameString, scope: &[Seg]) -> Option<Vec<Seg>> {
        let direct = name.resolve(scope, MAX_PATH_SEGS)?;
        if !name.is_single_seg() || self.nodes.contains_key(&direct) {
            return Some(direct);
        }
        for up in (0..scope.len()).rev() {
            let mut candidate = scope[..up].to_vec();
            candidate.extend_from_slice(&name.segs);
            if self.nodes.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        Some(direct)
    }

    /// Record `name = value` if it is one of the objects we keep. A second definition of
    /// the same path is a problem and the first is kept, as when ACPICA loads a table that
    /// redefines an existing name (AE_ALREADY_EXISTS).
    fn record(
        &mut self,
        table: usize,
        offset: usize,
        name: &NameString,
        scope: &[Seg],
        value: Data<'a>,
        resume: usize,
    ) {
        let Some(mut path) = name.resolve(scope, MAX_PATH_SEGS) else {
            // The object is already stepped over; only its placement is lost.
            self.problem(table, offset, AmlFault::BadPath { resume });
            return;
        };
        let Some(seg) = path.pop() else { return };
        let node = self.nodes.entry(path).or_default();
        let Some(slot) = node.slot(seg) else { return };
        if slot.is_some() {
            self.problem(table, offset, AmlFault::Duplicate { name: seg });
        } else {
            *slot = Some(value);
        }
    }
}

fn unknown(at: usize, op: u16) -> Stop {
    Stop {
        at,
        why: StopKind::Unreadable(Unreadable::UnknownOpcode(op)),
    }
}

/// A Method body `[at, end)` that is exactly `Return (constant)` (ReturnOp 0xA4, §20.2.5.3)
/// gives that constant; any other body is [`Data::Computed`].
fn constant_return<'a>(r: &mut Reader<'a>, mut at: usize, end: usize) -> Data<'a> {
    if r.byte(&mut at, end) != Ok(0xA4) {
        return Data::Computed;
    }
    // Code is not data: what the value's packages hold is not a problem to report.
    let reported = r.inner.len();
    let value = r.data(&mut at, end, 0);
    r.inner.truncate(reported);
    match value {
        Ok(value @ (Data::Integer(_) | Data::String(_) | Data::Buffer(_) | Data::Package(_)))
            if at == end =>
        {
            value
        }
        _ => Data::Computed,
    }
}

/// Step over an unframed declaration's operands (§20.2.5.2), `op` already read at `start`.
fn skip_unframed(
    r: &mut Reader<'_>,
    op: u16,
    start: usize,
    at: &mut usize,
    end: usize,
) -> Read<()> {
    match op {
        // DefOpRegion := 0x5B 0x80 NameString RegionSpace(byte) RegionOffset RegionLen
        0x5B80 => {
            r.name_string(at, end)?;
            r.byte(at, end)?;
            r.skip_term_arg(at, end, 0)?;
            r.skip_term_arg(at, end, 0)
        }
        // DefMutex := 0x5B 0x01 NameString SyncFlags(byte)
        0x5B01 => {
            r.name_string(at, end)?;
            r.byte(at, end).map(|_| ())
        }
        // DefEvent := 0x5B 0x02 NameString
        0x5B02 => r.name_string(at, end).map(|_| ()),
        // DefExternal := 0x15 NameString ObjectType(byte) ArgumentCount(byte)
        0x15 => {
            r.name_string(at, end)?;
            r.bytes(at, 2, end).map(|_| ())
        }
        // DefAlias := 0x06 NameString NameString
        0x06 => {
            r.name_string(at, end)?;
            r.name_string(at, end).map(|_| ())
        }
        // DefCreate{DWord,Word,Byte,Bit,QWord}Field := op SourceBuff ByteIndex NameString
        0x8A | 0x8B | 0x8C | 0x8D | 0x8F => {
            r.skip_term_arg(at, end, 0)?;
            r.skip_term_arg(at, end, 0)?;
            r.name_string(at, end).map(|_| ())
        }
        // DefCreateField := 0x5B 0x13 SourceBuff BitIndex NumBits NameString
        0x5B13 => {
            r.skip_term_arg(at, end, 0)?;
            r.skip_term_arg(at, end, 0)?;
            r.skip_term_arg(at, end, 0)?;
            r.name_string(at, end).map(|_| ())
        }
        // DefDataRegion := 0x5B 0x88 NameString TermArg TermArg TermArg
        0x5B88 => {
            r.name_string(at, end)?;
            r.skip_term_arg(at, end, 0)?;
            r.skip_term_arg(at, end, 0)?;
            r.skip_term_arg(at, end, 0)
        }
        _ => Err(unknown(start, op)),
    }
}
