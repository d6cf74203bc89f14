//! The guest's main line: read the boot structures, map memory, run the mode the command line
//! names, exit through the debug-exit port.

use core::fmt::Write;
use core::panic::PanicInfo;

use alloc::string::String;

use crate::acpi_report::report_acpi;
use crate::console::{exit, report, Json};
use crate::paging::map_identity;
use crate::ram_test::report_ram_test;
use crate::start_info::{self, MemRange, RAM};
use crate::{entry, exceptions};

/// Exit statuses (QEMU's isa-debug-exit turns status s into process exit code 2s + 1).
const SUCCESS: u32 = 0;
const FAILURE: u32 = 1;
const PROBE_RETURNED: u32 = 2;
const PANICKED: u32 = 4;

const ACPI_RECLAIMABLE: u32 = 3;
const ACPI_NVS: u32 = 4;
const GIB: u64 = 1 << 30;
const TWO_MIB: u64 = 2 << 20;

/// Called by the entry code in long mode with the `hvm_start_info` address.
pub extern "C" fn guest_main(start_info: u32) -> ! {
    exceptions::install();
    let info = match start_info::parse(start_info) {
        Ok(info) => info,
        Err(message) => {
            report!("{{\"event\":\"start\",\"error\":{}}}", Json(message));
            exit(FAILURE)
        }
    };
    match &info.cmdline {
        Some(cmdline) => report!("{{\"event\":\"start\",\"cmdline\":{}}}", Json(cmdline)),
        None => report!("{{\"event\":\"start\",\"cmdline\":null}}"),
    }
    report!(
        "{{\"event\":\"memmap\",\"ranges\":[{}]}}",
        ranges(&info.memmap)
    );
    // RAM and ACPI tables must be reachable; other (reserved) ranges are mapped afterwards if
    // they fit, so they never take page directories that RAM needs.
    let needed = |r: &&MemRange| matches!(r.kind, RAM | ACPI_RECLAIMABLE | ACPI_NVS);
    for range in info.memmap.iter().filter(needed) {
        if let Err(message) = map_identity(range.base, range.end()) {
            report!("{{\"event\":\"memmap\",\"error\":{}}}", Json(message));
            exit(FAILURE)
        }
    }
    for range in info.memmap.iter().filter(|r| !needed(r)) {
        let _ = map_identity(range.base, range.end());
    }

    let cmdline = info.cmdline.as_deref().unwrap_or("");
    let option = |key: &str| {
        cmdline
            .split_ascii_whitespace()
            .filter_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .next_back()
    };
    // RAM a mode may overwrite is the memory map's less these (and the legacy hole).
    let mut excluded = info.occupied.clone();
    excluded.push(entry::image_range());
    match option("mode").unwrap_or("report") {
        "report" => {
            let acpi_ok = report_acpi(&info.memmap, info.rsdp);
            let ram_ok = report_ram_test(&info.memmap, &excluded);
            let status = if acpi_ok && ram_ok { SUCCESS } else { FAILURE };
            report!("{{\"event\":\"done\",\"status\":{status}}}");
            exit(status)
        }
        "probe" => probe(&info.memmap, option("probe")),
        "io-loop" => {
            // Benchmark: `count=` port reads of an unassigned port, each one a VM exit.
            let count = option("count").and_then(parse_number).unwrap_or(100_000);
            for _ in 0..count {
                // SAFETY: reading port 0x80 (POST diagnostics) has no effect anywhere.
                unsafe { core::arch::asm!("in al, 0x80", out("al") _, options(nomem, nostack)) };
            }
            report!("{{\"event\":\"io_loop\",\"exits\":{count}}}");
            exit(SUCCESS)
        }
        "eoi-loop" => {
            // Benchmark: `count=` xAPIC EOI writes (MMIO, as Linux's xAPIC driver makes them),
            // each one a nested page fault the hypervisor decodes; none in service, so each
            // changes nothing.
            let count = option("count").and_then(parse_number).unwrap_or(100_000);
            for _ in 0..count {
                crate::hw::mmio_write(crate::hw::XAPIC + 0xB0, 0);
            }
            report!("{{\"event\":\"eoi_loop\",\"exits\":{count}}}");
            exit(SUCCESS)
        }
        "cpuid-loop" => {
            // Benchmark: `count=` CPUIDs (leaf 0), each one a VM exit.
            let count = option("count").and_then(parse_number).unwrap_or(100_000);
            for _ in 0..count {
                core::hint::black_box(core::arch::x86_64::__cpuid(0));
            }
            report!("{{\"event\":\"cpuid_loop\",\"exits\":{count}}}");
            exit(SUCCESS)
        }
        "hostile" if option("probe") == Some("balloon-scrub") => {
            crate::balloon_scrub::scavenge(&info.memmap, &excluded, &|key| {
                option(key).and_then(parse_number)
            })
        }
        "hostile" if option("probe") == Some("concurrent-moves") => {
            crate::concurrent_moves::run(&info.memmap, info.rsdp, &|key| {
                option(key).and_then(parse_number)
            })
        }
        "hostile" if option("probe") == Some("nmi-blocking") => crate::nmi::run(),
        "hostile" if option("probe") == Some("init-idt") => {
            crate::init_idt::run(&info.memmap, info.rsdp)
        }
        "hostile" if option("probe") == Some("virtio-net") => {
            crate::virtio_net_probe::run(option("ip"), option("peer"))
        }
        "hostile" if option("probe") == Some("virtio-mem") => crate::virtio_mem_probe::run(),
        "hostile" => hostile(option("probe").unwrap_or("")),
        "watch" => crate::watch::run(option("target"), option("until").and_then(parse_number)),
        "fill" => crate::balloon_scrub::fill(&info.memmap, &excluded),
        "nvme" => {
            use crate::nvme_probe::GiveAway;
            let deposit = option("deposit")
                .and_then(parse_number)
                .map(GiveAway::Deposit);
            let balloon = (option("balloon") == Some("1")).then_some(GiveAway::Balloon);
            let rounds: alloc::vec::Vec<GiveAway> = deposit.into_iter().chain(balloon).collect();
            crate::nvme_probe::run(
                option("outside").and_then(parse_number),
                option("repeat").and_then(parse_number).unwrap_or(1),
                &rounds,
            )
        }
        "set-target" => crate::set_target::run(
            option("target").and_then(parse_number),
            option("vnode").and_then(parse_number),
            option("bytes").and_then(parse_number),
        ),
        "hypercalls" => crate::hypercalls::run(
            option("target").and_then(parse_number).unwrap_or(2),
            option("touch") == Some("1"),
        ),
        "timer-loop" => timer_loop(option("count").and_then(parse_number).unwrap_or(1000)),
        "spin" => {
            // A hostile guest: interrupts off, an endless loop. Only the hypervisor's own
            // timer can take the CPU back.
            report!("{{\"event\":\"spinning\"}}");
            // SAFETY: `cli` and a jump to itself: nothing is touched, the loop never ends.
            unsafe { core::arch::asm!("cli", "2:", "jmp 2b", options(noreturn)) }
        }
        "exception" => {
            // SAFETY: `ud2` raises #UD, which the exception handlers report (and exit).
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
            exit(FAILURE)
        }
        other => {
            let message = alloc::format!(
                "unknown mode {other:?} (report, probe, io-loop, eoi-loop, cpuid-loop, timer-loop, hostile, hypercalls, fill, watch, spin, exception)"
            );
            report!("{{\"event\":\"start\",\"error\":{}}}", Json(message));
            exit(FAILURE)
        }
    }
}

