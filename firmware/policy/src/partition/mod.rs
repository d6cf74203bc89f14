//! Partitions in the policy core: their memory pools and what they cost.

pub mod cost;
pub mod cpu_ops;
pub mod dynamic_memory;
pub mod guest_ram;
pub mod memory_sync;
pub mod placement;
pub mod pool;
pub mod stop_handshake;
pub mod zeroing;
