//! A PVH guest ELF from untrusted bytes: `guest::elf::parse` must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numavisor_policy::guest::elf;

fuzz_target!(|bytes: &[u8]| {
    let _ = elf::parse(bytes);
});
