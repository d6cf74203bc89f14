#!/usr/bin/env python3
"""Capture the DSDT QEMU builds for q35 with a NUMA-bound PCIe expander bridge (pxb-pcie on
node 1, bus 0x40), for the AML reader's tests (`../tests.rs`).

Reuses `firmware/policy/tests/data/capture.py`: boots SeaBIOS under TCG, reads the tables over
QMP, and follows the FADT's DSDT pointer (ACPI 6.5 §5.2.9, offset 40). Writes
`qemu72-q35-pxb-DSDT.aml`, the whole table with its 36-byte header (what `iasl -d` reads).
Run from anywhere: `python3 capture_dsdt.py`.
"""
import os, struct, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../../tests/data"))
import capture  # noqa: E402

ARGS = ["-m", "512M", "-smp", "2"] + capture.memdevs("256M", "256M") + [
    "-numa", "node,nodeid=0,cpus=0,memdev=m0",
    "-numa", "node,nodeid=1,cpus=1,memdev=m1",
    "-device", "pxb-pcie,id=pxb1,bus_nr=0x40,numa_node=1,bus=pcie.0",
    "-device", "pcie-root-port,id=rp1,bus=pxb1,chassis=1"]

def main():
    with tempfile.TemporaryDirectory() as out:
        capture.HERE, capture.PREFIX = out, "x"
        capture.capture("pxb", ARGS)
        fadt = open(os.path.join(out, "x-pxb-FACP.bin"), "rb").read()
    dsdt_addr = struct.unpack_from("<I", fadt, 40)[0]
    # A second boot, to read the DSDT itself (capture() reads only what the root lists).
    read_dsdt(dsdt_addr)

def read_dsdt(addr):
    import subprocess, time
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        cmd = ["timeout", "60", capture.QEMU, "-nodefaults", "-no-user-config", "-display",
               "none", "-accel", "tcg", "-machine", "q35"] + ARGS + [
               "-qmp", f"unix:{sock},server=on,wait=off"]
        proc = subprocess.Popen(cmd)
        try:
            qmp = capture.Qmp(sock)
            for _ in range(300):
                if capture.find_rsdp(qmp, tmp, 0xE0000, 0x20000, 0) is not None:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            qmp.cmd("stop")
            hdr = capture.read(qmp, tmp, addr, 36)
            assert hdr[:4] == b"DSDT", hdr[:4]
            data = capture.read(qmp, tmp, addr, struct.unpack_from("<I", hdr, 4)[0])
            qmp.cmd("quit")
        finally:
            proc.wait(timeout=70)
    assert sum(data) & 0xFF == 0, "DSDT checksum"
    with open(os.path.join(HERE, "qemu72-q35-pxb-DSDT.aml"), "wb") as f:
        f.write(data)
    print("DSDT", hex(addr), len(data))

if __name__ == "__main__":
    main()
