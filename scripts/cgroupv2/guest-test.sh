#!/bin/bash
# The cgroup-v2 test, inside the qemu guest (scripts/test-cgroupv2.sh puts it on
# the 9p share with the freshly built `dindbox` binary; guest-boot.sh runs it).
#
# Writes one line per check to share/results.log (and stdout = the serial console):
#   V2 CHECK name=NAME result=PASS|FAIL detail=TEXT
#   V2 TIME name=NAME seconds=S      V2 BENCH name=NAME seconds=S
#   V2 DONE
# The host parses them. Knobs come from share/env (BENCH=1, BENCH_ROUNDS=N).
set -u
S=/mnt/share
R=$S/results.log
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BENCH=0 BENCH_ROUNDS=1
# shellcheck source=/dev/null
[ -f $S/env ] && . $S/env
: >"$R"
PORT=2375
IMAGE=dindbox-v2:slim
# The inner containers' limits and the box's budget (DINDBOX_MEMORY_LIMIT=256m).
MEM=33554432 PIDS=64 BUDGET=268435456
# docker execs racing the box's start-up.
STORM=5
# The boxes' dockerds (ours and the negative control's alike) without iptables:
# nothing here needs their NAT, and iptables-nft costs seconds per box under
# emulation. The cgroup path is what this test is about.
INNER_ARGS=--iptables=false

emit() { echo "$*" | tee -a "$R"; }
# check NAME PASS|FAIL DETAIL...
check() {
    local name=$1 result=$2
    shift 2
    emit "V2 CHECK name=$name result=$result detail=$(echo "$*" | tr '\n' ' ' | tr -s ' ' | cut -c1-400)"
}
# expect NAME WANT GOT [CONTEXT]
expect() {
    if [ "$3" = "$2" ]; then check "$1" PASS "$3 ${4:-}"; else check "$1" FAIL "want $2, got '$3' ${4:-}"; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
timing() { emit "V2 TIME name=$1 seconds=$(since "$2")"; }
say() { echo "V2 LOG t=$(cut -d' ' -f1 /proc/uptime) $*"; }
# GET /_ping on IP:PORT answers OK (bash's /dev/tcp: no client to start, and
# busybox-static's wget crashes).
ping_ok() {
    local r
    { exec 3<>"/dev/tcp/$1/$PORT"; } 2>/dev/null || return 1
    printf 'GET /_ping HTTP/1.0\r\nHost: dindbox\r\n\r\n' >&3
    r=$(timeout 3 cat <&3)
    exec 3>&-
    [ "${r##*$'\r\n\r\n'}" = OK ]
}

# Polls GET /_ping on IP:PORT until it answers OK; prints when (date +%s.%N).
wait_ping() { # IP LIMIT
    local end=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt $end ]; do
        if ping_ok "$1"; then
            now
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# Seconds from the container's start (State.StartedAt) to READY (date +%s.%N).
from_start() { # CONTAINER READY
    local started
    started=$(docker inspect -f '{{.State.StartedAt}}' "$1")
    awk -v a="$(date -d "$started" +%s.%N)" -v b="$2" 'BEGIN { printf "%.2f", b - a }'
}

T0=$(now)
say "guest up: $(uname -r), $(nproc) cpu(s), $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource), panic on soft lockup/RCU stall $(cat /proc/sys/kernel/softlockup_panic)/$(cat /proc/sys/kernel/panic_on_rcu_stall)"

# ------------------------------------------------------------------ the guest
cgmounts=$(awk '$3 ~ /^cgroup/ {print $3 ":" $2}' /proc/mounts | tr '\n' ' ')
mkdir -p /tmp/v1
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ "$cgmounts" = "cgroup2:/sys/fs/cgroup " ] &&
    ! mount -t cgroup -o memory none /tmp/v1 2>/dev/null; then
    check guest_pure_v2 PASS "only $cgmounts; a v1 memory mount is refused; $(cat /proc/cmdline | grep -o 'cgroup_no_v1=[^ ]*')"
else
    check guest_pure_v2 FAIL "cgroup mounts: $cgmounts"
fi

for m in overlay br_netfilter bridge veth nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack \
    xt_MASQUERADE xt_addrtype xt_conntrack xt_nat xt_tcpudp xt_mark ip6_tables ip_tables iptable_nat iptable_filter; do
    modprobe -q "$m" 2>/dev/null || say "modprobe $m failed"
done
cp $S/dindbox /usr/local/bin/dindbox && chmod 755 /usr/local/bin/dindbox

