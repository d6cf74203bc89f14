//! `mode=hypercalls [target=ID]`: finds the hypervisor through CPUID 0x4000_0000/1, then
//! calls it (`docs/hypercalls.md`): its own partition ID, the partition list, the balance and
//! memory of partition `target` (a child, or not), a deposit into it, a misaligned list, an
//! unknown call code and partition ID 0; then it deposits four pages, reads the balance and
//! its own memory, withdraws two into their old GPAs, uses them, and tries a withdrawal into
//! a mapped page. Prints one `hypercalls` event with every status and result, then with
//! `touch=1` writes to a page it deposited (the hypervisor stops it: outside its memory),
//! else exits 0. (CPL 3 callers get #UD; the exit handler's host test covers that.)

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::arch::x86_64::__cpuid;

use numavisor_policy::hypercall::abi::{Status, ALL_NODES, LIST_ENTRY_BYTES, PARTITION_SELF};

use crate::console::{exit, report, Json};

/// One page, page aligned: the list buffer and the deposit list.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// VMMCALL with RAX, RBX, RCX, RDX; returns (RAX, RBX, RCX). On Intel the hypervisor
/// answers VMCALL the same way, and the two differ only in their last byte.
pub(crate) fn call(code: u64, rbx: u64, rcx: u64, rdx: u64) -> (u64, u64, u64) {
    let intel = __cpuid(0).ebx == u32::from_le_bytes(*b"Genu");
    let (rax, rbx_out, rcx_out);
    if intel {
        // SAFETY: VMCALL exits to the hypervisor, which changes only RAX, RBX and RCX (and
        // RIP past the instruction); rbx is saved around it because LLVM reserves it.
        unsafe {
            core::arch::asm!(
                "xchg {b}, rbx", "vmcall", "xchg {b}, rbx",
                b = inout(reg) rbx => rbx_out,
                inout("rax") code => rax, inout("rcx") rcx => rcx_out, in("rdx") rdx,
            )
        };
    } else {
        // SAFETY: as above, with VMMCALL.
        unsafe {
            core::arch::asm!(
                "xchg {b}, rbx", "vmmcall", "xchg {b}, rbx",
                b = inout(reg) rbx => rbx_out,
                inout("rax") code => rax, inout("rcx") rcx => rcx_out, in("rdx") rdx,
            )
        };
    }
    (rax, rbx_out, rcx_out)
}

pub(crate) fn status(code: u64) -> &'static str {
    Status::from_code(code).map_or("unknown", Status::name)
}

