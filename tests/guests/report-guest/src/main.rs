//! numavisor's report test guest: a `no_std` PVH kernel that runs in a partition (or directly
//! under QEMU) and prints what it sees as one JSON line per report on COM1, each prefixed
//! `guest: `, then ends through the debug-exit port (0xf4).
//!
//! Command line `mode=report` (the default): `start`, `memmap`, `acpi` (vNUMA layout from the
//! RSDP via `numavisor_policy::acpi`), `ram_test`, `done`; exit status 0, or 1 on RAM errors,
//! ACPI problems or a bad boot structure. `mode=probe [probe=0xADDR]`: `probe`, then a read of
//! an address outside the memory map (default: 1 GiB above the top of RAM); if the read returns,
//! `probe_returned` and status 2. `mode=io-loop [count=N]` makes N port reads (VM exits, for
//! the exit-rate benchmark) and exits 0; `mode=cpuid-loop [count=N]` makes N CPUIDs and
//! `mode=eoi-loop [count=N]` N xAPIC EOI writes (MMIO exits). `mode=hostile probe=NAME` probes one intercept
//! (`prefixed-cpuid`, `rdpmc`, `efer-svme`, `unknown-msr`, `host-state`, `icebp`, `invlpga`,
//! `cpuid`, `single-step`, `alignment-check` (ring 3; QEMU's TCG does not raise #AC), `wbinvd`,
//! `xcr0`), or `balloon-scrub` (through its own virtio balloon it looks for pages handed to it
//! without being zeroed: `scrub` event; `balloon_scrub.rs`). `mode=fill` writes a pattern over
//! all its free RAM, prints `fill` and exits 0 (the victim of `balloon-scrub`). `mode=nvme
//! [outside=0xADDR] [deposit=ID] [balloon=1]` drives a passed-through NVMe controller (`nvme_probe.rs`).
//! `probe=concurrent-moves child=ID` starts the partition's second vCPU (INIT/SIPI, `smp.rs`)
//! and moves pages on both at once: balloon inflate/deflate on vCPU 0, deposit/withdraw
//! hypercalls into `child` on vCPU 1 (`concurrent_moves.rs`). `probe=init-idt` starts the
//! second vCPU with a #UD as its first real-mode instruction, which must reach the IVT's
//! handler (`init_idt` event; `init_idt.rs`). `probe=nmi-blocking` sends itself NMIs from inside its
//! NMI handler: none may run before the handler's IRET, ten sent at once give one more run
//! (`nmi_blocking` event; `nmi.rs`). `probe=virtio-net` drives its network card 0
//! through each hostile case of `docs/network.md` and prints the answer to each
//! (`virtio_net` events; `virtio_net_probe.rs`). `mode=watch target=ID|self
//! [until=N]` calls get balance and get memory info on `target` until it stops (`watch.rs`),
//! the neighbour of `concurrent-moves`. `probe=virtual-platform` holds the virtual CPU and
//! local APIC to the architecture (legacy AMD counters, TSC_AUX, CR8/TPR, a disabled APIC, the
//! I/O APIC ID; `platform_probe.rs`). `probe=mmio-page-walk` points its page tables into the
//! APIC page and `probe=mmio-crossing` reads 8 bytes across the APIC page's end: each must stop
//! its partition (`mmio_probe.rs`).
//! `mode=spin` prints `spinning`, disables interrupts and
//! loops for ever (a hostile guest only the hypervisor's timer can stop). `mode=timer-loop
//! [count=N]` makes N local APIC timer round trips and prints `timer_loop`. `mode=exception`
//! executes `ud2`. `mode=hypercalls [target=ID]` calls the hypervisor (`hypercalls` event).
//! `mode=set-target target=ID vnode=V bytes=N` sets a child's memory target and waits until
//! the child holds it (`set_target` event; `set_target.rs`). `probe=virtio-mem` drives its
//! virtio-mem device with every request, then touches the memory it unplugged
//! (`virtio_mem` event; `virtio_mem_probe.rs`). A CPU exception prints `exception` and exits with status 3,
//! a panic `panic` with status 4.
//!
//! Built for the host this is an empty program, so `cargo test`/`clippy` on the workspace work.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod acpi_report;
#[cfg(target_os = "none")]
mod balloon_scrub;
#[cfg(target_os = "none")]
mod concurrent_moves;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod exceptions;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
mod hypercalls;
#[cfg(target_os = "none")]
mod init_idt;
#[cfg(target_os = "none")]
mod mmio_probe;
#[cfg(target_os = "none")]
mod nmi;
#[cfg(target_os = "none")]
mod nvme_probe;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod platform_probe;
#[cfg(target_os = "none")]
mod ram_test;
#[cfg(target_os = "none")]
mod set_target;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
mod start_info;
#[cfg(target_os = "none")]
mod user_mode;
#[cfg(target_os = "none")]
mod virtio_balloon;
#[cfg(target_os = "none")]
mod virtio_mem_probe;
#[cfg(target_os = "none")]
mod virtio_mmio;
#[cfg(target_os = "none")]
mod virtio_net_probe;
#[cfg(target_os = "none")]
mod watch;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("test-guest is a PVH guest: build it with --target x86_64-unknown-none");
}
