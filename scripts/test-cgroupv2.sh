#!/usr/bin/env bash
# dindbox on a pure cgroup-v2 kernel, for real: a qemu guest (TCG; KVM cannot
# boot a stock kernel on this kind of machine) booted with cgroup_no_v1=all runs
# dockerd, then a privileged dindbox box built from the guest's own /usr with the
# freshly built release binary, and checks through the box's proxy that limited
# containers work, that init evacuated the box's root cgroup (also while
# processes race in) and that the memory budget parent carries its limit. A
# negative control (the same box with `--entrypoint dockerd`, no cgroup step)
# must fail the limited run. Then the guest's dockerd restarts with
# --userns-remap and crun as its default runtime, and a box without
# --privileged (README "Without --privileged") must find its cgroup delegated:
# through its proxy, limited containers under its budget and a published port
# answering in the box; the same box under runc must still come up rootless
# (docs/unprivileged-notes.md). Then the same checks on a box without
# --privileged from the product's default image (dindbox:dev, sid: dockerd 28.5
# with crun), built here by scripts/build-image.sh and `docker save`d into the
# share (V2_SID=0 skips it). Escape probes the VM's own kernel cannot run
# (sysrq, loading a module) against both the privileged box (the control: must
# get through) and the box without --privileged (must not). See README.md,
# "cgroup v2".
#
#   FORCE=1            rebuild the cached guest from scratch (debootstrap included)
#   FORCE=image        rebuild only the disk image and initramfs from the cached rootfs
#   BENCH=1            also time start-to-ready of a bare dockerd box vs a dindbox box
#   BENCH_ROUNDS=N     rounds of that (default 1)
#   DINDBOX_BINARY=P   test this binary instead of the static build (lib.sh build_static_binary)
#   V2_SID=0           no box from the default image (sid; saves ~210 s of guest time, 170 of them `docker load`)
#   V2_LIMIT=S         hard limit on the qemu run (default 720 s, +300 s with V2_SID, +150 s per BENCH round;
#                      SIGTERM at the limit, SIGKILL 10 s later)
#   V2_MEM=MB, V2_SMP=N   guest memory (1536) and vCPUs (1; see "Emulation" below)
#   DINDBOX_V2_CACHE=D the guest cache (default /var/cache/dindbox/v2guest)
#   V2_TUNING=ARGS     the clock part of the kernel command line (see "Emulation")
#   V2_RESULTS_ONLY=D  only parse and summarise the run directory D (no build, no boot)
#
# Cache: $DINDBOX_V2_CACHE/rootfs-<key>/ (debootstrap, ~1.1 GB), debs/ (the
# downloaded .debs), guest-<key>/{vmlinuz,initrd.img,guest.img}; <key> hashes
# the package list and the baked boot scripts. qemu runs with -snapshot: the
# image is never modified. Runs: $DINDBOX_TEST_DIR/v2runs/<stamp>/ (serial.log,
# share/: results.log, guest.log, dockerd.log, box.log); the last 5 are kept.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DINDBOX_REPO"

V2_CACHE=${DINDBOX_V2_CACHE:-$DINDBOX_CACHE/v2guest}
# rootlesskit, slirp4netns, uidmap: the box without --privileged (issue 15); crun:
# the runtime that delegates a user namespace's cgroup to its root (compared with runc there).
V2_PACKAGES=linux-image-amd64,docker.io,iptables,ca-certificates,procps,kmod,busybox-static,e2fsprogs,iproute2,rootlesskit,slirp4netns,uidmap,crun
BENCH=${BENCH:-0}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
V2_SID=${V2_SID:-1}
V2_LIMIT=${V2_LIMIT:-$((720 + (V2_SID == 1 ? 300 : 0) + (BENCH == 1 ? 150 * BENCH_ROUNDS : 0)))}
V2_MEM=${V2_MEM:-1536}
V2_SMP=${V2_SMP:-1}
FORCE=${FORCE:-}
HERE=scripts/cgroupv2
# What every guest-test.sh run must report; a missing one counts as a failure.
EXPECTED="guest_pure_v2 outer_dockerd_v2 box_proxy_ready exec_storm evacuation_under_race
box_init_cgroup box_root_procs_empty box_init_populated box_subtree_control budget_memory_max
limited_runs limited_memory_max limited_pids_max limited_under_budget negative_control_fails
unpriv_box_ready unpriv_root_not_host unpriv_delegated unpriv_run unpriv_inner_cgroup_driver
unpriv_limited_memory_max unpriv_limited_pids_max unpriv_published_port
unpriv_published_port_removed unpriv_budget_memory_max
unpriv_limited_under_budget unpriv_runc_rootless escape_sysrq_priv escape_module_priv
escape_sysrq_unpriv escape_module_unpriv escape_sysrq_inner_priv escape_module_inner_priv
escape_sysrq_inner_unpriv escape_module_inner_unpriv"
if [ "$V2_SID" = 1 ]; then
    EXPECTED+=" sid_unpriv_box_ready sid_unpriv_root_not_host sid_unpriv_delegated sid_unpriv_run