pub fn run(target: u64, touch_slot: bool) -> ! {
    let leaf0 = __cpuid(0x4000_0000);
    let mut signature = [0u8; 12];
    for (i, word) in [leaf0.ebx, leaf0.ecx, leaf0.edx].into_iter().enumerate() {
        signature[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    let signature: String = String::from_utf8_lossy(&signature)
        .trim_end_matches('\0')
        .into();
    let leaf1 = __cpuid(0x4000_0001);

    let (id_status, id, _) = call(1, 0, 0, 0);

    let buffer = Box::new(Page([0; 4096]));
    let at = buffer.0.as_ptr() as u64; // identity mapped: the GPA
    let (list_status, count, written) = call(2, at, 8, 0);
    let entries: Vec<(u64, u64)> = (0..written.min(8) as usize)
        .map(|i| {
            let entry = &buffer.0[i * LIST_ENTRY_BYTES as usize..];
            let word = |o: usize| u64::from_le_bytes(entry[o..o + 8].try_into().unwrap_or([0; 8]));
            (word(0), word(8))
        })
        .collect();
    let entries: Vec<String> = entries
        .iter()
        .map(|(id, parent)| alloc::format!("[{id},{parent}]"))
        .collect();

    let (balance_status, balance, _) = call(5, target, ALL_NODES, 0);
    let (self_status, self_balance, _) = call(5, PARTITION_SELF, ALL_NODES, 0);
    let (memory_status, memory, _) = call(6, target, 0, ALL_NODES);
    // A deposit of the list page itself (4 KiB aligned, the caller's own RAM).
    let mut list = Box::new(Page([0; 4096]));
    list.0[..8].copy_from_slice(&at.to_le_bytes());
    let (deposit_status, _, _) = call(3, target, list.0.as_ptr() as u64, 1);
    let (unaligned_status, _, _) = call(3, target, list.0.as_ptr() as u64 + 4, 1);
    let mut pages = Box::new(Pages([
        Page([0; 4096]),
        Page([0; 4096]),
        Page([0; 4096]),
        Page([0; 4096]),
    ]));
    let moves = move_pages(target, &mut list, &mut pages);
    let (bad_code_status, _, _) = call(0x7777, 0, 0, 0);
    let (bad_id_status, _, _) = call(5, 0, ALL_NODES, 0);

    report!(
        "{{\"event\":\"hypercalls\",\"signature\":{},\"max_leaf\":{},\"version\":{},\"features\":{},\"max_code\":{},\"id\":[{},{id}],\"list\":[{},{count},{written}],\"entries\":[{}],\"balance\":[{},{balance}],\"self_balance\":[{},{self_balance}],\"memory\":[{},{memory}],\"deposit\":{},\"unaligned\":{},\"bad_code\":{},\"bad_id\":{},{moves}}}",
        Json(signature.as_str()),
        leaf0.eax,
        leaf1.eax,
        leaf1.ebx,
        leaf1.ecx,
        Json(status(id_status)),
        Json(status(list_status)),
        entries.join(","),
        Json(status(balance_status)),
        Json(status(self_status)),
        Json(status(memory_status)),
        Json(status(deposit_status)),
        Json(status(unaligned_status)),
        Json(status(bad_code_status)),
        Json(status(bad_id_status)),
    );
    if touch_slot {
        // A page given up by the deposit: the hypervisor stops this partition here.
        // SAFETY: the guest's own (identity-mapped) heap page, still allocated.
        unsafe { core::ptr::write_volatile(pages.0[2].0.as_mut_ptr(), 1) };
    }
    exit(0)
}

/// Four pages of the caller's own RAM to move, page aligned.
struct Pages([Page; 4]);

/// Deposits the four pages of `PAGES` into `target`'s pool, reads the balance and memory,
/// withdraws two back (and uses them), and refuses a withdrawal into a mapped page: the
/// `"moves"` fields of the event.
fn move_pages(target: u64, list: &mut Page, pages: &mut Pages) -> String {
    let gpa = |i: usize| pages.0[i].0.as_ptr() as u64;
    let write_list = |list: &mut Page, gpas: &[u64]| {
        for (i, g) in gpas.iter().enumerate() {
            list.0[i * 8..i * 8 + 8].copy_from_slice(&g.to_le_bytes());
        }
        list.0.as_ptr() as u64
    };
    let all: Vec<u64> = (0..4).map(gpa).collect();
    let at = write_list(list, &all);
    let (deposit_status, deposited, _) = call(3, target, at, 4);
    let (balance_status, balance, from_parent) = call(5, target, ALL_NODES, 0);
    let (memory_status, mapped, given_up) = call(6, PARTITION_SELF, 0, ALL_NODES);
    let at = write_list(list, &all[..2]);
    let (withdraw_status, withdrawn, _) = call(4, target, at, 2);
    // The withdrawn pages are RAM again (other host pages, on the same node).
    for i in 0..2 {
        // SAFETY: the guest's own page, mapped again by the withdrawal just made.
        unsafe { core::ptr::write_volatile(pages.0[i].0.as_mut_ptr(), 0x5A) };
    }
    let reused = (0..2).all(|i| pages.0[i].0[0] == 0x5A);
    let (again_status, _, _) = call(4, target, at, 1);
    let (after_status, after, after_parent) = call(5, target, ALL_NODES, 0);
    // Memory targets for the target's vnode 0: one within its bounds, one below its
    // minimum (clamped), one for a vnode it lacks, a ragged one, and back to the policy.
    let targets: Vec<String> = [
        (0, 12 << 20),
        (0, 4 << 20),
        (1, 8 << 20),
        (0, 4097),
        (0, u64::MAX),
    ]
    .iter()
    .map(|&(vnode, bytes)| {
        let (status_code, set, _) = call(7, target, vnode, bytes);
        alloc::format!("[{},{set}]", Json(status(status_code)))
    })
    .collect();
    alloc::format!(
        "\"moves\":{{\"deposit\":[{},{deposited}],\"balance\":[{},{balance},{from_parent}],\"memory\":[{},{mapped},{given_up}],\"withdraw\":[{},{withdrawn}],\"reused\":{reused},\"withdraw_mapped\":{},\"after\":[{},{after},{after_parent}],\"targets\":[{}]}}",
        Json(status(deposit_status)),
        Json(status(balance_status)),
        Json(status(memory_status)),
        Json(status(withdraw_status)),
        Json(status(again_status)),
        Json(status(after_status)),
        targets.join(","),
    )
}