/// A hostile probe of one intercept (`probe=`): what the guest should get is in the comment;
/// an exception is reported by the handlers (`exception` event, status 3), a probe that
/// completes prints `hostile_done` and exits 0.
fn hostile(probe: &str) -> ! {
    const COUNT: u64 = 1000;
    match probe {
        // Control characters on the console: a vertical tab and a form feed before `@nv` (a
        // new line to `splitlines()` and terminals), ESC sequences that clear the screen and
        // colour it, C1 NEL and U+2028, DEL. The host console must show them escaped.
        "console-controls" => {
            crate::console::write_raw(
                "forged\x0b@nv {\"v\":1,\"event\":\"forged\"}\x0c@nv {\"v\":1,\"event\":\"forged\"}\x1b[2J\x1b[31mred\u{85}x\u{2028}y\x7f\n",
            );
        }
        // Segment-prefixed CPUID: without next-RIP the hypervisor must skip all 4 bytes, or
        // CPUID runs twice (the partition's CPUID exits tell).
        "prefixed-cpuid" => {
            for _ in 0..COUNT {
                // SAFETY: CPUID (leaf 0) behind two CS overrides; it only writes registers
                // (RBX, which Rust reserves, is saved around it).
                unsafe {
                    core::arch::asm!("push rbx", ".byte 0x2e, 0x2e, 0x0f, 0xa2", "pop rbx",
                        inout("eax") 0u32 => _, out("ecx") _, out("edx") _)
                }
            }
        }
        // The host's performance counters: #GP.
        "rdpmc" => {
            // SAFETY: RDPMC of counter 0; it faults or writes EAX:EDX.
            unsafe { core::arch::asm!("rdpmc", in("ecx") 0, out("eax") _, out("edx") _) };
        }
        // EFER.SVME: nested virtualization is not offered: #GP, not a refused VMRUN.
        "efer-svme" => {
            // SAFETY: WRMSR to EFER with SVME added to the current value; it faults.
            unsafe {
                core::arch::asm!(
                    "mov ecx, 0xC0000080", "rdmsr", "or eax, 0x1000", "wrmsr",
                    out("eax") _, out("ecx") _, out("edx") _
                )
            };
        }
        // XCR0 as each (re)start finds it (x87 only: nothing of an earlier life survives),
        // then set to x87|SSE through the hypervisor's XSETBV intercept.
        "xcr0" => {
            if core::arch::x86_64::__cpuid(1).ecx & (1 << 26) == 0 {
                report!("{{\"event\":\"xcr0\",\"xsave\":false}}");
            } else {
                let xgetbv = || {
                    let (low, high): (u32, u32);
                    // SAFETY: XGETBV of XCR0 with CR4.OSXSAVE set (below) only reads it.
                    unsafe {
                        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high,
                            options(nomem, nostack))
                    };
                    ((high as u64) << 32) | low as u64
                };
                // SAFETY: CR4.OSXSAVE enables XGETBV/XSETBV (CPUID says XSAVE exists); then
                // XCR0 = x87|SSE, always valid with XSAVE.
                unsafe {
                    core::arch::asm!("mov rax, cr4", "bts rax, 18", "mov cr4, rax", out("rax") _,
                        options(nomem, nostack));
                }
                let at_start = xgetbv();
                // SAFETY: as above.
                unsafe {
                    core::arch::asm!("xsetbv", in("ecx") 0, in("eax") 3, in("edx") 0,
                        options(nomem, nostack))
                };
                report!(
                    "{{\"event\":\"xcr0\",\"xsave\":true,\"at_start\":{at_start},\"after\":{}}}",
                    xgetbv()
                );
            }
        }
        // An MSR nobody implements: #GP, not a zero.
        "unknown-msr" => {
            // SAFETY: RDMSR of an unimplemented MSR; it faults.
            unsafe { core::arch::asm!("rdmsr", in("ecx") 0x0001_2345, out("eax") _, out("edx") _) };
        }
        // The state VMRUN does not switch: the guest may set it, the host must not see it.
        "host-state" => {
            for (msr, value) in [
                (0xC000_0100u32, 0x1111_0000u64),     // FS_BASE
                (0xC000_0101, 0x2222_0000),           // GS_BASE
                (0xC000_0102, 0x3333_0000),           // KERNEL_GS_BASE
                (0xC000_0081, 0x0023_0010_0000_0000), // STAR
                (0xC000_0082, 0x4444_0000),           // LSTAR
                (0xC000_0084, 0x0000_0700),           // SFMASK
                (0x174, 0x10),                        // SYSENTER_CS
                (0x175, 0x5555_0000),                 // SYSENTER_ESP
                (0x176, 0x6666_0000),                 // SYSENTER_EIP
                (0x277, 0x0407_0406_0007_0406),       // PAT (entry 7 WT)
            ] {
                // The guest's own MSRs (passed through, or PAT kept in the guest state); the
                // test guest uses none of them, and the PAT written keeps write-back at the
                // entry its page tables use.
                crate::hw::wrmsr(msr, value);
            }
            // Exits after the writes: port reads, each one a world switch.
            for _ in 0..COUNT {
                // SAFETY: reading port 0x80 has no effect anywhere.
                unsafe { core::arch::asm!("in al, 0x80", out("al") _, options(nomem, nostack)) };
            }
        }
        // #AC at CPL 3: intercepted (its delivery can lock a CPU, CVE-2015-5307), then
        // reflected; the handler reports vector 17.
        "alignment-check" => crate::user_mode::alignment_check_in_ring3(),
        // A single-step trap (RFLAGS.TF): #DB, intercepted (so no delivery loop can lock the
        // CPU) and delivered by the hypervisor; the handler reports vector 1.
        "single-step" => {
            // SAFETY: sets TF; the instruction after POPFQ traps into the exception handler,
            // which reports and exits.
            unsafe { core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq", "nop") };
        }
        // ICEBP (INT1): #DB, delivered by the hypervisor.
        "icebp" => {
            // SAFETY: INT1; the exception handler reports it and exits.
            unsafe { core::arch::asm!(".byte 0xf1", options(nomem, nostack)) };
        }
        // INVLPGA is an SVM instruction, and SVM is not offered: #UD.
        "invlpga" => {
            // SAFETY: INVLPGA rAX, ECX; it faults.
            unsafe { core::arch::asm!(".byte 0x0f, 0x01, 0xdf", in("rax") 0u64, in("ecx") 0u32) };
        }
        // What CPUID and RDTSC tell about the host: nothing (the partition's own topology and
        // brand; a TSC that started near 0 with this partition).
        "cpuid" => {
            let cpuid = core::arch::x86_64::__cpuid_count;
            let mut brand = [0u8; 48];
            for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
                let r = cpuid(leaf, 0);
                for (j, word) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
                    brand[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&word.to_le_bytes());
                }
            }
            let brand = core::str::from_utf8(&brand)
                .unwrap_or("?")
                .trim_end_matches('\0');
            let leaf1 = cpuid(1, 0);
            let leaf_b = cpuid(0xB, 1);
            // SAFETY: RDTSC has no side effects.
            let tsc = unsafe { core::arch::x86_64::_rdtsc() };
            report!(
                "{{\"event\":\"cpuid\",\"brand\":{},\"logical\":{},\"apic_id\":{},\"hypervisor\":{},\"vmx\":{},\"cores\":{},\"tsc\":{tsc}}}",
                Json(brand),
                (leaf1.ebx >> 16) & 0xFF,
                leaf1.ebx >> 24,
                leaf1.ecx >> 31,
                (leaf1.ecx >> 5) & 1,
                leaf_b.ebx & 0xFFFF
            );
        }
        // Device pages touched by a page walk, or by an access running past their end: the
        // partition stops (`mmio_probe.rs`).
        "mmio-page-walk" => crate::mmio_probe::page_walk_into_the_apic(),
        "mmio-crossing" => crate::mmio_probe::access_across_the_apic_page_end(),
        // The virtual CPU and local APIC against the architecture (`platform_probe.rs`).
        "virtual-platform" => crate::platform_probe::run(),
        // A cache flush shared with other partitions: a no-op that completes.
        "wbinvd" => {
            for _ in 0..COUNT {
                // SAFETY: WBINVD has no effect on the guest's own memory contents.
                unsafe { core::arch::asm!("wbinvd", options(nostack)) };
            }
        }
        other => {
            report!(
                "{{\"event\":\"hostile\",\"error\":{}}}",
                Json(alloc::format!("unknown probe {other:?}"))
            );
            exit(FAILURE)
        }
    }
    report!(
        "{{\"event\":\"hostile_done\",\"probe\":{},\"count\":{COUNT}}}",
        Json(probe)
    );
    exit(SUCCESS)
}

