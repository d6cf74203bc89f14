//! Virtualization backends. Each implements the VMM core's `Vcpu` trait
//! (`numavisor_policy::vmm::vcpu`) and decodes its exits into the core's `VmExit`; the
//! partition manager handles them the same way whatever the backend.

pub mod svm;
