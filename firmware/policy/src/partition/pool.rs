//! Partition memory pools (Hyper-V semantics). Work in progress.