sid_unpriv_inner_cgroup_driver sid_unpriv_limited_memory_max sid_unpriv_limited_pids_max
sid_unpriv_published_port sid_unpriv_published_port_removed sid_unpriv_budget_memory_max
sid_unpriv_limited_under_budget"
fi

t_start=$(date +%s)
elapsed() { echo $(($(date +%s) - t_start)); }

# ------------------------------------------------------------------ packages
ensure_v2_packages() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    command -v cpio >/dev/null || missing+=(cpio)
    dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (apt-get install them as root)" || return 1
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    } || die "apt-get install ${missing[*]} failed"
}

# ------------------------------------------------------------------ the guest
rootfs_key() { printf '%s\n' "bookworm minbase $V2_PACKAGES" | md5sum | cut -c1-12; }
guest_key() {
    { rootfs_key; cat "$HERE/initrd-init.sh" "$HERE/guest-boot.sh"; declare -f build_guest; } |
        md5sum | cut -c1-12
}

ensure_rootfs() { # prints the rootfs directory
    local key root log t0
    key=$(rootfs_key)
    root=$V2_CACHE/rootfs-$key
    if [ "$FORCE" = 1 ]; then rm -rf "$root"; fi
    if [ ! -d "$root" ]; then
        mkdir -p "$V2_CACHE/debs"
        rm -rf "$root.tmp"
        log=$V2_CACHE/debootstrap-$key.log
        say "debootstrap bookworm with $V2_PACKAGES (3-4 min; log $log)"
        t0=$(date +%s)
        # INITRD=No: the kernel's postinst hook skips mkinitramfs (the guest
        # boots the mini initramfs built below; Debian's is never used).
        INITRD=No debootstrap --variant=minbase --cache-dir="$V2_CACHE/debs" --include="$V2_PACKAGES" \
            bookworm "$root.tmp" "$DINDBOX_DEBIAN_MIRROR" >"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            die "debootstrap failed (log: $log)" || return 1
        }
        rm -rf "$root.tmp"/var/lib/apt/lists/* "$root.tmp"/var/cache/apt/archives/*.deb
        mv "$root.tmp" "$root"
        say "debootstrap took $(($(date +%s) - t0)) s"
    fi
    echo "$root"
}

# Kernel, mini initramfs (static busybox + the virtio-blk/ext4 modules), and
# an ext4 image of the rootfs (mkfs.ext4 -d: no loop mount) with the boot script.
build_guest() { # ROOTFS OUT
    local root=$1 out=$2 kver work m
    kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    work=$out.tmp/initrd
    mkdir -p "$work/bin" "$work/modules"
    cp "$root/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
    cp /bin/busybox "$work/bin/busybox"
    cp "$HERE/initrd-init.sh" "$work/init"
    chmod 755 "$work/init"
    # modprobe resolves the dependencies against the guest's modules, in load order.
    # (The guest's own modprobe, chrooted, so the host needs no kmod.)
    chroot "$root" modprobe -a -S "$kver" --show-depends virtio_pci virtio_blk crc32c_generic ext4 |
        awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++' >"$out.tmp/modules.txt" || return 1
    [ -s "$out.tmp/modules.txt" ] || die "no modules found for the initramfs" || return 1
    : >"$work/modules.list"
    while read -r m; do
        m=${m#"$root"}
        cp "$root$m" "$work/modules/" || return 1
        basename "$m" >>"$work/modules.list"
    done <"$out.tmp/modules.txt"
    (cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp/initrd.img"
    install -m 755 "$HERE/guest-boot.sh" "$root/sbin/dindbox-v2boot"
    mkdir -p "$root/mnt/share"
    mkfs.ext4 -q -F -L v2root -E root_owner=0:0 -d "$root" "$out.tmp/guest.img" 6G >&2 || return 1
    rm -rf "$work"
    rm -rf "$out" && mv "$out.tmp" "$out"
}

ensure_guest() { # prints the guest directory
    local key out root t0
    key=$(guest_key)
    out=$V2_CACHE/guest-$key
    if [ -n "$FORCE" ]; then rm -rf "$out"; fi
    if [ ! -s "$out/guest.img" ]; then
        root=$(ensure_rootfs) || return 1
        t0=$(date +%s)
        say "building the guest image $out"
        build_guest "$root" "$out" >&2 || die "guest image build failed" || return 1
        say "guest image built in $(($(date +%s) - t0)) s"
        # Older keys are garbage now.
        find "$V2_CACHE" -maxdepth 1 -name 'guest-*' ! -name "guest-$key" -exec rm -rf {} + || true
    else
        say "reusing the cached guest $out"
    fi
    echo "$out"
}

# ------------------------------------------------------------------ main
if [ -n "${V2_RESULTS_ONLY:-}" ]; then
    run=$V2_RESULTS_ONLY t_build=0 t_guest=0 t_qemu=0
    qemu_rc=$(cat "$run/qemu.rc" 2>/dev/null || echo '?')
else
ensure_v2_packages

if [ -n "${DINDBOX_BINARY:-}" ]; then
    binary=$DINDBOX_BINARY
else
    build_static_binary # the binary the image carries
    binary=$(static_binary_path)
fi
[ -x "$binary" ] || die "no dindbox binary at $binary"
if [ "$V2_SID" = 1 ]; then
    # The default image with this binary, on the daemon build-image.sh picks.
    DINDBOX_BINARY=$binary scripts/build-image.sh
    docker_up_any
fi
t_build=$(elapsed)

guest=$(ensure_guest)
t_guest=$(elapsed)

runs=$DINDBOX_TEST_DIR/v2runs
run=$runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$run/share"
# shellcheck disable=SC2012
ls -1d "$runs"/*/ 2>/dev/null | sort | head -n -5 | xargs -r rm -rf
cp "$binary" "$run/share/dindbox"
cp "$HERE/guest-test.sh" "$run/share/guest-test.sh"
cp image/seccomp-unprivileged.json "$run/share/seccomp-unprivileged.json"
cp tests/e2e/escape_probes.sh "$run/share/escape_probes.sh"
printf 'BENCH=%s\nBENCH_ROUNDS=%s\n' "$BENCH" "$BENCH_ROUNDS" >"$run/share/env"
if [ "$V2_SID" = 1 ]; then
    say "docker save $DINDBOX_IMAGE into the share"
    docker save "$DINDBOX_IMAGE" -o "$run/share/dindbox-sid.tar"