t=$(now)
# No iptables for the outer daemon: the guest reaches the boxes on docker0
# directly, and the rules cost seconds under TCG (the boxes': see INNER_ARGS).
dockerd --data-root /var/lib/docker --iptables=false >$S/dockerd.log 2>&1 &
# The images' trees while it starts. The box image: /etc and the merged-usr
# links; the guest's /usr comes in with -v /usr:/usr:ro (holding dindbox,
# dockerd, containerd, runc, iptables). The inner containers' image: static busybox.
slim=/tmp/slim
mkdir -p $slim/usr $slim/proc $slim/sys $slim/dev $slim/run $slim/tmp $slim/root $slim/var/lib/docker $slim/var/log
cp -a /etc $slim/etc
for d in bin sbin lib lib64; do [ -L /$d ] && ln -s "$(readlink /$d)" $slim/$d; done
bb=/tmp/bb
mkdir -p $bb/bin $bb/tmp
cp /bin/busybox $bb/bin/busybox
for a in sh cat sleep true echo; do ln -s busybox $bb/bin/$a; done
for _ in $(seq 240); do
    [ -S /var/run/docker.sock ] && cgv=$(docker info -f '{{.CgroupVersion}} {{.CgroupDriver}} {{.ServerVersion}}' 2>/dev/null) && break
    sleep 0.25
done
timing outer_dockerd "$t"
expect outer_dockerd_v2 "2 cgroupfs" "$(echo "${cgv:-}" | cut -d' ' -f1-2)" "(docker $(echo "${cgv:-}" | cut -d' ' -f3))"

t=$(now)
{
    tar -C $slim -c . | docker import \
        --change 'ENTRYPOINT ["/usr/local/bin/dindbox", "init"]' \
        --change 'ENV container=docker' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - $IMAGE >/dev/null || check box_image FAIL "docker import failed"
} &
slim_import=$!
# `docker load` (not import) through the proxy: the 20.10 CLI sends import
# bodies as text/plain, which the proxy refuses for tar endpoints.
tar -C $bb -c . | docker import --change 'CMD ["sh"]' - busybox:latest >/dev/null &&
    docker save busybox:latest -o /tmp/busybox.tar || check busybox_image FAIL "import/save failed"
wait $slim_import
timing images "$t"

