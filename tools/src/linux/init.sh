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
#             MemTotal (or nv.mib MiB) as free memory allows, keep it until 56 s; meminfo
#             reports throughout
#   ping      ping nv.peer until it answers (at most PING_WAIT_S), then PING_COUNT times
#                                                      -> {"event":"ping",...}
#   ping-for  the same, nv.count times (default PING_COUNT): a pair that keeps pinging while
#             something else happens on its network       -> {"event":"ping",...}
#   send      send nv.mib MiB (default 64) of pseudo-random data to nv.peer's port
#             NET_PORT with busybox nc, once it says it listens -> {"event":"sent",...}
#   send-reboot  the same, asking the receiver to restart its guest midway
#   receive   take one transfer on port NET_PORT       -> {"event":"received",...}
#   wait-peer  wait (at most PING_WAIT_S) until a peer says it is done (tell-peer)
#   tell-peer  tell nv.barrier (default nv.peer; a comma-separated list) this guest is
#             done: guests that ping each other and then power off use them so none stops
#             before the others have finished               -> {"event":"peer-done",...}
#   ping-broadcast  ping the broadcast address of eth0's subnet until nv.responders
#             (default 1) distinct guests answer       -> {"event":"ping-broadcast",...}
#   wait-link-down  wait (at most PING_WAIT_S) until eth0 has no carrier: every other member
#             of its network has stopped               -> {"event":"link-down",...}
#   net-stats  eth0's own counts from /sys             -> {"event":"net-stats",...}
#   grow-node  Dynamic Memory above size (virtio-mem) on node nv.node (default 1): wait until
#             the node grew by nv.mib MiB (default 128), fill a tmpfs bound to the node with
#             more than it booted with, free it, wait until the node is back to its size
#                                                      -> {"event":"node_memory",...}, see test_grow_node
#   getcpu    on each online CPU: the getcpu system call, RDTSCP's and RDPID's TSC_AUX and
#             /proc/self/stat's CPU (/bin/nv-getcpu)      -> {"event":"getcpu",...}
#   nvme      the first NVMe namespace (/dev/nvme0n1, waited for): its PCI function, that
#             function's numa_node, the sha256 of its first nv.mib MiB (default 64), then a
#             marker line ("numavisor-nvme-marker") written at byte nv.mib MiB
#                                                      -> {"event":"nvme",...}
#   nvme-read  read nv.mib MiB (default 64) of /dev/nvme0n1 with O_DIRECT in 1 MiB blocks,
#             timed, with the NVMe interrupts taken meanwhile  -> {"event":"nvme_read",...}
#   poweroff  power off (poweroff -f)
#   reboot    reboot (reboot -f)
# Without nv.test (or after tests that do not end the guest) it starts a shell on the console.
#
# Networking needs no script either: nv.ip=ADDR/PREFIX[,ADDR/PREFIX...] gives eth0, eth1, ...
# (the partition's NICs in layout order) those addresses and brings them up (a card without
# an address stays down), and the guest reports its interfaces ({"event":"network",...}).
# It answers pings to its subnet's broadcast address (for ping-broadcast).

# busybox applets as links in /bin, /sbin, /usr/bin, /usr/sbin (the initramfs holds only
# /bin/busybox and /bin/sh).
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

# The file systems; errors ignored (devtmpfs may be missing, /dev/console is in the archive).
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp 2>/dev/null

# Each node's MemTotal before the modules load: what it booted with, before virtio_mem plugs
# anything (grow-node measures growth from it).
for meminfo in /sys/devices/system/node/node*/meminfo; do
    [ -e "$meminfo" ] || continue
    node_dir=${meminfo%/meminfo}
    awk '$3 == "MemTotal:" { print $4 }' "$meminfo" > "/tmp/boot-${node_dir##*/}-kb"
done
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