fi

# apparmor=0: the guest has no apparmor_parser, so its dockerd cannot load the
# docker-default profile, and a box's inner dockerd (which sees AppArmor through
# the securityfs init mounts) would refuse every container for want of it.
#
# Emulation. One vCPU by default. With two (MTTCG, a host thread each) a run
# now and then froze for good right at the box's start: runc's mkdir of the
# first memory cgroup flips a static key, the kernel live-patches its code with
# int3 (text_poke_bp) while the other vCPU runs it, and one vCPU then loops on
# a stale int3 in kmem_cache_alloc forever (RCU stall backtraces in serial.log;
# the guest clock kept pace with the host's, so not slowness). With one vCPU
# nobody else runs the code being patched. V2_SMP=2 is faster on a quiet host
# but can hang that way.
# clocksource=tsc tsc=reliable (V2_TUNING): TCG's TSC is one monotonic counter
# derived from the host clock, but with two vCPUs the kernel failed to
# calibrate it and took HPET, and the clocksource watchdog may do the same
# later under load; every Go program's clock read then leaves the vDSO for an
# emulated device. (A deliberate 2-vCPU HPET run took 79 s, no slower than
# with the TSC; this is about keeping the clock sane, not speed.)
# A real hang fails fast instead of eating the whole limit: a soft lockup of
# 60 s (watchdog_thresh=30) or an RCU stall of 60 s panics, panic=-1 reboots,
# -no-reboot ends qemu; the backtraces (loglevel=5) are in serial.log.
V2_APPEND="root=/dev/vda rw console=ttyS0 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 apparmor=0"
V2_APPEND+=" ${V2_TUNING-clocksource=tsc tsc=reliable} watchdog_thresh=30 softlockup_panic=1 softlockup_all_cpu_backtrace=1"
V2_APPEND+=" rcupdate.rcu_cpu_stall_timeout=60 sysctl.kernel.panic_on_rcu_stall=1 loglevel=5"
say "booting the guest (TCG, ${V2_SMP} vCPU(s), ${V2_MEM} MB, limit ${V2_LIMIT} s); serial: $run/serial.log"
t0=$(date +%s)
set +e
timeout --kill-after=10 "$V2_LIMIT" qemu-system-x86_64 \
    -accel tcg,thread=multi,tb-size=512 -cpu qemu64 -m "$V2_MEM" -smp "$V2_SMP" -machine q35 \
    -nographic -no-reboot -nic none -snapshot \
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" \
    -append "$V2_APPEND ${V2_APPEND_EXTRA:-}" \
    -drive "file=$guest/guest.img,format=raw,if=virtio,cache=unsafe" \
    -virtfs "local,path=$run/share,mount_tag=share,security_model=none,id=share" \
    </dev/null 2>&1 | tee "$run/serial.log" | grep --line-buffered -E '^V2 (CHECK|TIME|BENCH|LOG|FATAL|NOTE)' >&2
