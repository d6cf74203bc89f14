//! The zero-on-map probe (`docs/dynamic-memory.md`): can a guest read through its own balloon
//! what another partition, or itself, left in host memory?
//!
//! `mode=fill` is the victim: it writes [`FILL_PATTERN`] over all its free RAM (the memory
//! map's RAM less its image, boot structures and the legacy hole), prints `fill` and exits,
//! so its pages go back to the node's free memory carrying the pattern.
//!
//! `mode=hostile probe=balloon-scrub [neighbour=ID] [rounds=N] [pages=N] [wait_polls=N]` is
//! the scavenger. With its own virtio balloon ([`crate::virtio_balloon`]), each round it
//! tags every word of up to `pages` free pages of its RAM (default 6144: 24 MiB) with its
//! address, inflates them all, checks with hypercall 6 that the hypervisor holds them,
//! deflates them all and checks every byte of every page it got back: each must read zero.
//! Before the first deflation it waits until partition `neighbour` (its child in the layout:
//! a stopped partition is invalid-partition-id to hypercall 5) has stopped, polling at most
//! `wait_polls` times, so the victim's pages are free memory by then. It prints one `scrub`
//! event (pages checked, pages with any non-zero byte, how many of those carried its own tag
//! or the victim's pattern, the first non-zero word) and `hostile_done` with exit status 0
//! when no page was dirty, else status 1. A balloon or hypercall refusal prints
//! `{"event":"scrub","error":...}` and exits 1: a probe that could not look never passes.

use alloc::string::String;
use alloc::vec::Vec;

use numavisor_policy::hypercall::abi::{Status, ALL_NODES, PARTITION_SELF};

use crate::console::{exit, report, Json};
use crate::hypercalls::{call, status};
use crate::start_info::MemRange;
use crate::virtio_balloon::{Balloon, DEFLATE, INFLATE};

/// What `mode=fill` writes in every word.
pub const FILL_PATTERN: u64 = 0xD1D1_D1D1_D1D1_D1D1;
/// The scavenger's own tag: word at address `a` holds `OWN_TAG | a`.
const OWN_TAG: u64 = 0x5CA7_0000_0000_0000;
const PAGE: u64 = 4096;
/// Hypercall codes: get balance, get memory info (`docs/hypercalls.md`).
const GET_BALANCE: u64 = 5;
const GET_MEMORY_INFO: u64 = 6;

/// `mode=fill`: [`FILL_PATTERN`] over all free RAM, then exit 0.
pub fn fill(map: &[MemRange], excluded: &[(u64, u64)]) -> ! {
    let mut bytes = 0;
    for (start, end) in crate::ram_test::pieces(map, excluded) {
        let words = (end - start) / 8;
        // SAFETY: `[start, end)` is 8-byte aligned, identity-mapped RAM that neither the image
        // nor a boot structure occupies (`ram_test::pieces`): nothing else uses it.
        unsafe {
            core::arch::asm!("rep stosq", inout("rdi") start => _, inout("rcx") words => _,
                in("rax") FILL_PATTERN, options(nostack, preserves_flags));
        }
        bytes += end - start;
    }
    report!("{{\"event\":\"fill\",\"bytes\":{bytes},\"pattern\":{FILL_PATTERN}}}");
    exit(0)
}

/// What the scan of the deflated pages found.
#[derive(Default)]
struct Findings {
    pages: u64,
    dirty: u64,
    own: u64,
    neighbour: u64,
    first: Option<(u64, u64)>,
    dirty_by_round: Vec<u64>,
}

/// The scavenger (see the module note); `option` reads the command line.
pub fn scavenge(
    map: &[MemRange],
    excluded: &[(u64, u64)],
    option: &dyn Fn(&str) -> Option<u64>,
) -> ! {
    let rounds = option("rounds").unwrap_or(3).max(1);
    let limit = option("pages").unwrap_or(6144);
    let gpas: Vec<u64> = free_pages(map, excluded).take(limit as usize).collect();
    let mut findings = Findings::default();
    let waited = match sweep(&gpas, rounds, option, &mut findings) {
        Ok(waited) => waited,
        Err(message) => {
            report!(
                "{{\"event\":\"scrub\",\"error\":{},\"pages\":{}}}",
                Json(message),
                findings.pages
            );
            exit(1)
        }
    };
    let first = findings.first.map_or(String::from("null"), |(gpa, word)| {
        alloc::format!("{{\"gpa\":{gpa},\"word\":{word}}}")
    });
    let by_round: Vec<String> = findings
        .dirty_by_round
        .iter()
        .map(|n| alloc::format!("{n}"))
        .collect();
    report!(
        "{{\"event\":\"scrub\",\"rounds\":{rounds},\"pages\":{},\"dirty_pages\":{},\"own_pages\":{},\"neighbour_pages\":{},\"dirty_by_round\":[{}],\"waited_polls\":{waited},\"first_dirty\":{first}}}",
        findings.pages,
        findings.dirty,
        findings.own,
        findings.neighbour,
        by_round.join(","),
    );
    if findings.dirty != 0 {
        exit(1)
    }
    report!(
        "{{\"event\":\"hostile_done\",\"probe\":\"balloon-scrub\",\"count\":{}}}",
        findings.pages
    );
    exit(0)
}

