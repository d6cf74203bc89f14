#!/bin/sh
# kvm-unit-tests' x86 tests in a numavisor partition beside the same binaries on plain QEMU
# TCG (issue 21). Not part of the test gate: kvm-unit-tests is not in the package registries.
# Usage: tools/kvm-unit-tests/run.sh KVM_UNIT_TESTS_DIR [TEST...]
#   KVM_UNIT_TESTS_DIR  a checkout of https://gitlab.com/kvm-unit-tests/kvm-unit-tests (it
#                       is configured and built here: ./configure --arch=x86_64; make)
#   TEST                among xapic x2apic ioapic msr tsc eventinj smptest (default: all)
# Each test runs once under numavisor (a partition of the test's vCPUs and 256 MiB on node 0
# of the two-nodes topology, what kvm-unit-tests gives a guest; its environment says NR_CPUS
# and TEST_DEVICE=0, as a partition has neither fw_cfg nor pc-testdev) and once on plain QEMU
# TCG as kvm-unit-tests' own runner starts it, with fw_cfg and pc-testdev. Their logs go to
# target/kvm-unit-tests/; the last lines printed compare their PASS/FAIL/SKIP lines.
# EMULATOR=bochs runs the numavisor side under Bochs (VMX, an Intel vCPU) instead of QEMU.
set -eu
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 KVM_UNIT_TESTS_DIR [TEST...]" >&2
    exit 2
fi
source_dir=$(cd "$1" && pwd); shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/kvm-unit-tests"
mkdir -p "$out"
tests=${*:-xapic x2apic ioapic msr tsc eventinj smptest}

[ -f "$source_dir/config.mak" ] || (cd "$source_dir" && ./configure --arch=x86_64 >/dev/null)
(cd "$source_dir" && make -s -j2 >/dev/null)

# The test's file, and the CPU model and vCPU count kvm-unit-tests' unittests.cfg gives it
# (ioapic asks for 4 vCPUs; it gets 2, the CPUs node 0 of two-nodes has for a partition).
params() {
    case $1 in
        xapic) echo "apic qemu64,-x2apic,+tsc-deadline 2" ;;
        x2apic) echo "apic qemu64,+x2apic,+tsc-deadline 2" ;;
        ioapic) echo "ioapic qemu64,+x2apic 2" ;;
        msr) echo "msr max,vendor=GenuineIntel 1" ;;
        tsc) echo "tsc max 1" ;;
        eventinj) echo "eventinj max 1" ;;
        smptest) echo "smptest max 2" ;;
        *) echo "unknown test $1" >&2; exit 2 ;;
    esac
}

for test in $tests; do
    set -- $(params "$test")
    file=$1 cpu_model=$2 cpus=$3
    python3 "$here/wrap.py" "$source_dir/x86/$file.elf" "$out/$test-pvh.elf" \
        "NR_CPUS=$cpus\nTEST_DEVICE=0\n"
    cat >"$out/$test.toml" <<LAYOUT
[[partition]]
name = "$test"
image = "$out/$test-pvh.elf"
command_line = ""
vcpus = [{ node = 0, count = $cpus }]
memory = [{ size = "256M", node = 0 }]
pool = "512K"
on_fault = "stop"
on_shutdown = "stop"
time_limit = "300s"
LAYOUT
    (cd "$root" && timeout 900 cargo xtask run --emulator "${EMULATOR:-qemu}" \
        --topology two-nodes --layout "$out/$test.toml" >"$out/$test.numavisor.log" 2>&1) || true
    timeout 300 qemu-system-x86_64 -machine accel=tcg -cpu "$cpu_model" -smp "$cpus" -m 256 \
        -nodefaults -display none -serial stdio -no-reboot -device pc-testdev \
        -device isa-debug-exit,iobase=0xf4,iosize=0x4 -device pci-testdev \
        -kernel "$source_dir/x86/$file.flat" >"$out/$test.qemu.log" 2>&1 || true
done

for test in $tests; do
    echo "== $test"
    grep -E "^\[$test\] (PASS|FAIL|SKIP|XFAIL|SUMMARY)" "$out/$test.numavisor.log" |
        sed "s/^\[$test\] //" | sort >"$out/$test.numavisor.results" || true
    grep -E "^(PASS|FAIL|SKIP|XFAIL|SUMMARY)" "$out/$test.qemu.log" | tr -d '\r' |
        sort >"$out/$test.qemu.results" || true
    grep -E "stopped:|fault|refused" "$out/$test.numavisor.log" | tail -2 || true
    diff "$out/$test.qemu.results" "$out/$test.numavisor.results" |
        sed -e 's/^</  plain QEMU only:/' -e 's/^>/  numavisor only: /' | grep -v '^[0-9-]' || true
    grep SUMMARY "$out/$test.qemu.results" | sed 's/^/  plain QEMU: /' || true
    grep SUMMARY "$out/$test.numavisor.results" | sed 's/^/  numavisor:  /' || true
done
