#!/usr/bin/env python3
"""Capture QEMU's own ACPI tables for numavisor-policy's host tests.

Boots QEMU (SeaBIOS, no boot device, TCG) for each topology below, waits until SeaBIOS has
installed the ACPI tables, then reads guest memory over QMP (`pmemsave`): the RSDP from the
BIOS area 0xE0000..0xFFFFF (OVMF: anywhere in RAM), the RSDT/XSDT it points at, and every
table the root lists, and the DSDT the FADT points at (X_DSDT, else DSDT; the FACS is left out).
Files written, per topology NAME:

    qemu72-NAME-RSDP.bin, qemu72-NAME-RSDT.bin, qemu72-NAME-<SIG>.bin, qemu72-NAME.addr

`.addr` lists "SIG ADDRESS LENGTH" lines (hex), so tests can put every table back at the
physical address QEMU used. Run from anywhere: `python3 capture.py [NAME...]`.
Every QEMU run is under `timeout`.
"""
import json, os, socket, struct, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
QEMU = "qemu-system-x86_64"
PREFIX = "qemu72"

def memdevs(*sizes):
    args = []
    for i, s in enumerate(sizes):
        args += ["-object", f"memory-backend-ram,size={s},id=m{i}"]
    return args

TOPOLOGIES = {
    # No -numa at all: no SRAT, no SLIT.
    "q35-nonuma": ["-m", "512M", "-smp", "2"],
    # Two nodes, symmetric distance 21.
    "q35-2node": ["-m", "512M", "-smp", "4"] + memdevs("256M", "256M") + [
        "-numa", "node,nodeid=0,cpus=0-1,memdev=m0",
        "-numa", "node,nodeid=1,cpus=2-3,memdev=m1",
        "-numa", "dist,src=0,dst=1,val=21"],
    # Four nodes, asymmetric SLIT.
    "q35-4node-asym": ["-m", "1G", "-smp", "4"] + memdevs("256M", "256M", "256M", "256M") + [
        "-numa", "node,nodeid=0,cpus=0,memdev=m0",
        "-numa", "node,nodeid=1,cpus=1,memdev=m1",
        "-numa", "node,nodeid=2,cpus=2,memdev=m2",
        "-numa", "node,nodeid=3,cpus=3,memdev=m3",
        "-numa", "dist,src=0,dst=1,val=15", "-numa", "dist,src=1,dst=0,val=25",
        "-numa", "dist,src=0,dst=2,val=20", "-numa", "dist,src=2,dst=0,val=30",
        "-numa", "dist,src=0,dst=3,val=40", "-numa", "dist,src=3,dst=0,val=40",
        "-numa", "dist,src=1,dst=2,val=18", "-numa", "dist,src=2,dst=1,val=19",
        "-numa", "dist,src=1,dst=3,val=35", "-numa", "dist,src=3,dst=1,val=36",
        "-numa", "dist,src=2,dst=3,val=22", "-numa", "dist,src=3,dst=2,val=23"],
    # Node 1 has CPUs but no memory.
    "q35-memoryless": ["-m", "512M", "-smp", "4"] + memdevs("512M") + [
        "-numa", "node,nodeid=0,cpus=0-1,memdev=m0",
        "-numa", "node,nodeid=1,cpus=2-3",
        "-numa", "dist,src=0,dst=1,val=31"],
    # Node 1 has memory but no CPUs; 6 GiB so RAM sits above 4 GiB.
    "q35-6g-cpuless": ["-m", "6G", "-smp", "2"] + memdevs("3G", "3G") + [
        "-numa", "node,nodeid=0,cpus=0-1,memdev=m0",
        "-numa", "node,nodeid=1,memdev=m1",
        "-numa", "dist,src=0,dst=1,val=28"],
    # HMAT (revision 2 under QEMU 7.2), after QEMU's docs/system example.
    "q35-hmat": ["-machine", "hmat=on", "-m", "2G", "-smp", "2,sockets=2,maxcpus=2"]
        + memdevs("1G", "1G") + [
        "-numa", "node,nodeid=0,memdev=m0",
        "-numa", "node,nodeid=1,memdev=m1,initiator=0",
        "-numa", "cpu,node-id=0,socket-id=0",
        "-numa", "cpu,node-id=0,socket-id=1",
        "-numa", "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=5",
        "-numa", "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=200M",
        "-numa", "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=10",
        "-numa", "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=100M",
        "-numa", "hmat-cache,node-id=0,size=10K,level=1,associativity=direct,policy=write-back,line=8",
        "-numa", "hmat-cache,node-id=1,size=10K,level=1,associativity=direct,policy=write-back,line=8"],
    # OVMF instead of SeaBIOS: RSDP revision 2 with an XSDT (64-bit entries).
    "ovmf-q35-2node": ["-bios", "/usr/share/ovmf/OVMF.fd", "-m", "512M", "-smp", "2"]
        + memdevs("256M", "256M") + [
        "-numa", "node,nodeid=0,cpus=0,memdev=m0",
        "-numa", "node,nodeid=1,cpus=1,memdev=m1",
        "-numa", "dist,src=0,dst=1,val=21"],
    # PCI for passthrough: VT-d (DMAR) and a PCIe expander bridge on node 1 (_PXM 1 in the
    # DSDT) with a root port and an NVMe controller behind it.
    "q35-vtd-pxb": ["-m", "512M", "-smp", "2"] + memdevs("256M", "256M") + [
        "-numa", "node,nodeid=0,cpus=0,memdev=m0",
        "-numa", "node,nodeid=1,cpus=1,memdev=m1",
        "-device", "intel-iommu,intremap=on,aw-bits=48,caching-mode=on",
        "-device", "pxb-pcie,bus_nr=0x40,numa_node=1,id=pxb1",
        "-device", "pcie-root-port,bus=pxb1,id=rp1,chassis=1",
        "-device", "nvme,bus=rp1,serial=nv0"],
    # AMD-Vi (IVRS) instead.
    "q35-amdvi": ["-m", "512M", "-smp", "2"] + memdevs("256M", "256M") + [
        "-numa", "node,nodeid=0,cpus=0,memdev=m0",
        "-numa", "node,nodeid=1,cpus=1,memdev=m1",
        "-device", "amd-iommu",
        "-device", "pxb-pcie,bus_nr=0x20,numa_node=1,id=pxb1",
        "-device", "pcie-root-port,bus=pxb1,id=rp1,chassis=1",
        "-device", "nvme,bus=rp1,serial=nv0"],
}