# The nv.* words of the kernel command line.
tests=""
ips=""
peer=""
barrier=""
responders=1
mib=64
count=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        nv.test=*) tests="$tests $(echo "${word#nv.test=}" | tr ',' ' ')" ;;
        nv.ip=*) ips="${word#nv.ip=}" ;;
        nv.peer=*) peer="${word#nv.peer=}" ;;
        nv.mib=*) mib="${word#nv.mib=}" ;;
        nv.barrier=*) barrier="${word#nv.barrier=}" ;;
        nv.responders=*) responders="${word#nv.responders=}" ;;
        nv.count=*) count="${word#nv.count=}" ;;
        nv.node=*) node="${word#nv.node=}" ;;
    esac
done

# --- The network (nv.ip): addresses in NIC order, then one report of every interface. ---
PING_WAIT_S=60
PING_COUNT=5
NET_PORT=5000
setup_network() {
    echo 0 > /proc/sys/net/ipv4/icmp_echo_ignore_broadcasts
    n=0
    for address in $(echo "$ips" | tr ',' ' '); do
        ip addr add "$address" dev "eth$n"
        ip link set "eth$n" up
        n=$((n + 1))
    done
    interfaces=""
    for dev in /sys/class/net/eth*; do
        [ -e "$dev" ] || continue
        name=${dev##*/}
        address=$(ip -4 -o addr show dev "$name" 2>/dev/null | awk '{ print $4 }' | head -n 1)
        driver=""
        [ -L "$dev/device/driver" ] && driver=$(basename "$(readlink "$dev/device/driver")")
        interfaces="${interfaces:+$interfaces,}{\"name\":\"$name\",\"mac\":\"$(cat "$dev/address")\",\"address\":\"$address\",\"driver\":\"$driver\",\"mtu\":$(cat "$dev/mtu")}"
    done
    say "{\"event\":\"network\",\"interfaces\":[$interfaces]}"
}
[ -n "$ips" ] && setup_network

# uptime_ms: /proc/uptime in milliseconds.
uptime_ms() {
    awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime
}

# Ping nv.peer until it answers (its guest may still be booting; at most PING_WAIT_S
# tries, a second or two each), then $1 times; the summary line of busybox ping gives the
# counts and round trips.
test_ping() {
    waited=0
    until ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
        waited=$((waited + 1))
        [ "$waited" -ge "$PING_WAIT_S" ] && break
        sleep 1
    done
    out=$(ping -c "$1" -i 0.2 -W 2 "$peer" 2>&1)
    sent=$(echo "$out" | awk '/packets transmitted/ { print $1 }')
    received=$(echo "$out" | awk '/packets transmitted/ { print $4 }')
    avg=$(echo "$out" | awk -F'[/ ]' '/round-trip/ { print $(NF-2) }')
    say "{\"event\":\"ping\",\"peer\":\"$peer\",\"waited_s\":$waited,\"transmitted\":${sent:-0},\"received\":${received:-0},\"rtt_avg_ms\":${avg:-null}}"
}

# The data a transfer carries: a first line naming its kind ("keep", or "reboot": the
# receiver restarts its guest once 8 MiB have arrived), then nv.mib copies of one
# pseudo-random MiB (made once).
transfer_data() {
    echo "nv-transfer $1"
    i=0
    while [ "$i" -lt "$mib" ]; do
        cat /tmp/chunk
        i=$((i + 1))
    done
}

# The guest's TCP retransmissions so far (/proc/net/snmp: a header line, then the values).
retransmitted() {
    awk '/^Tcp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i; n = 1 } else print $c }' /proc/net/snmp
}

# send KIND: wait until the receiver (nv.peer) says it listens, then send it a transfer of
# KIND with busybox nc. Its sha256 is computed from a second pass over the same data.
send_transfer() {
    [ -f /tmp/chunk ] || head -c 1048576 /dev/urandom > /tmp/chunk
    sha=$(transfer_data "$1" | sha256sum | cut -d ' ' -f 1)
    barrier_wait
    retrans=$(retransmitted)
    start=$(uptime_ms)
    ok=false
    transfer_data "$1" | nc -w 5 "$peer" "$NET_PORT" && ok=true
    ms=$(($(uptime_ms) - start))
    say "{\"event\":\"sent\",\"kind\":\"$1\",\"ok\":$ok,\"bytes\":$((mib * 1048576 + 13 + ${#1})),\"sha256\":\"$sha\",\"ms\":$ms,\"retransmitted\":$(($(retransmitted) - retrans)),\"heard\":\"$line\"}"
}

# A listening nc's standard input: a pipe that stays open and empty (fd 3). At the end of
# its input busybox nc closes its sending half, and the sending nc ends when the other side
# does: with /dev/null the sender would stop after its first read.
hold_stdin() {
    [ -p /tmp/hold ] || mkfifo /tmp/hold
    exec 3<>/tmp/hold
}

# Take one transfer on NET_PORT into /tmp and report its size and sha256. The listener starts
# first, then the sender (nv.peer) is told; a "reboot" transfer restarts this guest midway.
test_receive() {
    hold_stdin
    nc -l -p "$NET_PORT" <&3 > /tmp/received &
    listener=$!
    say "{\"event\":\"listening\",\"port\":$NET_PORT}"
    barrier_tell "$peer"
    start=$(uptime_ms)
    while kill -0 "$listener" 2>/dev/null; do
        if [ "$(head -c 18 /tmp/received 2>/dev/null)" = "nv-transfer reboot" ] &&
            [ "$(stat -c %s /tmp/received)" -ge 8388608 ]; then
            say "{\"event\":\"rebooting\",\"bytes\":$(stat -c %s /tmp/received)}"
            reboot -f
        fi
        sleep 0.2
    done
    ms=$(($(uptime_ms) - start))
    bytes=$(stat -c %s /tmp/received)
    sha=$(sha256sum /tmp/received | cut -d ' ' -f 1)
    rm -f /tmp/received
    say "{\"event\":\"received\",\"bytes\":$bytes,\"sha256\":\"$sha\",\"ms\":$ms}"
}

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

# The barrier of a pair: wait-peer listens on BARRIER_PORT for one line, tell-peer sends it
# (retried once a second until the other listens).
BARRIER_PORT=5001
# barrier_wait: take one line on BARRIER_PORT (into $line), at most PING_WAIT_S * 2 s.
barrier_wait() {
    hold_stdin
    line=$(timeout $((PING_WAIT_S * 2)) nc -l -p "$BARRIER_PORT" <&3)
}

# barrier_tell ADDR: say "done" to ADDR's BARRIER_PORT, retried once a second (at most
# PING_WAIT_S times) until it listens; $tries says how many failed.
barrier_tell() {
    tries=0
    until echo done | nc -w 5 "$1" "$BARRIER_PORT"; do
        tries=$((tries + 1))
        [ "$tries" -ge "$PING_WAIT_S" ] && break
        sleep 1
    done
}

test_wait_peer() {
    barrier_wait
    say "{\"event\":\"peer-done\",\"role\":\"wait\",\"heard\":\"$line\"}"
}
test_tell_peer() {
    for to in $(echo "${barrier:-$peer}" | tr ',' ' '); do
        barrier_tell "$to"
        say "{\"event\":\"peer-done\",\"role\":\"tell\",\"to\":\"$to\",\"tries\":$tries}"
    done
}

# Ping eth0's broadcast address (busybox ping allows broadcasts without -b) until
# nv.responders distinct guests have answered (at most
# PING_WAIT_S rounds of two echoes); the answers' sources, as busybox ping prints them.
test_ping_broadcast() {
    eval "$(ipcalc -b "$(ip -4 -o addr show dev eth0 | awk '{ print $4 }' | head -n 1)")"
    broadcast=$BROADCAST
    rounds=0
    found=""
    while [ "$rounds" -lt "$PING_WAIT_S" ]; do
        rounds=$((rounds + 1))
        found=$(ping -c 2 -W 1 "$broadcast" 2>/dev/null | awk '/bytes from/ { sub(":", "", $4); print $4 }' | sort -u)
        [ "$(echo "$found" | grep -c .)" -ge "$responders" ] && break
    done
    list=""
    [ -n "$found" ] && list=$(echo $found | sed 's/\([^ ]*\)/"\1"/g; s/ /,/g')
    say "{\"event\":\"ping-broadcast\",\"address\":\"$broadcast\",\"rounds\":$rounds,\"responders\":[$list]}"
}

# Wait until eth0 loses its carrier (the hypervisor sets the link down when no other member
# of its network runs).
test_wait_link_down() {
    waited=0
    while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; do
        waited=$((waited + 1))
        [ "$waited" -ge $((PING_WAIT_S * 5)) ] && break
        sleep 0.2
    done
    say "{\"event\":\"link-down\",\"carrier\":$(cat /sys/class/net/eth0/carrier 2>/dev/null || echo null),\"polls\":$waited}"
}

# eth0's counts as the guest's kernel keeps them.
# --- A passed-through NVMe disk (nvme). ---
NVME_WAIT_S=60
test_nvme() {
    dev=/dev/nvme0n1
    waited=0
    while [ ! -b "$dev" ] && [ $waited -lt $NVME_WAIT_S ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if [ ! -b "$dev" ]; then
        say "{\"event\":\"nvme\",\"error\":\"no $dev after ${NVME_WAIT_S} s\"}"
        return
    fi
    function=$(readlink -f /sys/block/nvme0n1/device/device)
    numa=$(cat "$function/numa_node" 2>/dev/null || echo null)
    sha=$(dd if=$dev bs=1M count=$mib 2>/dev/null | sha256sum | cut -d' ' -f1)
    marker="numavisor-nvme-marker"
    written=false
    if echo "$marker" | dd of=$dev bs=512 seek=$((mib * 2048)) conv=fsync 2>/dev/null; then
        written=true
    fi
    say "{\"event\":\"nvme\",\"function\":\"${function##*/}\",\"numa_node\":$numa,\"mib\":$mib,\"sha256\":\"$sha\",\"marker_written\":$written}"
}

# The interrupts the nvme driver's queues took so far (every CPU, every queue).
nvme_interrupts() {
    awk '/nvme/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i } END { print n + 0 }' /proc/interrupts
}

test_nvme_read() {
    dev=/dev/nvme0n1
    waited=0
    while [ ! -b "$dev" ] && [ $waited -lt $NVME_WAIT_S ]; do
        sleep 1
        waited=$((waited + 1))
    done
    before=$(nvme_interrupts)
    start=$(uptime_ms)
    if dd if=$dev of=/dev/null bs=1M count=$mib iflag=direct 2>/dev/null; then ok=true; else ok=false; fi
    ms=$(($(uptime_ms) - start))
    say "{\"event\":\"nvme_read\",\"ok\":$ok,\"mib\":$mib,\"ms\":$ms,\"interrupts\":$(($(nvme_interrupts) - before))}"
}

test_net_stats() {
    stats=/sys/class/net/eth0/statistics
    say "{\"event\":\"net-stats\",\"rx_packets\":$(cat $stats/rx_packets),\"tx_packets\":$(cat $stats/tx_packets),\"rx_dropped\":$(cat $stats/rx_dropped),\"tx_dropped\":$(cat $stats/tx_dropped)}"
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
        # nv.mib: that many MiB instead (more than the guest booted with: it must grow).
        [ -n "$mib" ] && wanted=$mib
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

# --- Dynamic Memory above size (grow-node). ---
# Every ~0.5 s while it waits:
#   {"event":"node_memory","node":N,"seq":S,"phase":"grow"|"shrink","total_kb":T,"free_kb":F,
#    "memory_blocks":B}
# (node N's MemTotal and MemFree from /sys/devices/system/node/nodeN/meminfo, and how many
# memory blocks of the node are online), then for the fill
#   {"event":"node_fill","node":N,"mib":M,"ok":true|false,"total_kb":T}
# and last {"event":"node_done","node":N,"grew":true|false,"shrank":true|false,
#   "total_kb_first":T,"total_kb_max":T,"total_kb_last":T}.
# The fill writes the node's boot size plus half the growth into a tmpfs with mpol=bind:N:
# more than the node booted with, so it fits only in the memory plugged there.
GROW_WAIT_S=180

node_sample() {
    eval "$(awk '$3 == "MemTotal:" { printf "node_total_kb=%d ", $4 }
        $3 == "MemFree:" { printf "node_free_kb=%d\n", $4 }' "/sys/devices/system/node/node$1/meminfo")"
    blocks=0
    for b in /sys/devices/system/node/node$1/memory*; do
        [ -e "$b/online" ] && [ "$(cat "$b/online")" = 1 ] && blocks=$((blocks + 1))
    done
}

# node_wait NODE PHASE TEST: report until the sampled node_total_kb makes TEST true (a shell
# expression), at most GROW_WAIT_S; sets waited_ok.
node_wait() {
    waited_ok=false
    tries=0
    while [ "$tries" -lt $((GROW_WAIT_S * 2)) ]; do
        node_sample "$1"
        [ "$node_total_kb" -gt "$total_max" ] && total_max=$node_total_kb
        seq=$((seq + 1))
        say "{\"event\":\"node_memory\",\"node\":$1,\"seq\":$seq,\"phase\":\"$2\",\"total_kb\":$node_total_kb,\"free_kb\":$node_free_kb,\"memory_blocks\":$blocks}"
        if eval "$3"; then
            waited_ok=true
            return
        fi
        tries=$((tries + 1))
        sleep 0.5
    done
}

test_grow_node() {
    n=${node:-1}
    grow_mib=${mib:-128}
    report_balloon_driver
    seq=0
    node_sample "$n"
    # Growth counts from what the node booted with (a target may have been set, and memory
    # plugged, before this test started).
    first=$(cat "/tmp/boot-node$n-kb" 2>/dev/null || echo "$node_total_kb")
    total_max=$node_total_kb
    node_wait "$n" grow "[ \$node_total_kb -ge $((first + grow_mib * 1024)) ]"
    grew=$waited_ok
    fill_mib=$((first / 1024 + grow_mib / 2))
    ok=false
    if [ "$grew" = true ]; then
        mkdir -p /tmp/node
        mount -t tmpfs -o "size=$((fill_mib + 1))m,mpol=bind:$n" tmpfs /tmp/node
        if dd if=/dev/zero of=/tmp/node/data bs=1M count=$fill_mib 2>/dev/null &&
            [ "$(stat -c %s /tmp/node/data)" -eq $((fill_mib * 1048576)) ]; then
            ok=true
        fi
        node_sample "$n"
        rm -f /tmp/node/data
        umount /tmp/node
    fi
    say "{\"event\":\"node_fill\",\"node\":$n,\"mib\":$fill_mib,\"ok\":$ok,\"total_kb\":$node_total_kb}"
    node_wait "$n" shrink "[ \$node_total_kb -le $((first + 4096)) ]"
    say "{\"event\":\"node_done\",\"node\":$n,\"grew\":$grew,\"shrank\":$waited_ok,\"total_kb_first\":$first,\"total_kb_max\":$total_max,\"total_kb_last\":$node_total_kb}"
}

for t in $tests; do
    case "$t" in
        fill) test_fill ;;
        sleep) test_sleep ;;
        memory-idle) test_memory idle ;;
        memory-load) test_memory load ;;
        grow-node) test_grow_node ;;
        ping) test_ping "$PING_COUNT" ;;
        ping-for) test_ping "${count:-$PING_COUNT}" ;;
        send) send_transfer keep ;;
        send-reboot) send_transfer reboot ;;
        receive) test_receive ;;
        wait-peer) test_wait_peer ;;
        tell-peer) test_tell_peer ;;
        ping-broadcast) test_ping_broadcast ;;
        wait-link-down) test_wait_link_down ;;
        net-stats) test_net_stats ;;
        nvme) test_nvme ;;
        nvme-read) test_nvme_read ;;
        getcpu) /bin/nv-getcpu || say "{\"event\":\"getcpu\",\"error\":$?}" ;;
        poweroff) say '{"event":"poweroff"}'; poweroff -f ;;
        reboot) say '{"event":"reboot"}'; reboot -f ;;
        *) say "{\"event\":\"unknown-test\",\"name\":\"$t\"}" ;;
    esac
done

# --- Nothing (more) to do: an interactive shell with the console as its terminal. ---
say '{"event":"shell"}'
exec setsid cttyhack sh
