//! Leaving UEFI's long mode for the image's 32-bit entry.
//!
//! From 64-bit code at ring 0 (Intel SDM vol. 3A §9.8.5.4): far return to a 32-bit code
//! segment (compatibility mode), clear CR4.PCIDE (clearing CR0.PG with it set faults), clear
//! CR0.PG (which leaves IA-32e mode), then EFER and CR4, and jump to the entry with EAX = the
//! UEFI magic and EBX = the handoff block, the state the image's other 32-bit loaders leave.
//!
//! The code runs from a page below 4 GiB (EIP is 32 bits once paging is off) that the caller
//! allocated: it is copied there, so it is written position-independent, and its GDT and
//! stack share that page. The application's own image may lie anywhere.

use core::arch::global_asm;

use numavisor_policy::bootinfo::uefi::ENTRY_MAGIC;

/// Where the GDT lies in the page, after the code.
const GDT_OFFSET: usize = 0x800;
/// Where the GDT pointer lies in the page.
const GDTR_OFFSET: usize = 0x840;

/// Null, 64-bit code (0x08), flat data (0x10), flat 32-bit code (0x18).
const GDT: [u64; 4] = [
    0,
    0x00AF_9A00_0000_FFFF,
    0x00CF_9200_0000_FFFF,
    0x00CF_9A00_0000_FFFF,
];

global_asm!(
    r#"
    .pushsection .text.leave_uefi, "ax"
    .code64
    .global leave_uefi_start
leave_uefi_start:
    /* rdi = ELF entry, rsi = handoff block, rdx = this page (all below 4 GiB) */
    cli
    lgdt [rdx + {gdtr}]
    lea rsp, [rdx + 4096]
    push 0x18
    lea rax, [rip + 2f]
    push rax
    retfq
    .code32
2:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov eax, cr4
    and eax, 0xFFFDFFFF                 /* CR4.PCIDE off */
    mov cr4, eax
    mov eax, cr0
    and eax, 0x7FFFFFFF                 /* paging off: out of IA-32e mode */
    mov cr0, eax
    mov ecx, 0xC0000080
    xor eax, eax
    xor edx, edx
    wrmsr                               /* EFER = 0 */
    mov cr4, eax                        /* CR4 = 0 */
    mov eax, 0x11
    mov cr0, eax                        /* PE | ET: protected mode, caches on */
    mov ebx, esi
    mov eax, {magic}
    jmp edi
    .code64
    .global leave_uefi_end
leave_uefi_end:
    .popsection
"#,
    gdtr = const GDTR_OFFSET,
    magic = const ENTRY_MAGIC,
);

unsafe extern "C" {
    static leave_uefi_start: u8;
    static leave_uefi_end: u8;
}

/// Copies the code, GDT and GDT pointer into `page` and runs it: the image starts at `entry`
/// with the handoff block at `handoff`.
///
/// # Safety
/// Boot services are gone; `page` is a 4 KiB page of memory below 4 GiB that this application
/// owns and may execute; the image is placed, with its entry at `entry`; `handoff` (below
/// 4 GiB) holds the encoded block. Nothing of the firmware runs after this.
pub unsafe fn enter_image(entry: u64, handoff: u64, page: u64) -> ! {
    let start = core::ptr::addr_of!(leave_uefi_start);
    let end = core::ptr::addr_of!(leave_uefi_end);
    let code_bytes = end as usize - start as usize;
    assert!(code_bytes <= GDT_OFFSET, "the exit code outgrew its page");
    let mut gdtr = [0u8; 10];
    gdtr[..2].copy_from_slice(&(size_of_val(&GDT) as u16 - 1).to_le_bytes());
    gdtr[2..].copy_from_slice(&(page + GDT_OFFSET as u64).to_le_bytes());
    let page_ptr = page as *mut u8;
    // SAFETY: per the contract, `page` is ours, 4 KiB, identity mapped and executable; the
    // code, GDT (at 0x800) and GDT pointer (at 0x840) fit in it, below the stack at its end.
    unsafe {
        core::ptr::copy_nonoverlapping(start, page_ptr, code_bytes);
        core::ptr::copy_nonoverlapping(
            GDT.as_ptr().cast::<u8>(),
            page_ptr.add(GDT_OFFSET),
            size_of_val(&GDT),
        );
        core::ptr::copy_nonoverlapping(gdtr.as_ptr(), page_ptr.add(GDTR_OFFSET), gdtr.len());
        let run: extern "sysv64" fn(u64, u64, u64) -> ! = core::mem::transmute(page);
        run(entry, handoff, page)
    }
}
