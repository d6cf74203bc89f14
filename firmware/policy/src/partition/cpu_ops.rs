//! What the partition protocols ([`memory_sync`](super::memory_sync),
//! [`stop_handshake`](super::stop_handshake)) need from the CPUs that run a partition's vCPUs:
//! the firmware implements it with IPIs and HLT, the host tests with threads.

/// The CPU operations the protocols wait with.
pub trait CpuOps {
    /// Makes the CPU running vCPU `vcpu` leave guest mode or its idle wait soon, so that it
    /// passes a checkpoint (nothing if the caller runs it).
    fn kick(&self, vcpu: usize);
    /// Waits a little on the calling CPU: until an interrupt, or a short timeout.
    fn pause(&self);
}
