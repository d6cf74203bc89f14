#!/bin/sh
# numavisor's Linux test guest: /init of the initramfs `cargo xtask` builds (busybox sh).
#
# Every line meant for the host starts with "@guest " and holds one JSON object, so tests can
# pick them out of the serial console. What the guest does after reporting is chosen on the
# kernel command line with nv.test=WHAT[,WHAT...], run in order:
#   fill      fill a tmpfs with most of MemAvailable      -> {"event":"fill",...}
#   sleep     sleep 5 s, with guest clocks before/after    -> {"event":"sleep",...}
#   poweroff  power off (poweroff -f)
#   reboot    reboot (reboot -f)
# Without nv.test (or after tests that do not end the guest) it starts a shell on the console.

# busybox applets as links in /bin, /sbin, /usr/bin, /usr/sbin (the initramfs holds only
# /bin/busybox and /bin/sh).
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

# The file systems; errors ignored (devtmpfs may be missing, /dev/console is in the archive).
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp 2>/dev/null

# Kernel modules, dependencies first, as /lib/modules/load-order lists them (the virtio-mmio
# transport and the balloon: Debian's cloud kernel builds them as modules). A module that
# will not load says so on the console and the guest carries on without it.
for module in $(cat /lib/modules/load-order 2>/dev/null); do
    insmod "/lib/modules/$module.ko"
done

# say JSON: one line for the host.
say() {
    echo "@guest $1"
}

# meminfo FIELD: the value of FIELD in /proc/meminfo, in kB.
meminfo() {
    awk -v field="$1:" '$1 == field { print $2 }' /proc/meminfo
}

say '{"event":"init"}'

# --- What the guest sees: CPUs, NUMA nodes and their distances, memory. ---
nproc=$(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo)
online=$(cat /sys/devices/system/cpu/online 2>/dev/null)
# One row per node, in node order: [[10,20],[20,10]].
nodes=0
distances=""
while [ -r "/sys/devices/system/node/node$nodes/distance" ]; do
    row=$(echo $(cat "/sys/devices/system/node/node$nodes/distance") | tr ' ' ',')
    distances="${distances:+$distances,}[$row]"
    nodes=$((nodes + 1))
done
say "{\"event\":\"linux\",\"nproc\":$nproc,\"nodes\":$nodes,\"distances\":[$distances],\"memtotal_kb\":$(meminfo MemTotal),\"online\":\"$online\"}"

# --- Tests named on the command line. ---

# Fill a tmpfs of its own with 3/4 of MemAvailable; ok when dd wrote all of it.
test_fill() {
    available_kb=$(meminfo MemAvailable)
    mib=$((available_kb * 3 / 4 / 1024))
    mkdir -p /tmp/fill
    mount -t tmpfs -o size=$((mib + 1))m tmpfs /tmp/fill
    ok=false
    if dd if=/dev/zero of=/tmp/fill/data bs=1M count=$mib 2>/dev/null; then
        ok=true
    fi
    bytes=$(stat -c %s /tmp/fill/data 2>/dev/null || echo 0)
    [ "$bytes" -eq $((mib * 1024 * 1024)) ] || ok=false
    rm -f /tmp/fill/data
    umount /tmp/fill
    say "{\"event\":\"fill\",\"bytes\":$bytes,\"ok\":$ok}"
}

# Sleep 5 s; the host times it, the guest reports its own clocks around it.
test_sleep() {
    date_before=$(date +%s)
    uptime_before=$(cut -d ' ' -f 1 /proc/uptime)
    say "{\"event\":\"sleep-start\",\"date\":$date_before,\"uptime\":$uptime_before}"
    sleep 5
    date_after=$(date +%s)
    uptime_after=$(cut -d ' ' -f 1 /proc/uptime)
    say "{\"event\":\"sleep\",\"seconds\":5,\"date_before\":$date_before,\"date_after\":$date_after,\"uptime_before\":$uptime_before,\"uptime_after\":$uptime_after}"
}

tests=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        nv.test=*) tests="$tests $(echo "${word#nv.test=}" | tr ',' ' ')" ;;
    esac
done
for t in $tests; do
    case "$t" in
        fill) test_fill ;;
        sleep) test_sleep ;;
        poweroff) say '{"event":"poweroff"}'; poweroff -f ;;
        reboot) say '{"event":"reboot"}'; reboot -f ;;
        *) say "{\"event\":\"unknown-test\",\"name\":\"$t\"}" ;;
    esac
done

# --- Nothing (more) to do: an interactive shell with the console as its terminal. ---
say '{"event":"shell"}'
exec setsid cttyhack sh