/// Benchmark: `count` local APIC timer round trips (x2APIC: program a one-shot count of 1,
/// halt, take the interrupt, EOI), timed with the TSC — instructions under `-icount shift=0`.
fn timer_loop(count: u64) -> ! {
    use crate::exceptions::{TIMER_TICKS, TIMER_VECTOR};
    use core::sync::atomic::Ordering;
    // Architected local APIC MSRs (IA32_APIC_BASE, x2APIC SVR/LVT/TDCR/TMICT); the timer's
    // vector has a handler in the IDT.
    use crate::hw::wrmsr;
    wrmsr(0x1B, 0xFEE0_0000 | (1 << 11) | (1 << 10) | (1 << 8)); // x2APIC on
    wrmsr(0x80F, 0x1FF); // SVR: software enable
    wrmsr(0x83E, 0xB); // divide by 1
    wrmsr(0x832, TIMER_VECTOR as u64); // one-shot
                                       // SAFETY: RDTSC has no side effects.
    let start = unsafe { core::arch::x86_64::_rdtsc() };
    for i in 0..count {
        wrmsr(0x838, 1);
        // Wait for this round's interrupt; `sti; hlt` cannot miss it (STI's shadow).
        while TIMER_TICKS.load(Ordering::SeqCst) <= i {
            // SAFETY: halts until the timer interrupt, whose handler returns here.
            unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
        }
    }
    // SAFETY: as above.
    let ticks = unsafe { core::arch::x86_64::_rdtsc() } - start;
    report!(
        "{{\"event\":\"timer_loop\",\"count\":{count},\"ticks\":{ticks},\"per_round_trip\":{}}}",
        ticks / count.max(1)
    );
    exit(SUCCESS)
}

