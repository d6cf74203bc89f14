#!/bin/sh
# numavisor's Linux test guest: /init of the initramfs `cargo xtask` builds (busybox sh).
#
# Every line meant for the host starts with "@guest " and holds one JSON object, so tests can
# pick them out of the serial console. What the guest does after reporting is chosen on the
# kernel command line with nv.test=WHAT[,WHAT...], run in order:
#   fill      fill a tmpfs with most of MemAvailable      -> {"event":"fill",...}
#   sleep     sleep 5 s, with guest clocks before/after    -> {"event":"sleep",...}
#   memory-idle  Dynamic Memory, the idle side: 56 s of meminfo reports (see test_memory)
#   memory-load  Dynamic Memory, the busy side: idle 12 s, then fill a tmpfs towards 80 % of
#             MemTotal as free memory allows, keep it until 56 s; meminfo reports throughout
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

# --- Dynamic Memory (memory-idle, memory-load). ---
# Both report the balloon driver once, then every ~0.5 s for MEMORY_RUN_S seconds
#   {"event":"meminfo","mode":"idle"|"load","seq":N,"uptime":S,"phase":"idle"|"fill"|"hold",
#    "memtotal_kb":N,"memfree_kb":N,"memavailable_kb":N,"filled_mib":N,
#    "balloon_inflate":N,"balloon_deflate":N}
# (the last two: /proc/vmstat's page counters, null where the kernel has none), and last
#   {"event":"memory_done","mode":...,"seq":N,"uptime":S,"filled_mib":N,"wanted_mib":N,
#    "dd_failures":N,"memtotal_kb_first":N,"memtotal_kb_min":N,"memtotal_kb_max":N}.
# The load side idles for MEMORY_IDLE_S (so that its balloon may take memory back), then
# writes up to wanted_mib (80 % of its MemTotal before ballooning, less what it used at the
# start) into a tmpfs of its own, at most MEMORY_CHUNK_MIB a report and only while
# MemAvailable stays above MEMORY_RESERVE_MIB: it asks for memory as fast as the host gives it, never so fast that the
# kernel runs out (no swap: tmpfs pages cannot be reclaimed). Filling stops at MEMORY_FILL_S;
# what it wrote stays until the end ("hold"), then is freed.
MEMORY_RUN_S=56
MEMORY_IDLE_S=12
MEMORY_FILL_S=48
MEMORY_CHUNK_MIB=16
MEMORY_RESERVE_MIB=8

# The virtio devices Linux found (virtio-mmio from the DSDT) and the drivers bound to them.
report_balloon_driver() {
    loaded=false
    [ -d /sys/bus/virtio/drivers/virtio_balloon ] && loaded=true
    devices=""
    for dev in /sys/bus/virtio/devices/*; do
        [ -e "$dev" ] || continue
        driver=""
        [ -L "$dev/driver" ] && driver=$(basename "$(readlink "$dev/driver")")
        devices="${devices:+$devices,}{\"name\":\"${dev##*/}\",\"device\":\"$(cat "$dev/device")\",\"driver\":\"$driver\",\"features\":\"$(cat "$dev/features")\"}"
    done
    modules=$(echo $(cut -d ' ' -f 1 /proc/modules 2>/dev/null))
    say "{\"event\":\"balloon_driver\",\"driver_loaded\":$loaded,\"modules\":\"$modules\",\"devices\":[$devices]}"
}

# Sets total_kb, free_kb, available_kb (/proc/meminfo), inflate and deflate (/proc/vmstat's
# balloon page counters, or null), uptime (seconds, as /proc/uptime has it) and elapsed
# (whole seconds since memory_start).
memory_sample() {
    eval "$(awk '
        FILENAME == "/proc/meminfo" && $1 == "MemTotal:" { t = $2 }
        FILENAME == "/proc/meminfo" && $1 == "MemFree:" { f = $2 }
        FILENAME == "/proc/meminfo" && $1 == "MemAvailable:" { a = $2 }
        FILENAME == "/proc/vmstat" && $1 == "balloon_inflate" { i = $2 }
        FILENAME == "/proc/vmstat" && $1 == "balloon_deflate" { d = $2 }
        END {
            if (i == "") i = "null"
            if (d == "") d = "null"
            printf "total_kb=%d free_kb=%d available_kb=%d inflate=%s deflate=%s\n", t, f, a, i, d
        }' /proc/meminfo /proc/vmstat 2>/dev/null)"
    read uptime _ < /proc/uptime
    elapsed=$((${uptime%.*} - memory_start))
    [ "$total_kb" -lt "$total_min" ] && total_min=$total_kb
    [ "$total_kb" -gt "$total_max" ] && total_max=$total_kb
}

