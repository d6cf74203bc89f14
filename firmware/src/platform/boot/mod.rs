//! Boot protocols. Each one only translates its loader's format into a `BootInfo`.

pub mod pvh;
pub mod pvh_entry;
