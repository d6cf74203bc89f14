//! numavisor: a NUMA-aware static-partitioning hypervisor, as one bare-metal image.
//!
//! Built for `x86_64-unknown-none` this is the image; built for the host (when the workspace
//! runs `cargo test` or `clippy`) it is an empty program, because everything worth testing on
//! the host lives in the `numavisor-policy` crate.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod embedded_layout {
    //! The partition layout chosen at build time (see firmware/build.rs).
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}
#[cfg(target_os = "none")]
mod partition;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
mod virt;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("numavisor is a bare-metal image: build it with `cargo xtask build`");
}