# ------------------------------------------------------------------ racing processes
# Puts processes of the box's pid namespace into the box's root cgroup from the
# moment runc creates it (what `docker exec` does) until the kernel refuses
# (EBUSY: init enabled subtree_control). Counts in $1.in / $1.refused.
race_into_root() { # STATEFILE-PREFIX EXISTING-CGROUPS
    local out=$1 before=$2 end=$(($(date +%s) + 60)) cg= pid= p selfns refused=0 n=0
    selfns=$(readlink /proc/self/ns/pid)
    : >"$out.log"
    while [ -z "$cg" ] && [ "$(date +%s)" -lt $end ]; do
        for d in /sys/fs/cgroup/docker/*/; do
            [ -d "$d" ] && [ "${before#* $d }" = "$before" ] && cg=$d
        done
        [ -n "$cg" ] || sleep 0.01
    done
    while [ -z "$pid" ] && [ "$(date +%s)" -lt $end ]; do
        for p in $(cat "${cg}cgroup.procs" "${cg}init/cgroup.procs" 2>/dev/null); do
            [ "$(readlink /proc/"$p"/ns/pid 2>/dev/null)" != "$selfns" ] && pid=$p && break
        done
        [ -n "$pid" ] || sleep 0.01
    done
    if [ -z "$pid" ]; then
        echo "gave up: cgroup '${cg:-none}', no process of the box's pid namespace in it" >>"$out.log"
        return 0
    fi
    while [ $n -lt 200 ] && [ "$(date +%s)" -lt $end ]; do
        n=$((n + 1))
        nsenter -t "$pid" -p -- sh -c "if echo 0 >${cg}cgroup.procs 2>/dev/null; then echo in >>$out.log; exec sleep 15; else echo refused >>$out.log; fi" &
        sleep 0.05
        refused=$(grep -c refused "$out.log")
        [ "$refused" -ge 3 ] && break
    done
    wait
}

# Escape probes of what this VM's kernel lacks (docs/unprivileged-notes.md:
# "absent" there): /proc/sysrq-trigger, where `h` only prints the help to the
# kernel log, and loading a module, dummy (harmless, shipped by the guest's
# kernel, unloaded again). Run as root in the box's own shell: the privileged
# box (the control) must get through, the box without --privileged must not.
sysrq_helps() { dmesg | grep -c 'sysrq: HELP'; }
probe_escapes() { # CONTAINER SUFFIX WANT(escaped|denied)
    local box=$1 sfx=$2 want=$3 before out got
    before=$(sysrq_helps)
    out=$(docker exec "$box" sh -c 'echo h >/proc/sysrq-trigger' 2>&1)
    if [ "$(sysrq_helps)" -gt "$before" ]; then got=escaped; else got=denied; fi
    expect "escape_sysrq_$sfx" "$want" "$got" "(echo h >/proc/sysrq-trigger in the box: ${out:-no error}; 'sysrq: HELP' lines in the guest's kernel log $before -> $(sysrq_helps))"
    lsmod | grep -q '^dummy ' && rmmod dummy
    out=$(docker exec "$box" modprobe dummy 2>&1)
    if lsmod | grep -q '^dummy '; then
        got=escaped
        rmmod dummy
    else
        got=denied
    fi
    expect "escape_module_$sfx" "$want" "$got" "(modprobe dummy in the box: ${out:-no error})"
}

# The same two probes from the strongest inner container the box's root can
# start on its private socket (INNER_FLAGS), with tests/e2e/escape_probes.sh
# (module: init_module's permission check, EPERM against ENOEXEC).
probe_escapes_inner() { # CONTAINER SUFFIX WANT INNER_FLAGS
    local box=$1 sfx=$2 want=$3 flags=$4 out probe line
    docker cp $S/escape_probes.sh "$box:/probes.sh" >/dev/null
    out=$(docker exec "$box" sh -c "docker -H unix:///run/dindbox/docker.sock run --rm $flags \
        -v /probes.sh:/probes.sh:ro busybox sh /probes.sh" 2>&1)
    for probe in sysrq module; do
        line=$(echo "$out" | grep "^PROBE $probe " | head -n 1)
        expect "escape_${probe}_inner_$sfx" "$want" "$(echo "$line" | cut -d' ' -f3)" \
            "(inner container $flags: ${line:-no PROBE line: $(echo "$out" | tail -n 3)})"
    done
}

# run_limited NAME: a container limited to 32 MiB and 64 pids that prints its
# memory.max and pids.max, then sleeps; its id on stdout.
run_limited() {
    docker run -d --name "$1" --memory 32m --pids-limit 64 busybox \
        sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; exec sleep 600'
}
# first_logs NAME: what the container printed first (waits up to 10 s).
first_logs() {
    local out=
    for _ in $(seq 20); do
        out=$(docker logs "$1" 2>&1)
        [ -n "$out" ] && break
        sleep 0.5
    done
    echo "$out"
}
existing_cgroups() { echo " $(ls -d /sys/fs/cgroup/docker/*/ 2>/dev/null | tr '\n' ' ') "; }

# ------------------------------------------------------------------ the box (positive)
say "starting the dindbox box, with an exec storm and processes racing into its root cgroup"
race_into_root /tmp/race "$(existing_cgroups)" &
racer=$!
t=$(now)
boxid=$(docker run -d --name box --privileged --cgroupns=private \
    -e PORT=$PORT -e DINDBOX_MEMORY_LIMIT=256m -e 'DINDBOX_LOG=info,dindbox::init::cgroup=debug' \
    -e DINDBOX_READY_TIMEOUT=240 -e DOCKERD_ARGS=$INNER_ARGS \
    -v box-var:/var/lib/docker -v /usr:/usr:ro $IMAGE)
# The storm: $STORM `docker exec`s in a loop right after the start, racing init
# and dockerd. (In a loop, not all at once: 10 Go clients at once under TCG on a
# busy host starve the box's dockerd past its 15 s wait for containerd.)
for i in $(seq $STORM); do
    docker exec box true >/tmp/exec.$i.log 2>&1
    echo $? >/tmp/exec.$i.rc