class Qmp:
    def __init__(self, path):
        for _ in range(100):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("QMP socket never appeared")
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"{name}: {reply['error']}")

def read(qmp, tmp, addr, size):
    path = os.path.join(tmp, "dump.bin")
    qmp.cmd("pmemsave", val=addr, size=size, filename=path)
    with open(path, "rb") as f:
        return f.read()

def find_rsdp(qmp, tmp, base, size, min_revision):
    # OVMF's RAM also holds QEMU's own revision-0 RSDP blob (fw_cfg linker/loader), which it
    # copies into the tables it installs: ask for revision >= 2 there.
    area = read(qmp, tmp, base, size)
    off = area.find(b"RSD PTR ")
    while off >= 0:
        # (16-byte alignment is a BIOS-area search rule; EFI firmware need not follow it)
        if sum(area[off:off + 20]) & 0xFF == 0 and area[off + 15] >= min_revision:
            return base + off
        off = area.find(b"RSD PTR ", off + 1)
    return None

def capture(name, extra):
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        machine = ["-machine", "q35"]
        if extra[:1] == ["-machine"]:
            machine = ["-machine", "q35," + extra[1]]
            extra = extra[2:]
        cmd = ["timeout", "60", QEMU, "-nodefaults", "-no-user-config", "-display", "none",
               "-accel", "tcg"] + machine + extra + ["-qmp", f"unix:{sock},server=on,wait=off"]
        proc = subprocess.Popen(cmd)
        try:
            qmp = Qmp(sock)
            rsdp_addr = None
            # SeaBIOS puts the RSDP in the BIOS area; OVMF anywhere in RAM (scan all 512M).
            area = (0, 512 << 20, 2) if name.startswith("ovmf") else (0xE0000, 0x20000, 0)
            for _ in range(300):  # the firmware needs a moment under TCG
                rsdp_addr = find_rsdp(qmp, tmp, *area)
                if rsdp_addr is not None:
                    break
                time.sleep(0.1 if area[0] else 1.0)
            if rsdp_addr is None:
                raise RuntimeError(f"{name}: no RSDP found")
            time.sleep(0.5)  # let SeaBIOS finish writing
            qmp.cmd("stop")
            rsdp = read(qmp, tmp, rsdp_addr, 36)
            rev = rsdp[15]
            rsdp = rsdp[:20] if rev < 2 else rsdp[:struct.unpack_from("<I", rsdp, 20)[0]]
            rsdt_addr = struct.unpack_from("<I", rsdp, 16)[0]
            files = {"RSDP": (rsdp_addr, rsdp)}
            if rsdt_addr:
                hdr = read(qmp, tmp, rsdt_addr, 36)
                files["RSDT"] = (rsdt_addr, read(qmp, tmp, rsdt_addr, struct.unpack_from("<I", hdr, 4)[0]))
            root, width, fmt = "RSDT", 4, "<I"
            if rev >= 2 and struct.unpack_from("<Q", rsdp, 24)[0]:
                xsdt_addr = struct.unpack_from("<Q", rsdp, 24)[0]
                hdr = read(qmp, tmp, xsdt_addr, 36)
                files["XSDT"] = (xsdt_addr, read(qmp, tmp, xsdt_addr, struct.unpack_from("<I", hdr, 4)[0]))
                root, width, fmt = "XSDT", 8, "<Q"
            rsdt = files[root][1]
            for i in range(36, len(rsdt), width):
                addr = struct.unpack_from(fmt, rsdt, i)[0]
                hdr = read(qmp, tmp, addr, 36)
                sig = hdr[:4].decode("ascii", "replace")
                files[sig] = (addr, read(qmp, tmp, addr, struct.unpack_from("<I", hdr, 4)[0]))
            if "FACP" in files:
                fadt = files["FACP"][1]
                dsdt = struct.unpack_from("<Q", fadt, 140)[0] if len(fadt) >= 148 else 0
                dsdt = dsdt or struct.unpack_from("<I", fadt, 40)[0]
                if dsdt:
                    hdr = read(qmp, tmp, dsdt, 36)
                    files["DSDT"] = (dsdt, read(qmp, tmp, dsdt, struct.unpack_from("<I", hdr, 4)[0]))
            qmp.cmd("quit")
        finally:
            proc.wait(timeout=70)
    lines = []
    for sig, (addr, data) in files.items():
        with open(os.path.join(HERE, f"{PREFIX}-{name}-{sig}.bin"), "wb") as f:
            f.write(data)
        lines.append(f"{sig} {addr:#x} {len(data):#x}")
    with open(os.path.join(HERE, f"{PREFIX}-{name}.addr"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(name, " ".join(files))

if __name__ == "__main__":
    for name in sys.argv[1:] or TOPOLOGIES:
        capture(name, TOPOLOGIES[name])