# test_memory idle|load: see above.
test_memory() {
    mode=$1
    report_balloon_driver
    read uptime _ < /proc/uptime
    memory_start=${uptime%.*}
    total_min=999999999
    total_max=0
    memory_sample
    total_first=$total_kb
    seq=0
    filled=0
    failures=0
    wanted=0
    phase=idle
    if [ "$mode" = load ]; then
        # 80 % of MemTotal as it was before any ballooning (the balloon may have taken
        # pages already: they count as used, and are added back), less what is used now.
        ballooned_kb=0
        [ "$inflate" != null ] && ballooned_kb=$(((inflate - deflate) * 4))
        unballooned_kb=$((total_kb + ballooned_kb))
        wanted=$(((unballooned_kb * 4 / 5 - (total_kb - available_kb)) / 1024))
        [ "$wanted" -gt 0 ] || wanted=0
        mkdir -p /tmp/load
        mount -t tmpfs -o size=$((wanted + MEMORY_CHUNK_MIB))m tmpfs /tmp/load
    fi
    while [ "$elapsed" -lt "$MEMORY_RUN_S" ]; do
        if [ "$mode" = load ] && [ "$elapsed" -ge "$MEMORY_IDLE_S" ]; then
            if [ "$filled" -lt "$wanted" ] && [ "$elapsed" -lt "$MEMORY_FILL_S" ]; then
                phase=fill
                chunk=$((available_kb / 1024 - MEMORY_RESERVE_MIB))
                [ "$chunk" -gt "$MEMORY_CHUNK_MIB" ] && chunk=$MEMORY_CHUNK_MIB
                [ "$chunk" -gt $((wanted - filled)) ] && chunk=$((wanted - filled))
                if [ "$chunk" -gt 0 ]; then
                    if dd if=/dev/zero of="/tmp/load/$seq" bs=1M count="$chunk" 2>/dev/null; then
                        filled=$((filled + chunk))
                    else
                        # Out of memory or space: drop the part written, try again later.
                        rm -f "/tmp/load/$seq"
                        failures=$((failures + 1))
                    fi
                    memory_sample
                fi
            else
                phase=hold
            fi
        fi
        seq=$((seq + 1))
        say "{\"event\":\"meminfo\",\"mode\":\"$mode\",\"seq\":$seq,\"uptime\":$uptime,\"phase\":\"$phase\",\"memtotal_kb\":$total_kb,\"memfree_kb\":$free_kb,\"memavailable_kb\":$available_kb,\"filled_mib\":$filled,\"balloon_inflate\":$inflate,\"balloon_deflate\":$deflate}"
        sleep 0.5
        memory_sample
    done
    if [ "$mode" = load ]; then
        rm -f /tmp/load/*
        umount /tmp/load
    fi
    say "{\"event\":\"memory_done\",\"mode\":\"$mode\",\"seq\":$seq,\"uptime\":$uptime,\"filled_mib\":$filled,\"wanted_mib\":$wanted,\"dd_failures\":$failures,\"memtotal_kb_first\":$total_first,\"memtotal_kb_min\":$total_min,\"memtotal_kb_max\":$total_max}"
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
        memory-idle) test_memory idle ;;
        memory-load) test_memory load ;;
        poweroff) say '{"event":"poweroff"}'; poweroff -f ;;
        reboot) say '{"event":"reboot"}'; reboot -f ;;
        *) say "{\"event\":\"unknown-test\",\"name\":\"$t\"}" ;;
    esac
done

# --- Nothing (more) to do: an interactive shell with the console as its terminal. ---
say '{"event":"shell"}'
exec setsid cttyhack sh
