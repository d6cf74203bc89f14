//! The hypercall interface (`docs/hypercalls.md`): what a guest asks with VMMCALL (SVM) or
//! VMCALL (VMX), decoded once from its registers ([`abi`]), and the pure state machine behind
//! the memory calls ([`bank`]): who may act on whose pool, which pages move, and the ledger.
//!
//! The style follows the Hyper-V TLFS (§3 "Hypercall interface", §5 "Partition memory
//! pools", status codes of §3.9), with a register-only calling convention of our own: no
//! hypercall page, no fast/slow split, no rep counts in RAX.

pub mod abi;
pub mod bank;
pub mod dispatch;

pub use abi::{Call, CallCode, PartitionId, Status};
pub use bank::{Bank, DepositPlan, PageMove, WithdrawPlan};
pub use dispatch::{handle, Partitions, Reply};