qemu_rc=${PIPESTATUS[0]}
set -e
t_qemu=$(($(date +%s) - t0))
echo "$qemu_rc" >"$run/qemu.rc"
rm -f "$run/share/dindbox-sid.tar" # ~600 MB, and the last 5 runs are kept
fi

# ------------------------------------------------------------------ results

results=$run/share/results.log
[ -f "$results" ] || results=/dev/null
# failed: checks the guest reported as FAIL; missing: expected but never reported.
pass=0 failed=0 missing=0 lines=()
for name in $EXPECTED; do
    line=$(grep -m1 "^V2 CHECK name=$name " "$results" || true)
    case "$line" in
    *" result=PASS "*) pass=$((pass + 1)) lines+=("PASS  $name: ${line#*detail=}") ;;
    *" result=FAIL "*) failed=$((failed + 1)) lines+=("FAIL  $name: ${line#*detail=}") ;;
    *) missing=$((missing + 1)) lines+=("FAIL  $name: not reported") ;;
    esac
done
# Any other failing check (box_image, box_import) fails the run too.
while read -r line; do
    name=${line#V2 CHECK name=}
    name=${name%% *}
    failed=$((failed + 1)) lines+=("FAIL  $name: ${line#*detail=}")
done < <(grep '^V2 CHECK .* result=FAIL ' "$results" | grep -vE "name=($(echo $EXPECTED | tr ' ' '|')) ")
fail=$((failed + missing))
done_seen=$(grep -c '^V2 DONE' "$results" || true)

echo
echo "== cgroup v2 (qemu guest, cgroup_no_v1=all): $pass passed, $fail failed"
printf '  %s\n' "${lines[@]}"
bench() { awk -v n="$1" '$1 == "V2" && $2 == "BENCH" && $3 == "name=" n { split($4, a, "="); s += a[2]; c++ } END { if (c) printf "%.2f", s / c }' "$results"; }
box=$(bench box_ready) bare=$(bench bare_ready) storm=$(bench box_ready_under_storm)
if [ -n "$bare" ]; then
    [ -z "$box" ] || echo "  bench: start to ready, dindbox box ${box}s vs bare dockerd ${bare}s: ratio $(awk -v a="$box" -v b="$bare" 'BEGIN { printf "%.2f", a / b }')"
    [ -z "$storm" ] || echo "  bench: dindbox box under the exec storm ${storm}s vs bare dockerd ${bare}s: ratio $(awk -v a="$storm" -v b="$bare" 'BEGIN { printf "%.2f", a / b }') (BENCH=1 for the quiet figure)"
fi
grep '^V2 TIME' "$results" | sed 's/^V2 TIME name=/  guest time: /; s/ seconds=/ /; s/$/ s/' || true
grep '^V2 NOTE' "$results" | sed 's/^V2 NOTE name=/  note: /' || true
echo "  host: build ${t_build}s, guest ready at ${t_guest}s, qemu ${t_qemu}s (rc $qemu_rc), total $(elapsed)s, load average $(cut -d' ' -f1-3 /proc/loadavg); run dir $run"
if [ "$done_seen" = 0 ]; then
    echo "  FAIL: the guest did not finish (qemu rc $qemu_rc$([ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ] && echo ": killed at the ${V2_LIMIT} s limit")); tail of $run/serial.log:"
    grep -m 4 -E 'soft lockup|rcu.*stall|Kernel panic|RIP: 0010' "$run/serial.log" | sed 's/^/    kernel: /' || true
    grep -vE '^\[ *[0-9.]+\] +(R[0-9A-Z]{2}|FS|CS|CR2|Code):' "$run/serial.log" | tail -n 12 | sed 's/^/    /'
    if [ "$failed" = 0 ]; then
        # No reported check failed, the rest never came: the emulated guest
        # hung (see "Emulation" above) or died. Not a verdict on dindbox.
        echo "cgroup v2: HUNG ($missing check(s) not reported, none failed; exit 75 so the caller may retry)"
        exit 75
    fi
    fail=$((fail + 1))
fi
[ "$fail" = 0 ] && echo "cgroup v2: PASS" || echo "cgroup v2: FAIL"
[ "$fail" = 0 ]
