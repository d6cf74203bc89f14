/* The PVH entry of a wrapped kvm-unit-tests image (wrap.py): kvm-unit-tests' x86 tests are
   multiboot images; numavisor starts a partition the PVH way (32-bit protected mode, flat
   segments, paging off, EBX = hvm_start_info). This stub builds the multiboot information
   they read (memory above 1 MiB, the command line, one module: their environment) and enters
   them as a multiboot loader would (EAX = 0x2BADB002, EBX = the information). ENTRY is the
   test's own entry point, given with --defsym. */
    .code32
    .text
    .globl _start
_start:
    mov 0x18(%ebx), %eax            /* hvm_start_info.cmdline_paddr (below 4 GiB) */
    mov %eax, mbi_cmdline
    mov 0x28(%ebx), %esi            /* memmap_paddr */
    mov 0x30(%ebx), %ecx            /* memmap_entries */
1:  test %ecx, %ecx
    jz 3f
    cmpl $1, 16(%esi)               /* usable RAM */
    jne 2f
    mov (%esi), %eax
    cmp $0x100000, %eax
    ja 2f
    add 8(%esi), %eax               /* its end, if it holds 1 MiB */
    cmp $0x100000, %eax
    jbe 2f
    sub $0x100000, %eax
    shr $10, %eax
    mov %eax, mbi_mem_upper         /* KiB from 1 MiB to its end */
2:  add $24, %esi
    dec %ecx
    jmp 1b
3:  mov $0x2BADB002, %eax
    mov $mbi, %ebx
    mov $ENTRY, %ecx
    jmp *%ecx

    .balign 16
mbi:
    .long 0x0D                      /* flags: mem_*, cmdline, mods */
    .long 640                       /* mem_lower (KiB) */
mbi_mem_upper:
    .long 0
    .long 0                         /* boot_device */
mbi_cmdline:
    .long 0
    .long 1                         /* mods_count */
    .long module                    /* mods_addr */
    .fill 17, 4, 0                  /* syms, mmap, drives, config, loader, apm, vbe */
    .balign 16
module:
    .long environment, environment_end, 0, 0
environment:
    .incbin "env.txt"
environment_end:
    .byte 0
