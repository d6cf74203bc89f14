#!/bin/sh
# Captures QEMU's own SRAT and SLIT for a 2-node, 4-CPU q35 guest, for the comparison
# test in ../../qemu_compare.rs. Reproduce with:  sh capture.sh   (needs qemu-system-x86_64
# and python3). q35 in QEMU 7.2 refuses `-numa node,mem=`, hence the memory backends. QEMU boots SeaBIOS only (no disk, no kernel); SeaBIOS copies the tables QEMU
# built into guest RAM, then we dump guest RAM through the monitor, find the RSDP in
# 0xE0000..0xFFFFF and follow RSDT -> SRAT / SLIT.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

qemu-system-x86_64 --version | head -n 1 > "$here/qemu-version.txt"

# `sleep` gives SeaBIOS time to build the tables before the dump; every command is
# under `timeout` so a stuck QEMU cannot hang the script.
{
    sleep 3
    # Quote the file name: the monitor reads an unquoted "/" as a division.
    echo "pmemsave 0 0x20000000 \"$work/ram.bin\""
    sleep 3
    echo "quit"
} | timeout 60 qemu-system-x86_64 \
    -machine q35 -accel tcg -display none -serial none -nodefaults \
    -m 512M -smp 4 \
    -object memory-backend-ram,id=m0,size=256M \
    -object memory-backend-ram,id=m1,size=256M \
    -numa node,nodeid=0,cpus=0-1,memdev=m0 \
    -numa node,nodeid=1,cpus=2-3,memdev=m1 \
    -numa dist,src=0,dst=1,val=21 \
    -monitor stdio > "$work/monitor.log"

python3 - "$work/ram.bin" "$here" <<'PY'
import struct, sys
ram = open(sys.argv[1], "rb").read()
out = sys.argv[2]
def csum_ok(b):
    return sum(b) % 256 == 0
rsdp = None
for off in range(0xE0000, 0x100000, 16):
    if ram[off:off + 8] == b"RSD PTR " and csum_ok(ram[off:off + 20]):
        rsdp = off
        break
assert rsdp is not None, "no RSDP in 0xE0000..0xFFFFF"
rev = ram[rsdp + 15]
rsdt = struct.unpack_from("<I", ram, rsdp + 16)[0]
assert ram[rsdt:rsdt + 4] == b"RSDT", "RSDT signature"
length = struct.unpack_from("<I", ram, rsdt + 4)[0]
entries = struct.unpack_from("<%dI" % ((length - 36) // 4), ram, rsdt + 36)
found = {}
for addr in entries:
    sig = ram[addr:addr + 4].decode()
    tlen = struct.unpack_from("<I", ram, addr + 4)[0]
    table = ram[addr:addr + tlen]
    assert csum_ok(table), sig + " checksum"
    found[sig] = table
print("RSDP at %#x (revision %d), RSDT at %#x: %s" % (rsdp, rev, rsdt, " ".join(found)))
for sig in ("SRAT", "SLIT"):
    open("%s/%s.bin" % (out, sig.lower()), "wb").write(found[sig])
PY
