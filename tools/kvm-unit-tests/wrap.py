#!/usr/bin/env python3
"""Wraps one of kvm-unit-tests' x86 tests (its ELF64 `x86/NAME.elf`, unmodified) as a PVH ELF
numavisor can run in a partition: the test's loadable segments as they are, plus the stub of
pvh-stub.S at STUB_AT (entered through a Xen PHYS32_ENTRY note), which hands the test the
multiboot information it expects and `ENV` as its environment module (kvm-unit-tests reads
NR_CPUS, MEMSIZE, MEMLIMIT and TEST_DEVICE there before it asks fw_cfg, which a partition
lacks). Usage: wrap.py TEST.elf OUT.elf 'NR_CPUS=2\\nTEST_DEVICE=0\\n'"""
import os
import struct
import subprocess
import sys
import tempfile

STUB_AT = 0x200000
HERE = os.path.dirname(os.path.abspath(__file__))


def load_segments(elf):
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "not an ELF64 file"
    entry, phoff = struct.unpack_from("<QQ", elf, 24)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    segments = []
    for i in range(phnum):
        p_type, _, offset, _, paddr, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", elf, phoff + i * phentsize)
        if p_type == 1:
            segments.append((paddr, elf[offset:offset + filesz], memsz))
    return entry, segments


def assemble_stub(entry, environment):
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "env.txt"), "wb") as f:
            f.write(environment)
        obj, binary = os.path.join(work, "stub.o"), os.path.join(work, "stub.bin")
        subprocess.run(["as", "--32", f"--defsym=ENTRY={entry}", "-I", work,
                        os.path.join(HERE, "pvh-stub.S"), "-o", obj], check=True)
        subprocess.run(["ld", "-m", "elf_i386", f"-Ttext={STUB_AT:#x}", "--oformat", "binary",
                        "-o", binary, obj], check=True)
        with open(binary, "rb") as f:
            return f.read()


def pvh_elf(segments, entry):
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", entry)
    headers = len(segments) + 1
    data_at = 64 + 56 * headers
    phdrs, body = b"", b""
    for paddr, data, memsz in segments:
        offset = data_at + len(body)
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, offset, paddr, paddr, len(data), memsz, 16)
        body += data + b"\0" * (-len(data) % 16)
    offset = data_at + len(body)
    phdrs += struct.pack("<IIQQQQQQ", 4, 4, offset, 0, 0, len(note), len(note), 4)
    body += note
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, entry, 64, 0, 0, 64, 56, headers, 0, 0, 0)
    return header + phdrs + body


def main():
    test, out, environment = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(test, "rb") as f:
        entry, segments = load_segments(f.read())
    stub = assemble_stub(entry, environment.encode().decode("unicode_escape").encode())
    with open(out, "wb") as f:
        f.write(pvh_elf([(STUB_AT, stub, len(stub))] + segments, STUB_AT))


if __name__ == "__main__":
    main()
