//! `nv-getcpu`: run by the Linux test guest's `/init` (`nv.test=getcpu`). For each CPU the
//! guest has online it pins itself there (`sched_setaffinity`) and reports what each source
//! says about where it runs: the `getcpu` system call (the kernel's own answer), `RDTSCP`'s
//! ECX and `RDPID` (the TSC_AUX value Linux wrote for that CPU, `node << 12 | cpu`, as the
//! vDSO's `getcpu` decodes it), and field 39 of `/proc/self/stat`. One line:
//! `@guest {"event":"getcpu","cpus":[{"cpu":0,"getcpu":[0,0],"rdtscp":[0,0],"rdpid":null,"stat":0},...]}`.
//!
//! A freestanding static executable (no libc: the test guests' `x86_64-unknown-none` target,
//! system calls made directly), so nothing but the kernel is needed in the initramfs.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program;

#[cfg(not(target_os = "none"))]
fn main() {}