/// `"ranges"` of the memmap report.
fn ranges(map: &[MemRange]) -> String {
    let mut out = String::new();
    for (index, r) in map.iter().enumerate() {
        let sep = if index == 0 { "" } else { "," };
        let (base, size, kind) = (r.base, r.size, r.kind);
        let _ = write!(
            out,
            "{sep}{{\"base\":{base},\"size\":{size},\"type\":{kind}}}"
        );
    }
    out
}

/// Read a u64 from `probe=` (default: 1 GiB above the top of RAM, 2 MiB aligned), which the
/// hypervisor must refuse; under plain QEMU unbacked memory reads as all-ones and we return.
fn probe(map: &[MemRange], requested: Option<&str>) -> ! {
    let top = map
        .iter()
        .filter(|r| r.kind == RAM)
        .map(MemRange::end)
        .max()
        .unwrap_or(0);
    let address = match requested {
        None => (top + GIB).next_multiple_of(TWO_MIB),
        Some(text) => match parse_number(text) {
            Some(address) if address % 8 == 0 => address,
            _ => {
                report!(
                    "{{\"event\":\"probe\",\"error\":{}}}",
                    Json("probe= needs an 8-byte aligned number")
                );
                exit(FAILURE)
            }
        },
    };
    report!("{{\"event\":\"probe\",\"address\":{address}}}");
    if let Err(message) = map_identity(address, address + 8) {
        report!("{{\"event\":\"probe\",\"error\":{}}}", Json(message));
        exit(FAILURE)
    }
    let value: u64;
    // SAFETY: the address is identity mapped and aligned; what backs it (nothing, if the
    // hypervisor is right) is the point of the test, and the guest uses nothing there.
    unsafe {
        core::arch::asm!("mov {}, [{}]", out(reg) value, in(reg) address, options(nostack, readonly));
    }
    report!("{{\"event\":\"probe_returned\",\"value\":{value}}}");
    exit(PROBE_RETURNED)
}

/// `0x`-prefixed hex or decimal.
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    report!(
        "{{\"event\":\"panic\",\"message\":{}}}",
        Json(info.message())
    );
    exit(PANICKED)
}