/// Every whole 4 KiB page of free RAM at or above 1 MiB.
fn free_pages(map: &[MemRange], excluded: &[(u64, u64)]) -> impl Iterator<Item = u64> {
    crate::ram_test::pieces(map, excluded)
        .into_iter()
        .flat_map(|(start, end)| {
            (start.max(1 << 20).next_multiple_of(PAGE)..end / PAGE * PAGE).step_by(PAGE as usize)
        })
}

/// `rounds` of tag, inflate, (wait), deflate, scan; the polls the wait took.
fn sweep(
    gpas: &[u64],
    rounds: u64,
    option: &dyn Fn(&str) -> Option<u64>,
    findings: &mut Findings,
) -> Result<u64, &'static str> {
    if gpas.is_empty() {
        return Err("no free RAM to balloon");
    }
    let mut balloon = Balloon::init()?;
    let mut waited = 0;
    for round in 0..rounds {
        for &gpa in gpas {
            for word in (gpa..gpa + PAGE).step_by(8) {
                // SAFETY: a free page of the guest's own RAM (`free_pages`), identity mapped.
                unsafe { core::ptr::write_volatile(word as *mut u64, OWN_TAG | word) };
            }
        }
        balloon.send(INFLATE, gpas)?;
        if given_up()? != gpas.len() as u64 {
            return Err("after inflation the hypervisor does not hold every page sent");
        }
        if round == 0 {
            if let Some(id) = option("neighbour") {
                waited = wait_until_stopped(id, option("wait_polls").unwrap_or(1_000_000))?;
            }
        }
        balloon.send(DEFLATE, gpas)?;
        if given_up()? != 0 {
            return Err("after deflation the hypervisor still holds pages");
        }
        let before = findings.dirty;
        for &gpa in gpas {
            scan(gpa, findings);
        }
        findings.dirty_by_round.push(findings.dirty - before);
    }
    Ok(waited)
}

/// Checks every byte of the page at `gpa`: any non-zero word makes it dirty.
fn scan(gpa: u64, findings: &mut Findings) {
    findings.pages += 1;
    let dirty = (gpa..gpa + PAGE).step_by(8).find_map(|address| {
        // SAFETY: a page of the guest's own RAM, mapped again by the deflation just answered.
        let word = unsafe { core::ptr::read_volatile(address as *const u64) };
        (word != 0).then_some((address, word))
    });
    if let Some((address, word)) = dirty {
        findings.dirty += 1;
        if word & !0xFFFF_FFFF_FFFF == OWN_TAG {
            findings.own += 1;
        } else if word == FILL_PATTERN {
            findings.neighbour += 1;
        }
        findings.first.get_or_insert((address, word));
    }
}

/// Pages of vnode 0 the hypervisor holds as given up (hypercall 6 on itself).
fn given_up() -> Result<u64, &'static str> {
    let (code, _, given_up) = call(GET_MEMORY_INFO, PARTITION_SELF, 0, ALL_NODES);
    match Status::from_code(code) {
        Some(Status::Success) => Ok(given_up),
        _ => Err("get memory info on itself failed"),
    }
}

/// Polls hypercall 5 on partition `id` until it is invalid-partition-id (stopped), at most
/// `max_polls` times; the polls taken.
fn wait_until_stopped(id: u64, max_polls: u64) -> Result<u64, &'static str> {
    for polls in 1..=max_polls {
        let (code, _, _) = call(GET_BALANCE, id, ALL_NODES, 0);
        match Status::from_code(code) {
            Some(Status::InvalidPartitionId) => return Ok(polls),
            Some(Status::Success) => {}
            _ => {
                report!(
                    "{{\"event\":\"scrub\",\"neighbour_status\":{}}}",
                    Json(status(code))
                );
                return Err("the neighbour cannot be watched (not a child of the scavenger?)");
            }
        }
        for _ in 0..1000 {
            core::hint::spin_loop();
        }
    }
    Err("the neighbour did not stop within wait_polls")
}