done &
info=$(docker inspect -f '{{.State.Pid}} {{.NetworkSettings.IPAddress}}' box)
boxpid=${info% *} boxip=${info#* }
if ready=$(wait_ping "$boxip" 180); then
    box_ready=$(from_start box "$ready")
    check box_proxy_ready PASS "GET /_ping on $boxip:$PORT answered OK ${box_ready}s after the box started (exec storm running)"
else
    check box_proxy_ready FAIL "no OK from $boxip:$PORT within 180 s; $(docker logs box 2>&1 | tail -n 5)"
fi
wait $racer
for _ in $(seq 600); do [ -f /tmp/exec.$STORM.rc ] && break; sleep 0.2; done
timing box_start_and_storm "$t"
ok=$(cat /tmp/exec.*.rc 2>/dev/null | grep -c '^0$')
if [ "$ok" = $STORM ]; then
    check exec_storm PASS "$STORM/$STORM docker exec box true succeeded during start-up"
else
    check exec_storm FAIL "$ok/$STORM succeeded: $(cat /tmp/exec.*.log | sort | uniq -c | head -n 3)"
fi
docker logs box >$S/box.log 2>&1
raced=$(grep -c '^in$' /tmp/race.log 2>/dev/null)
refused=$(grep -c '^refused$' /tmp/race.log 2>/dev/null)
gaveup=$(grep -m1 '^gave up' /tmp/race.log 2>/dev/null)
busy=$(grep -c 'busy, evacuating again' $S/box.log)
moved=$(grep -o 'moved [0-9]* process(es)' $S/box.log | head -n 1)
setup=$(grep -c 'cgroup v2: moved' $S/box.log)
if [ "$setup" = 1 ] && ! grep -q 'cgroup setup failed' $S/box.log && [ "$(docker inspect -f '{{.State.Running}}' box)" = true ]; then
    check evacuation_under_race PASS "init: $moved, $busy EBUSY retries; racer: $raced process(es) entered the root cgroup during start-up, $refused refused afterwards${gaveup:+ (racer $gaveup)}"
else
    check evacuation_under_race FAIL "$(grep -i cgroup $S/box.log | tail -n 3)"
fi

# The box's cgroup, seen from the guest (the real hierarchy).
initcg=$(awk -F: '$1 == "0" {print $3}' /proc/"$boxpid"/cgroup 2>/dev/null)
boxcg=/sys/fs/cgroup${initcg%/init}
if [ -z "$initcg" ] || [ "$boxcg" = /sys/fs/cgroup ]; then
    # Not the guest's root instead: every check below would look at the wrong tree.
    boxcg=/nonexistent/box-not-running
    say "the box is not running: $(docker inspect -f '{{.State.Status}} exit {{.State.ExitCode}}' box)"
fi
expect box_init_cgroup "/docker/$boxid/init" "$initcg" "(box pid $boxpid)"
if [ -f "$boxcg/cgroup.procs" ]; then
    expect box_root_procs_empty "" "$(tr '\n' ' ' <"$boxcg/cgroup.procs" | sed 's/ $//')" "($boxcg/cgroup.procs)"
else
    check box_root_procs_empty FAIL "no $boxcg/cgroup.procs"
fi
n=$(wc -l <"$boxcg/init/cgroup.procs" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ] && grep -qx "$boxpid" "$boxcg/init/cgroup.procs"; then
    check box_init_populated PASS "$n process(es) in $boxcg/init, init among them"
else
    check box_init_populated FAIL "$boxcg/init/cgroup.procs: $(head -c 200 "$boxcg/init/cgroup.procs")"
fi
sub=$(cat "$boxcg/cgroup.subtree_control" 2>/dev/null)
if [ -n "$sub" ] && [ "$sub" = "$(cat "$boxcg/cgroup.controllers")" ] && [ "${sub#*memory}" != "$sub" ] && [ "${sub#*pids}" != "$sub" ]; then
    check box_subtree_control PASS "[$sub] = the box's cgroup.controllers"
else
    check box_subtree_control FAIL "subtree_control [$sub], controllers [$(cat "$boxcg/cgroup.controllers")]"
fi
expect budget_memory_max $BUDGET "$(cat "$boxcg/dindbox/memory.max" 2>&1)" "($boxcg/dindbox)"

# Through the proxy: the guest's docker CLI on the box's PORT.
t=$(now)
export DOCKER_HOST=tcp://$boxip:$PORT
docker load -i /tmp/busybox.tar >/dev/null 2>/tmp/load.err || check box_load FAIL "$(cat /tmp/load.err)"
if cid=$(run_limited limited 2>/tmp/run.err); then
    check limited_runs PASS "docker run --memory 32m --pids-limit 64 through the proxy: ${cid:0:12}"
    out=$(first_logs limited)
    expect limited_memory_max $MEM "$(echo "$out" | sed -n 1p)" "(inside the container)"
    expect limited_pids_max $PIDS "$(echo "$out" | sed -n 2p)" "(inside the container)"
    ccg=$(ls -d "$boxcg"/dindbox/*"$cid"* 2>/dev/null | head -n 1)
    if [ -n "$ccg" ] && [ "$(cat "$ccg/memory.max")" = $MEM ] && [ "$(cat "$ccg/pids.max")" = $PIDS ]; then
        check limited_under_budget PASS "${ccg#/sys/fs/cgroup}: memory.max $MEM, pids.max $PIDS, under the budget parent"
    else
        check limited_under_budget FAIL "no cgroup of ${cid:0:12} under $boxcg/dindbox: $(find "$boxcg" -maxdepth 3 -type d -name "*${cid:0:12}*")"
    fi
else
    check limited_runs FAIL "$(cat /tmp/run.err)"
fi
unset DOCKER_HOST
timing box_checks "$t"
probe_escapes box priv escaped
probe_escapes_inner box priv escaped --privileged
docker rm -f box >/dev/null 2>&1

# ------------------------------------------------------------------ negative control
# The same image and flags, but dockerd as the entrypoint: no cgroup step. The
# limited run must fail ("cannot enter cgroupv2 ... invalid state").
# --tls=false: without it Debian's 20.10.24 sleeps 15 s at start-up on a plain
# TCP listener (the bench compares start-up times).
say "negative control: the same box without dindbox init"
t=$(now)
docker run -d --name neg --privileged --cgroupns=private -v neg-var:/var/lib/docker -v /usr:/usr:ro \
    --entrypoint dockerd $IMAGE -H unix:///var/run/docker.sock -H tcp://0.0.0.0:$PORT --tls=false $INNER_ARGS >/dev/null
negip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' neg)
if ready=$(wait_ping "$negip" 180); then
    bare_ready=$(from_start neg "$ready")
    export DOCKER_HOST=tcp://$negip:$PORT
    docker load -i /tmp/busybox.tar >/dev/null
    if docker run --rm --memory 32m --pids-limit 64 busybox true >/tmp/neg.out 2>&1; then
        check negative_control_fails FAIL "the limited run succeeded without dindbox init: the test cannot tell"
    elif grep -q 'cannot enter cgroupv2.*invalid state' /tmp/neg.out; then
        check negative_control_fails PASS "without init's cgroup step: $(grep -o 'cannot enter cgroupv2.*invalid state' /tmp/neg.out | head -n 1)"
    else
        check negative_control_fails FAIL "failed, but not with the delegation error: $(tail -c 300 /tmp/neg.out)"
    fi
    unset DOCKER_HOST
else
    check negative_control_fails FAIL "the bare dockerd box never answered: $(docker logs neg 2>&1 | tail -n 5)"
fi
timing negative "$t"
docker logs neg >$S/neg.log 2>&1
docker rm -f neg >/dev/null 2>&1

# ------------------------------------------------------------------ without --privileged (issue 15)
# The guest's dockerd again, now with --userns-remap and crun as its default
# runtime: crun chowns the cgroup of a container in a user namespace to that
# namespace's root (containers/crun#123), runc does not. A box with only the
# options of README "Without --privileged" then finds its cgroup delegated: init
# prepares it as for a privileged box (evacuation to /init, the budget parent
# /dindbox) and runs dockerd under rootlesskit as root of its user namespace,
# not rootless (cgroupfs driver, crun inside). Its inner containers must get
# their limits, under the box's budget, and a published port must answer in the
# box's own network namespace. The same box under runc (not delegated) must
# still come up rootless, saying why it has no cgroups.
say "box without --privileged: the guest's dockerd restarted with --userns-remap and crun"
t=$(now)
modprobe -q tun
chmod 0666 /dev/net/tun
kill "$(cat /var/run/docker.pid)" 2>/dev/null
for _ in $(seq 120); do [ -S /var/run/docker.sock ] || break; pidof dockerd >/dev/null || break; sleep 0.5; done
dockerd --data-root /var/lib/docker-remap --iptables=false --userns-remap=default \
    --add-runtime crun=/usr/bin/crun --default-runtime crun >$S/dockerd-remap.log 2>&1 &
for _ in $(seq 240); do docker version >/dev/null 2>&1 && break; sleep 0.25; done
tar -C $slim -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/dindbox", "init"]' \
    --change 'ENV container=docker' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - $IMAGE >/dev/null || check unpriv_box_ready FAIL "docker import on the userns-remap daemon failed"
# The inner runc's own error: the shim reports only runc's last line ("can't
# get final child's PID from pipe: EOF"); this runtime keeps runc's debug log.
cat >/usr/local/bin/runc-log <<'RUNCLOG'
#!/bin/sh
log= prev=
for a in "$@"; do [ "$prev" = --log ] && log=$a; prev=$a; done
runc --debug "$@"
rc=$?
if [ $rc != 0 ] && [ -n "$log" ]; then mkdir -p /tmp/runc-log && cp "$log" /tmp/runc-log/$$.json; fi
exit $rc
RUNCLOG
chmod 755 /usr/local/bin/runc-log
unpriv=(--security-opt seccomp=$S/seccomp-unprivileged.json --security-opt systempaths=unconfined --device /dev/net/tun)
# unpriv_box_checks PREFIX BOX IMAGE [DOCKER-RUN-ARGS...]: starts BOX from IMAGE
# without --privileged (plain TCP on PORT, the 256m budget) and checks, as
# PREFIXbox_ready etc., that init found its cgroup delegated and that through
# its proxy limited containers get their limits under the budget and a
# published port answers in the box. Leaves the box running.
unpriv_box_checks() {
    local p=$1 box=$2 image=$3 ip map said out ucid='' upid ucg ccg got gone
    shift 3
    docker run -d --name "$box" "${unpriv[@]}" -e PORT=$PORT -e DOCKER_TLS_CERTDIR= -e DINDBOX_MEMORY_LIMIT=256m \
        -e DINDBOX_READY_TIMEOUT=240 -v "$box-var:/var/lib/docker" "$@" "$image" >/dev/null
    ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$box")
    if ready=$(wait_ping "$ip" 240); then
        check "${p}box_ready" PASS "no --privileged, no capability added: GET /_ping on $ip:$PORT answered OK $(from_start "$box" "$ready")s after the start"
    else
        check "${p}box_ready" FAIL "no OK from $ip:$PORT within 240 s; $(docker logs "$box" 2>&1 | grep -vi 'level=info' | tail -n 4)"
    fi
    map=$(docker exec "$box" cat /proc/self/uid_map | tr -s ' ')
    if [ "$(echo "$map" | awk '{print $2}')" != 0 ] && [ -n "$map" ]; then
        check "${p}root_not_host" PASS "uid_map:$map"
    else
        check "${p}root_not_host" FAIL "uid_map: '$map'"
    fi
    said=$(docker logs "$box" 2>&1 | grep -o "box without --privileged[^\"]*" | head -n 1)
    case "$said" in
    *"delegated to the box's root"*) check "${p}delegated" PASS "init: $said" ;;
    *) check "${p}delegated" FAIL "init: ${said:-no mode line}" ;;
    esac
    export DOCKER_HOST=tcp://$ip:$PORT
    docker load -i /tmp/busybox.tar >/dev/null 2>/tmp/unpriv-load.err
    if out=$(docker run --rm busybox echo unpriv-ok 2>&1) && [ "$out" = unpriv-ok ]; then
        check "${p}run" PASS "docker run --rm busybox through the proxy of the box without --privileged"
    else
        check "${p}run" FAIL "$(cat /tmp/unpriv-load.err) $out"
    fi
    expect "${p}inner_cgroup_driver" "cgroupfs 2" "$(docker info -f '{{.CgroupDriver}} {{.CgroupVersion}}' 2>&1)" \
        "(docker info through the proxy: dockerd $(docker version -f '{{.Server.Version}}' 2>&1))"
    if ucid=$(run_limited ulimited 2>/tmp/urun.err); then
        out=$(first_logs ulimited)
        expect "${p}limited_memory_max" $MEM "$(echo "$out" | sed -n 1p)" "(inside the container)"
        expect "${p}limited_pids_max" $PIDS "$(echo "$out" | sed -n 2p)" "(inside the container)"
    else
        check "${p}limited_memory_max" FAIL "$(cat /tmp/urun.err)"
        check "${p}limited_pids_max" FAIL "$(cat /tmp/urun.err)"
    fi
    # A published port of a tenant's container answers in the box's own network
    # namespace (dockerd's docker-proxy listens in rootlesskit's).
    docker run -d --name web -p 8080:80 busybox \
        sh -c 'echo port-ok >/tmp/index.html; exec busybox httpd -f -p 80 -h /tmp' >/dev/null 2>/tmp/web.err ||
        say "web: $(cat /tmp/web.err)"
    unset DOCKER_HOST
    got=$(docker exec "$box" bash -c 'for i in $(seq 30); do
            if exec 3<>/dev/tcp/127.0.0.1/8080; then printf "GET /index.html HTTP/1.0\r\n\r\n" >&3; timeout 5 cat <&3; exit; fi
            sleep 0.5
        done' 2>/dev/null | tr -d '\r' | tail -n 1)
    # dockerd 28 passes the socket it bound (-use-listen-fd, fd 4); 20.10 lets docker-proxy bind.
    emit "V2 NOTE name=${p}docker_proxy_args detail=$(docker exec "$box" ps -eo args 2>&1 | grep -E '^[^ ]*docker-proxy ' | tr '\n' ';' | cut -c1-600)"
    expect "${p}published_port" port-ok "$got" "(GET 127.0.0.1:8080 in the box's network namespace, -p 8080:80 through the proxy$([ "$got" = port-ok ] || echo "; web: $(cat /tmp/web.err)"))"
    # ... and is gone with its container (the proxy removed it from rootlesskit's driver).
    DOCKER_HOST=tcp://$ip:$PORT docker rm -f web >/dev/null 2>&1
    gone=$(docker exec "$box" bash -c 'sleep 1; if exec 3<>/dev/tcp/127.0.0.1/8080; then echo still-listening; else echo closed; fi' 2>/dev/null)
    expect "${p}published_port_removed" closed "$gone" "(127.0.0.1:8080 in the box after docker rm -f web)"
    upid=$(docker inspect -f '{{.State.Pid}}' "$box")
    ucg=$(awk -F: '$1 == "0" {print $3}' /proc/"$upid"/cgroup)
    ucg=/sys/fs/cgroup${ucg%/init}
    emit "V2 NOTE name=${p}box_cgroup_seen_from_guest detail=$(stat -c '%n %u:%g' "$ucg" "$ucg/cgroup.procs" "$ucg/cgroup.subtree_control" 2>&1 | tr '\n' ' ')"
    expect "${p}budget_memory_max" $BUDGET "$(cat "$ucg/dindbox/memory.max" 2>&1)" "($ucg/dindbox, seen from the guest)"
    ccg=$(ls -d "$ucg"/dindbox/*"${ucid:-none}"* 2>/dev/null | head -n 1)
    if [ -n "$ucid" ] && [ -n "$ccg" ] && [ "$(cat "$ccg/memory.max")" = $MEM ] && [ "$(cat "$ccg/pids.max")" = $PIDS ]; then
        check "${p}limited_under_budget" PASS "${ccg#/sys/fs/cgroup}: memory.max $MEM, pids.max $PIDS, under the budget parent"
    else
        check "${p}limited_under_budget" FAIL "no limited cgroup of ${ucid:0:12} under $ucg/dindbox: $(ls "$ucg/dindbox" 2>&1 | tr '\n' ' ')"
    fi
}
unpriv_box_checks unpriv_ unpriv $IMAGE -e "DOCKERD_ARGS=$INNER_ARGS --add-runtime=runc-log=/usr/local/bin/runc-log" -v /usr:/usr:ro
# The inner runc, on the box's private socket (the proxy allows no runtime choice).
D="docker -H unix:///run/dindbox/docker.sock"
emit "V2 NOTE name=unpriv_inner_runc detail=$(docker exec unpriv $D run --rm --runtime runc-log busybox true 2>&1 | tail -n 1 | cut -c1-400)"
emit "V2 NOTE name=unpriv_inner_runc_limited detail=$(docker exec unpriv $D run --rm --runtime runc-log --memory 32m --pids-limit 64 busybox true 2>&1 | tail -n 1 | cut -c1-400)"
# Why runc cannot write 0 there: the oom_score_adj its process inherits.
emit "V2 NOTE name=unpriv_oom_score_adj detail=box init $(docker exec unpriv cat /proc/1/oom_score_adj 2>&1), inner dockerd $(docker exec unpriv sh -c 'cat /proc/$(cat /run/dindbox/xdg/docker.pid)/oom_score_adj' 2>&1), inner containerd-shims $(docker exec unpriv sh -c 'for p in $(pidof containerd-shim-runc-v2); do cat /proc/$p/oom_score_adj; done' 2>&1 | tr '\n' ' ')"
emit "V2 NOTE name=unpriv_inner_runc_log detail=$(docker exec unpriv sh -c 'cat /tmp/runc-log/*.json' 2>&1 | grep -o '"msg":"[^"]*"' | grep -v 'runc-log' | tail -n 10 | tr '\n' ' ' | cut -c1-2500)"
probe_escapes unpriv unpriv denied
probe_escapes_inner unpriv unpriv denied "--cap-add ALL --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
docker logs unpriv >$S/unpriv.log 2>&1
docker rm -f unpriv >/dev/null 2>&1

# Under runc (no delegation): rootless as before, with the reason in the log.
docker run -d --name unpriv-runc --runtime runc "${unpriv[@]}" -e PORT=$PORT -e DOCKERD_ARGS=$INNER_ARGS \
    -e DINDBOX_READY_TIMEOUT=240 -v unpriv-runc-var:/var/lib/docker -v /usr:/usr:ro $IMAGE >/dev/null
ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' unpriv-runc)
why=
if wait_ping "$ip" 240 >/dev/null; then
    export DOCKER_HOST=tcp://$ip:$PORT
    docker load -i /tmp/busybox.tar >/dev/null 2>&1
    out=$(docker run --rm busybox echo unpriv-ok 2>&1)
    unset DOCKER_HOST
    why=$(docker logs unpriv-runc 2>&1 | grep -o "dockerd runs rootless[^\"]*not delegated[^\"]*" | head -n 1)
    if [ "$out" = unpriv-ok ] && [ -n "$why" ]; then
        check unpriv_runc_rootless PASS "runs a container; init: $why"
    else
        check unpriv_runc_rootless FAIL "run: '$out'; init: $(docker logs unpriv-runc 2>&1 | grep -o "box without --privileged[^\"]*" | head -n 1)"
    fi
else
    check unpriv_runc_rootless FAIL "no OK from $ip:$PORT within 240 s; $(docker logs unpriv-runc 2>&1 | grep -vi 'level=info' | tail -n 4)"
fi
docker logs unpriv-runc >$S/unpriv-runc.log 2>&1
docker rm -f unpriv-runc >/dev/null 2>&1
timing unprivileged "$t"

# ------------------------------------------------------------------ the default image without --privileged
# The same checks on the product's default image (sid: dockerd 28.5, containerd
# 2.1, crun; scripts/test-cgroupv2.sh saved it to the share): dockerd 28 starts
# docker-proxy with -use-listen-fd, so the published port goes through that
# path of dindbox-docker-proxy (src/init/ports.rs).
if [ -f $S/dindbox-sid.tar ]; then
    say "box without --privileged from the default image (sid)"
    t=$(now)
    sid=$(docker load -i $S/dindbox-sid.tar 2>/tmp/sid-load.err | sed -n 's/^Loaded image: //p' | head -n 1)
    timing sid_image_load "$t"
    if [ -n "$sid" ]; then
        t=$(now)
        unpriv_box_checks sid_unpriv_ sid-unpriv "$sid" -e DOCKERD_ARGS=$INNER_ARGS
        docker logs sid-unpriv >$S/sid-unpriv.log 2>&1
        docker rm -f sid-unpriv >/dev/null 2>&1
        timing sid_unprivileged "$t"
    else
        check sid_image_load FAIL "docker load -i dindbox-sid.tar: $(tail -c 300 /tmp/sid-load.err)"
    fi
fi

# ------------------------------------------------------------------ benchmark
# Start to ready: a bare dockerd box (the negative control's setup) and a
# dindbox box, nothing else running; fresh volumes each round.
if [ "${box_ready:-}" ] && [ "${bare_ready:-}" ]; then
    emit "V2 BENCH name=box_ready_under_storm seconds=$box_ready"
    emit "V2 BENCH name=bare_ready seconds=$bare_ready"
fi
if [ "$BENCH" = 1 ]; then
    for r in $(seq "$BENCH_ROUNDS"); do
        docker run -d --name bare$r --privileged --cgroupns=private -v bare$r:/var/lib/docker -v /usr:/usr:ro \
            --entrypoint dockerd $IMAGE -H unix:///var/run/docker.sock -H tcp://0.0.0.0:$PORT --tls=false $INNER_ARGS >/dev/null
        ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' bare$r)
        ready=$(wait_ping "$ip" 180) && emit "V2 BENCH name=bare_ready seconds=$(from_start bare$r "$ready") round=$r"
        docker logs bare$r >$S/bench-bare$r.log 2>&1
        docker rm -f bare$r >/dev/null
        docker run -d --name quiet$r --privileged --cgroupns=private -e PORT=$PORT -e DINDBOX_MEMORY_LIMIT=256m -e DOCKERD_ARGS=$INNER_ARGS \
            -v quiet$r:/var/lib/docker -v /usr:/usr:ro $IMAGE >/dev/null
        ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' quiet$r)
        ready=$(wait_ping "$ip" 180) && emit "V2 BENCH name=box_ready seconds=$(from_start quiet$r "$ready") round=$r"
        docker logs quiet$r >$S/bench-box$r.log 2>&1
        docker rm -f quiet$r >/dev/null
    done
fi

timing guest_total "$T0"
dmesg >$S/dmesg.log 2>&1
emit "V2 DONE"
