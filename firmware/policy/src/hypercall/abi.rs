//! The hypercall ABI: call codes, status codes and the register convention.
//!
//! A call is `RAX` = call code (bits 15:0; bits 63:16 must be zero), arguments in `RBX`,
//! `RCX`, `RDX`; the hypervisor returns the [`Status`] in `RAX` and results in `RBX`, `RCX`,
//! `RDX`, leaving every other register as it was. Only CPL 0 may call: at CPL 1–3 the
//! instruction raises #UD, as it does on a machine without a hypervisor. Guest-supplied
//! values become a [`Call`] only through [`Call::decode`], which checks every argument that
//! can be checked without the partition's state (alignment, counts, reserved bits).

use crate::memory::PAGE_SIZE;

/// The most page GPAs one deposit or withdrawal names (one 4 KiB list page of `u64`s).
pub const MAX_PAGES_PER_CALL: u64 = 512;

/// `RBX` value meaning "the calling partition" wherever a partition ID is expected (the
/// TLFS's `HV_PARTITION_ID_SELF`).
pub const PARTITION_SELF: u64 = u64::MAX;

/// `RCX` of [`Call::GetBalance`] meaning "every node together".
pub const ALL_NODES: u64 = u64::MAX;

/// The bytes of one [`Call::ListPartitions`] entry: partition ID (u64), then its parent's ID
/// (u64, 0 for none).
pub const LIST_ENTRY_BYTES: u64 = 16;

/// The call codes (`RAX` bits 15:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum CallCode {
    /// Out: `RBX` = the caller's partition ID.
    GetPartitionId = 0x0001,
    /// In: `RBX` = buffer GPA (8-byte aligned), `RCX` = capacity in entries. Out: `RBX` =
    /// partitions that exist, `RCX` = entries written.
    ListPartitions = 0x0002,
    /// In: `RBX` = child ID, `RCX` = GPA of a list of page GPAs (8-byte aligned, within one
    /// page), `RDX` = how many (1..=512). Out: `RBX` = pages deposited.
    DepositMemory = 0x0003,
    /// In: as for deposit; the list names the caller's GPAs the pages are mapped at. Out:
    /// `RBX` = pages withdrawn.
    WithdrawMemory = 0x0004,
    /// In: `RBX` = partition ID (self or a child), `RCX` = host node or [`ALL_NODES`]. Out:
    /// `RBX` = pool pages on that node, `RCX` = of those, pages the parent deposited (and so
    /// may withdraw).
    GetBalance = 0x0005,
    /// In: `RBX` = partition ID (self or a child), `RCX` = vnode, `RDX` = host node or
    /// [`ALL_NODES`]. Out: `RBX` = guest RAM pages of that vnode on that node, `RCX` = the
    /// vnode's pages given up (deposited, or held by its balloon).
    GetMemoryInfo = 0x0006,
    /// In: `RBX` = child ID, `RCX` = vnode, `RDX` = the memory the vnode should hold, in
    /// bytes (a multiple of 4 KiB), or [`TARGET_POLICY`] to leave it to Dynamic Memory's
    /// policy again. Out: `RBX` = the target set, within the vnode's bounds (0 for the policy).
    SetMemoryTarget = 0x0007,
}

/// [`CallCode::SetMemoryTarget`]'s `RDX` that hands a vnode back to the policy.
pub const TARGET_POLICY: u64 = u64::MAX;

impl CallCode {
    /// Every call code, in numeric order.
    pub const ALL: [CallCode; 7] = [
        CallCode::GetPartitionId,
        CallCode::ListPartitions,
        CallCode::DepositMemory,
        CallCode::WithdrawMemory,
        CallCode::GetBalance,
        CallCode::GetMemoryInfo,
        CallCode::SetMemoryTarget,
    ];

    /// The code for `value`, if it is one.
    pub fn from_u16(value: u16) -> Option<CallCode> {
        CallCode::ALL.into_iter().find(|c| *c as u16 == value)
    }

