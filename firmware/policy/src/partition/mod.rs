//! Partitions in the policy core: their memory pools and what they cost.

pub mod cost;
pub mod dynamic_memory;
pub mod guest_ram;
pub mod placement;
pub mod pool;
pub mod zeroing;