    /// The bit of this call in CPUID leaf 0x4000_0001 EBX (bit `code`).
    pub fn feature_bit(self) -> u32 {
        1 << (self as u16)
    }

    /// The name the boot report and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            CallCode::GetPartitionId => "get_partition_id",
            CallCode::ListPartitions => "list_partitions",
            CallCode::DepositMemory => "deposit_memory",
            CallCode::WithdrawMemory => "withdraw_memory",
            CallCode::GetBalance => "get_balance",
            CallCode::GetMemoryInfo => "get_memory_info",
            CallCode::SetMemoryTarget => "set_memory_target",
        }
    }
}

/// The calls this image carries out, advertised in CPUID leaf 0x4000_0001 EBX.
pub const OFFERED: [CallCode; 7] = [
    CallCode::GetPartitionId,
    CallCode::ListPartitions,
    CallCode::DepositMemory,
    CallCode::WithdrawMemory,
    CallCode::GetBalance,
    CallCode::GetMemoryInfo,
    CallCode::SetMemoryTarget,
];

/// The [`OFFERED`] calls as CPUID feature bits.
pub fn offered_feature_bits() -> u32 {
    OFFERED
        .iter()
        .fold(0, |bits, code| bits | code.feature_bit())
}

/// The status returned in `RAX` (values of the TLFS's `HV_STATUS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    Success = 0x0000,
    /// No such call code, or reserved bits of `RAX` set.
    InvalidHypercallCode = 0x0002,
    /// A GPA not aligned as the call requires.
    InvalidAlignment = 0x0004,
    /// A count, node, vnode or GPA the call cannot accept.
    InvalidParameter = 0x0005,
    /// The caller is not the target's parent.
    AccessDenied = 0x0006,
    /// Not enough pages (in the pool, or for the tables the change needs).
    InsufficientMemory = 0x000B,
    /// No partition with that ID.
    InvalidPartitionId = 0x000D,
}

impl Status {
    /// Every status, in numeric order.
    pub const ALL: [Status; 7] = [
        Status::Success,
        Status::InvalidHypercallCode,
        Status::InvalidAlignment,
        Status::InvalidParameter,
        Status::AccessDenied,
        Status::InsufficientMemory,
        Status::InvalidPartitionId,
    ];

    /// The value for `RAX`.
    pub fn code(self) -> u64 {
        self as u16 as u64
    }

    /// The status for an `RAX` value, if it is one (for guests and tests).
    pub fn from_code(code: u64) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The name the boot report and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::InvalidHypercallCode => "invalid-hypercall-code",
            Status::InvalidAlignment => "invalid-alignment",
            Status::InvalidParameter => "invalid-parameter",
            Status::AccessDenied => "access-denied",
            Status::InsufficientMemory => "insufficient-memory",
            Status::InvalidPartitionId => "invalid-partition-id",
        }
    }
}

/// A partition named by a guest: its ID is its index in the layout plus one (0 is never a
/// partition, as in the TLFS), or the caller itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionId {
    /// [`PARTITION_SELF`].
    Caller,
    /// The partition with layout index `index`.
    Index(usize),
}

impl PartitionId {
    /// The ID a guest sees for layout index `index`.
    pub fn of_index(index: usize) -> u64 {
        index as u64 + 1
    }

    /// A guest's `value`: self, or an index (not yet checked to exist).
    pub fn decode(value: u64) -> Result<PartitionId, Status> {
        match value {
            PARTITION_SELF => Ok(PartitionId::Caller),
            0 => Err(Status::InvalidPartitionId),
            id => usize::try_from(id - 1)
                .map(PartitionId::Index)
                .map_err(|_| Status::InvalidPartitionId),
        }
    }

    /// The layout index, `caller` standing for [`PartitionId::Caller`].
    pub fn resolve(self, caller: usize) -> usize {
        match self {
            PartitionId::Caller => caller,
            PartitionId::Index(index) => index,
        }
    }
}

/// A host node argument: one node, or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeFilter {
    All,
    Node(usize),
}

impl NodeFilter {
    fn decode(value: u64) -> Result<NodeFilter, Status> {
        match value {
            ALL_NODES => Ok(NodeFilter::All),
            node => usize::try_from(node)
                .map(NodeFilter::Node)
                .map_err(|_| Status::InvalidParameter),
        }
    }

    /// Whether `node` passes the filter.
    pub fn accepts(self, node: usize) -> bool {
        match self {
            NodeFilter::All => true,
            NodeFilter::Node(n) => n == node,
        }
    }
}

/// A list of page GPAs in guest memory: where it is and how many entries it holds. The list's
/// own GPA is checked (8-aligned, within one page); the entries are read and checked by the
/// caller of [`Call::decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageList {
    pub gpa: u64,
    pub count: usize,
}

impl PageList {
    fn decode(gpa: u64, count: u64) -> Result<PageList, Status> {
        if count == 0 || count > MAX_PAGES_PER_CALL {
            return Err(Status::InvalidParameter);
        }
        if !gpa.is_multiple_of(8) {
            return Err(Status::InvalidAlignment);
        }
        // The list lies within one page: no page-crossing reads of guest memory.
        if gpa % PAGE_SIZE + count * 8 > PAGE_SIZE {
            return Err(Status::InvalidParameter);
        }
        Ok(PageList {
            gpa,
            count: count as usize,
        })
    }
}

/// One decoded call, every argument checked as far as it can be without the partition's
/// state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    GetPartitionId,
    ListPartitions {
        buffer: u64,
        capacity: u64,
    },
    DepositMemory {
        target: PartitionId,
        pages: PageList,
    },
    WithdrawMemory {
        target: PartitionId,
        pages: PageList,
    },
    GetBalance {
        target: PartitionId,
        node: NodeFilter,
    },
    GetMemoryInfo {
        target: PartitionId,
        vnode: usize,
        node: NodeFilter,
    },
    SetMemoryTarget {
        target: PartitionId,
        vnode: usize,
        /// Bytes, a multiple of 4 KiB; `None`: back to the policy.
        bytes: Option<u64>,
    },
}

impl Call {
    /// Decodes `RAX`, `RBX`, `RCX`, `RDX` into a call, or the status to return.
    pub fn decode(rax: u64, rbx: u64, rcx: u64, rdx: u64) -> Result<Call, Status> {
        let code = u16::try_from(rax)
            .ok()
            .and_then(CallCode::from_u16)
            .ok_or(Status::InvalidHypercallCode)?;
        Ok(match code {
            CallCode::GetPartitionId => Call::GetPartitionId,
            CallCode::ListPartitions => {
                if !rbx.is_multiple_of(8) {
                    return Err(Status::InvalidAlignment);
                }
                Call::ListPartitions {
                    buffer: rbx,
                    capacity: rcx,
                }
            }
            CallCode::DepositMemory => Call::DepositMemory {
                target: PartitionId::decode(rbx)?,
                pages: PageList::decode(rcx, rdx)?,
            },
            CallCode::WithdrawMemory => Call::WithdrawMemory {
                target: PartitionId::decode(rbx)?,
                pages: PageList::decode(rcx, rdx)?,
            },
            CallCode::GetBalance => Call::GetBalance {
                target: PartitionId::decode(rbx)?,
                node: NodeFilter::decode(rcx)?,
            },
            CallCode::GetMemoryInfo => Call::GetMemoryInfo {
                target: PartitionId::decode(rbx)?,
                vnode: usize::try_from(rcx).map_err(|_| Status::InvalidParameter)?,
                node: NodeFilter::decode(rdx)?,
            },
            CallCode::SetMemoryTarget => Call::SetMemoryTarget {
                target: PartitionId::decode(rbx)?,
                vnode: usize::try_from(rcx).map_err(|_| Status::InvalidParameter)?,
                bytes: match rdx {
                    TARGET_POLICY => None,
                    bytes if bytes.is_multiple_of(PAGE_SIZE) => Some(bytes),
                    _ => return Err(Status::InvalidAlignment),
                },
            },
        })
    }

    /// The call's code.
    pub fn code(&self) -> CallCode {
        match self {
            Call::GetPartitionId => CallCode::GetPartitionId,
            Call::ListPartitions { .. } => CallCode::ListPartitions,
            Call::DepositMemory { .. } => CallCode::DepositMemory,
            Call::WithdrawMemory { .. } => CallCode::WithdrawMemory,
            Call::GetBalance { .. } => CallCode::GetBalance,
            Call::GetMemoryInfo { .. } => CallCode::GetMemoryInfo,
            Call::SetMemoryTarget { .. } => CallCode::SetMemoryTarget,
        }
    }
}

/// Checks one page GPA read from a guest's list: 4 KiB aligned.
pub fn page_gpa(value: u64) -> Result<u64, Status> {
    if value.is_multiple_of(PAGE_SIZE) {
        Ok(value)
    } else {
        Err(Status::InvalidAlignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_round_trip() {
        for code in CallCode::ALL {
            assert_eq!(CallCode::from_u16(code as u16), Some(code));
        }
        assert_eq!(CallCode::from_u16(0), None);
        assert_eq!(CallCode::from_u16(8), None);
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
        assert_eq!(Status::AccessDenied.code(), 6);
        assert_eq!(Status::InsufficientMemory.code(), 0xB);
    }

    #[test]
    fn reserved_code_bits_and_unknown_codes_are_refused() {
        assert_eq!(
            Call::decode(0x1_0001, 0, 0, 0),
            Err(Status::InvalidHypercallCode)
        );
        assert_eq!(
            Call::decode(0x99, 0, 0, 0),
            Err(Status::InvalidHypercallCode)
        );
        assert_eq!(Call::decode(1, 7, 7, 7), Ok(Call::GetPartitionId));
    }

    #[test]
    fn partition_ids_are_index_plus_one_or_self() {
        assert_eq!(PartitionId::decode(0), Err(Status::InvalidPartitionId));
        assert_eq!(PartitionId::decode(1), Ok(PartitionId::Index(0)));
        assert_eq!(PartitionId::decode(u64::MAX), Ok(PartitionId::Caller));
        assert_eq!(PartitionId::Caller.resolve(3), 3);
        assert_eq!(PartitionId::of_index(2), 3);
    }

    #[test]
    fn page_lists_are_bounded_aligned_and_within_one_page() {
        let deposit = |list, count| Call::decode(3, 2, list, count);
        assert_eq!(deposit(0x5000, 0), Err(Status::InvalidParameter));
        assert_eq!(deposit(0x5000, 513), Err(Status::InvalidParameter));
        assert_eq!(deposit(0x5004, 1), Err(Status::InvalidAlignment));
        assert_eq!(deposit(0x5008, 512), Err(Status::InvalidParameter));
        assert_eq!(
            deposit(0x5000, 512),
            Ok(Call::DepositMemory {
                target: PartitionId::Index(1),
                pages: PageList {
                    gpa: 0x5000,
                    count: 512
                }
            })
        );
        assert_eq!(
            Call::decode(4, 0, 0x5000, 1),
            Err(Status::InvalidPartitionId)
        );
        assert_eq!(page_gpa(0x1001), Err(Status::InvalidAlignment));
        assert_eq!(page_gpa(0x2000), Ok(0x2000));
    }

    #[test]
    fn balance_and_memory_info_take_nodes_or_all() {
        assert_eq!(
            Call::decode(5, u64::MAX, ALL_NODES, 0),
            Ok(Call::GetBalance {
                target: PartitionId::Caller,
                node: NodeFilter::All
            })
        );
        assert_eq!(
            Call::decode(6, 1, 2, 1),
            Ok(Call::GetMemoryInfo {
                target: PartitionId::Index(0),
                vnode: 2,
                node: NodeFilter::Node(1)
            })
        );
        assert_eq!(Call::decode(2, 0x1003, 4, 0), Err(Status::InvalidAlignment));
        assert!(NodeFilter::All.accepts(5) && !NodeFilter::Node(1).accepts(0));
    }
}
