# shellcheck shell=bash
# Shared helpers for run.sh, build-image.sh, bench.sh, test.sh and the e2e tests.
# Source it: `source scripts/lib.sh`. It sets no shell options of its own.
#
# Everything heavy lives outside the repo:
#   $DINDBOX_TEST_DIR/outer/   the private outer dockerd (socket, data root, exec root, pid, log)
#   $DINDBOX_CACHE/            debootstrap base tarball, busybox rootfs and image tarball

DINDBOX_TEST_DIR=${DINDBOX_TEST_DIR:-/var/lib/dindbox-test}
DINDBOX_CACHE=${DINDBOX_CACHE:-/var/cache/dindbox}
DINDBOX_OUTER_DIR=${DINDBOX_OUTER_DIR:-$DINDBOX_TEST_DIR/outer}
DINDBOX_OUTER_SOCK=$DINDBOX_OUTER_DIR/docker.sock
# The Debian suite of the debootstrapped base: sid (dockerd 28.5, the default),
# trixie (26.1) or bookworm (20.10). Its image is dindbox-base:<suite>.
DINDBOX_DEFAULT_SUITE=sid
DINDBOX_SUITE=${DINDBOX_SUITE:-$DINDBOX_DEFAULT_SUITE}
DINDBOX_BASE_IMAGE=${DINDBOX_BASE_IMAGE:-dindbox-base:$DINDBOX_SUITE}
# The image built on it: dindbox:dev on sid, dindbox:dev-<suite> on the others.
if [ "$DINDBOX_SUITE" = "$DINDBOX_DEFAULT_SUITE" ]; then
    DINDBOX_IMAGE=${DINDBOX_IMAGE:-dindbox:dev}
else
    DINDBOX_IMAGE=${DINDBOX_IMAGE:-dindbox:dev-$DINDBOX_SUITE}
fi

# Prints the Debian archive this machine's apt uses: the first URI (deb822
# .sources or one-line sources.list) that serves a suite other than *-security.
# The project names no mirror of its own; DINDBOX_DEBIAN_MIRROR overrides.
debian_mirror_from_apt() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822: stanzas split by blank lines; "URIs:" and "Suites:" fields.
        awk 'function flush() { if (uri != "" && suites != "" && suites !~ /-security/) { print uri; found = 1; exit } uri = ""; suites = "" }
             /^[[:space:]]*$/ { flush(); next }
             /^URIs:/ { uri = $2 } /^Suites:/ { $1 = ""; suites = $0 }
             END { if (!found) flush() }' "$f" | head -n 1
    done | head -n 1 | grep . && return 0
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
             if ($(i + 1) !~ /-security/) { print $i; exit } }' | grep .
}
DINDBOX_DEBIAN_MIRROR=${DINDBOX_DEBIAN_MIRROR:-$(debian_mirror_from_apt || true)}

# What the debootstrapped base of a suite holds (debootstrap --include); part of
# the cache key. debootstrap installs no Recommends, so docker-cli is named.
# apparmor: apparmor_parser, which the inner dockerd needs on AppArmor hosts.
dindbox_base_packages() {
    case $1 in
    bookworm) echo docker.io,iptables,ca-certificates,procps,apparmor ;;
    trixie) echo docker.io,docker-cli,iptables,ca-certificates,procps,apparmor ;;
    sid) echo docker.io,docker-cli,docker-buildx,docker-compose,containerd,runc,iptables,ca-certificates,procps,apparmor ;;
    *) die "unknown Debian suite '$1' (bookworm | trixie | sid)" ;;
    esac
}
DINDBOX_BASE_PACKAGES=$(dindbox_base_packages "$DINDBOX_SUITE" 2>/dev/null || true)
BUSYBOX_TAR=$DINDBOX_CACHE/busybox.tar
DINDBOX_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The Debian daemon is 20.10: use its classic builder (no buildx needed).
export DOCKER_BUILDKIT=0

say() { printf '[dindbox %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '[dindbox] error: %s\n' "$*" >&2
    return 1
}

# ---------------------------------------------------------------- packages

# Installs what the scripts need when it is missing (apt, root only).
ensure_packages() {
    local missing=() cmd pkg
    # docker-compose: Debian's compose v1 (python); bookworm has no compose v2
    # plugin, and the e2e compose test talks to boxes with it.
    # golang-go: tests/go_differential.rs checks the proxy's parsers against Go's.
    # binutils: readelf, with which build-image.sh checks that the binary is static.
    # docker-registry: a registry the e2e tests run on a box's loopback (tests/e2e/tags.rs
    # pulls through the proxy); its package does not start it.
    # socat: the blind relay scripts/bench-smallcalls.sh measures the proxy against.
    # protoc: the containerd-snapshots crate generates its gRPC code at build time.
    # ip, nsenter: the userns-remap daemon's network namespace (userns_docker_up) and
    # the CLI in it (tests/e2e/unprivileged.rs).
    for pair in dockerd:docker.io docker:docker.io debootstrap:debootstrap \
        iptables:iptables jq:jq pgrep:procps setsid:util-linux \
        docker-compose:docker-compose go:golang-go readelf:binutils \
        docker-registry:docker-registry socat:socat protoc:protobuf-compiler \
        ip:iproute2 nsenter:util-linux; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # The inner test image needs a *static* busybox.
    dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" != 0 ]; then
        die "missing packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
        return 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq || die "apt-get update failed" || return 1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed" || return 1
}

# ---------------------------------------------------------------- binaries

# Prints the glibc NSS entry points linked into the ELF file $1 (one a line;
# nothing when there are none). In a static glibc (2.36 here) they still read
# /etc/hosts, /etc/passwd and DNS themselves (the files and dns backends are
# built in), but any other backend nsswitch.conf names (systemd, sss, ldap, ...)
# is dlopen()ed from libnss_*.so of the exact glibc it was built with: absent on
# Alpine or in an empty image, so such a lookup answers differently there.
# dindbox links none: it takes IP literals, numeric ids and socket paths.
nss_symbols() {
    command -v nm >/dev/null 2>&1 || die "nm not found (package binutils)" || return 1
    nm "$1" 2>/dev/null | awk '$2 ~ /^[TtWw]$/ {print $3}' | grep -E '^(getaddrinfo|gethostbyname2?(_r)?|gethostbyaddr(_r)?|getnameinfo|getservby(name|port)(_r)?|getpw(nam|uid|ent)(_r)?|getgr(nam|gid|ent)(_r)?|getgrouplist|initgroups|getspnam(_r)?|getprotobyname(_r)?)$' | sort -u || true
}

# The host's target triple (x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu, ...).
host_triple() {
    local triple
    triple=$(rustc -vV | sed -n 's/^host: //p')
    [ -n "$triple" ] || die "rustc -vV printed no host triple" || return 1
    echo "$triple"
}

# Where build_static_binary leaves the binary: target/<triple>/release/dindbox.
static_binary_path() {
    local triple
    triple=$(host_triple) || return 1
    echo "$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/$triple/release/dindbox"
}

# Builds the static dindbox (glibc linked in) and checks it is static. The
# explicit --target keeps RUSTFLAGS off build scripts and proc-macros (which
# cannot be static) and puts the result in target/<triple>/release.
build_static_binary() {
    local triple t0 binary why nss
    triple=$(host_triple) || return 1
    say "cargo build --release --target $triple (static: +crt-static)"
    t0=$(date +%s)
    # Run from `cargo test` (the e2e harness), our environment holds what cargo
    # sets for a test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). Build scripts
    # that track those (ring's) would rebuild every time it differs from a build
    # from a shell: drop them, so both share one build.
    local var unset=()
    for var in $(compgen -e); do
        case $var in
        CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_BIN_EXE_* | \
            CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_CFG_* | OUT_DIR) unset+=(-u "$var") ;;
        esac
    done
    (cd "$DINDBOX_REPO" && env "${unset[@]}" RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --bin dindbox --target "$triple") || return 1
    binary=$(static_binary_path) || return 1
    why=$(static_elf "$binary") || die "the static build made a dynamic binary: $binary ($why)" || return 1
    say "cargo build took $(($(date +%s) - t0)) s; $binary is static ($why)"
    nss=$(nss_symbols "$binary" | paste -sd' ' -)
    [ -z "$nss" ] || say "warning: the static binary links glibc NSS lookups ($nss): beyond" \
        "/etc files and DNS they need libnss_*.so of this glibc (absent on Alpine); see nss_symbols"
}

# Succeeds when the ELF file $1 is static: no PT_INTERP (no dynamic loader asked
# for) and no DT_NEEDED (no shared library). A static-pie (what +crt-static makes
# on x86_64 and arm64 gnu) has a dynamic section for its own relocations, but
# neither of those. Prints why, either way.
static_elf() {
    local file=$1 headers dynamic
    command -v readelf >/dev/null 2>&1 ||
        die "readelf not found (package binutils); cannot check that $file is static" || return 1
    headers=$(readelf -lW "$file" 2>&1) || {
        echo "not an ELF file: $headers"
        return 1
    }
    dynamic=$(readelf -dW "$file" 2>&1) || true
    if grep -q 'INTERP' <<<"$headers"; then
        echo "it asks for $(grep -o 'interpreter: [^]]*' <<<"$headers" || echo 'a program interpreter')"
        return 1
    fi
    if grep -q '(NEEDED)' <<<"$dynamic"; then
        echo "it needs $(grep '(NEEDED)' <<<"$dynamic" | grep -o '\[.*\]' | tr -d '[]' | paste -sd, -)"
        return 1
    fi
    if grep -q 'Elf file type is DYN' <<<"$headers"; then
        echo "static-pie: no PT_INTERP, no DT_NEEDED"
    else
        echo "no PT_INTERP, no DT_NEEDED"
    fi
}

# ---------------------------------------------------------------- outer docker

# Capability names by number (include/uapi/linux/capability.h).
_CAP_NAMES=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE)

# Prints the capabilities (CAP_X, one a line) that this machine's bounding set lacks.
# `docker run --privileged` asks runc for all of them and fails with
# "unable to apply caps: operation not permitted" when one is missing.
caps_missing_from_bounding_set() {
    local bnd last i
    bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
    last=$(cat /proc/sys/kernel/cap_last_cap)
    for ((i = 0; i <= last && i < ${#_CAP_NAMES[@]}; i++)); do
        if ((((bnd >> i) & 1) == 0)); then echo "CAP_${_CAP_NAMES[$i]}"; fi
    done
}

# Installs scripts/runc-drop-caps at PATH, with PATH.conf telling it the real
# runc and the capabilities (args) to strip from every OCI config.json
# (`create`/`run --bundle`) and `exec --process` file.
_install_runc_wrapper() {
    local path=$1 runc drop
    shift
    runc=$(command -v runc) || die "runc not found" || return 1
    drop=$(printf '%s\n' "$@" | jq -R . | jq -cs .)
    {
        echo "# This machine's capability bounding set lacks: $*."
        echo "DROP='$drop'"
        echo "RUNC='$runc'"
    } >"$path.conf.tmp"
    install -m 755 "$DINDBOX_REPO/scripts/runc-drop-caps" "$path.tmp"
    mv "$path.conf.tmp" "$path.conf"
    mv "$path.tmp" "$path"
}

_outer_answers() { DOCKER_HOST=unix://$DINDBOX_OUTER_SOCK timeout 10 docker version >/dev/null 2>&1; }

# Starts (or reuses) the private outer dockerd and exports DOCKER_HOST for it.
# Only one outer dockerd may run on a machine (they would fight over docker0).
outer_docker_up() {
    local dir=$DINDBOX_OUTER_DIR pid missing rt=() i
    if _outer_answers; then
        export DOCKER_HOST=unix://$DINDBOX_OUTER_SOCK
        say "outer dockerd already up: DOCKER_HOST=$DOCKER_HOST"
        return 0
    fi
    mkdir -p "$dir/root" "$dir/exec"
    if [ -s "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        say "outer dockerd $(cat "$dir/pid") is not answering; waiting for it"
    else
        rm -f "$dir/pid"
        for pid in $(pgrep -x dockerd || true); do
            die "another dockerd (pid $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline)) is running;" \
                "two outer daemons fight over docker0. Stop it, or use it:" \
                "DINDBOX_DOCKER_HOST=unix:///var/run/docker.sock" || return 1
        done
        mapfile -t missing < <(caps_missing_from_bounding_set)
        if [ ${#missing[@]} -gt 0 ]; then
            say "bounding set lacks ${missing[*]}: outer dockerd gets the dindbox-runc wrapper"
            _install_runc_wrapper "$dir/dindbox-runc" "${missing[@]}" || return 1
            rt=(--add-runtime "dindbox-runc=$dir/dindbox-runc" --default-runtime dindbox-runc)
        fi
        say "starting outer dockerd (log: $dir/dockerd.log)"
        # setsid: a Ctrl-C or the end of a test process group must not kill it.
        setsid dockerd --host "unix://$DINDBOX_OUTER_SOCK" --data-root "$dir/root" \
            --exec-root "$dir/exec" --pidfile "$dir/pid" "${rt[@]}" \
            >>"$dir/dockerd.log" 2>&1 </dev/null &
        pid=$!
    fi
    for ((i = 0; i < 120; i++)); do
        if _outer_answers; then
            export DOCKER_HOST=unix://$DINDBOX_OUTER_SOCK
            say "outer dockerd up: DOCKER_HOST=$DOCKER_HOST"
            return 0
        fi
        if [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$dir/dockerd.log" >&2
            die "outer dockerd exited during startup (log above: $dir/dockerd.log)" || return 1
        fi
        sleep 0.5
    done
    tail -n 30 "$dir/dockerd.log" >&2
    die "outer dockerd did not answer on $DINDBOX_OUTER_SOCK within 60 s"
}

# Stops the private outer dockerd (if it runs) and waits for it to exit.
outer_docker_down() {
    local pidfile=$DINDBOX_OUTER_DIR/pid pid i
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || {
        rm -f "$pidfile"
        return 0
    }
    say "stopping outer dockerd $pid"
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    say "outer dockerd $pid ignored SIGTERM for 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# Uses the host's Docker when /var/run/docker.sock answers; returns 1 otherwise.
use_host_docker_if_any() {
    if [ -S /var/run/docker.sock ] &&
        DOCKER_HOST=unix:///var/run/docker.sock timeout 10 docker version >/dev/null 2>&1; then
        export DOCKER_HOST=unix:///var/run/docker.sock
        say "using the host's Docker: DOCKER_HOST=$DOCKER_HOST"
        return 0
    fi
    return 1
}

# ---------------------------------------------------------------- images

# Imports a debootstrapped Debian rootfs of SUITE (default $DINDBOX_SUITE; cached
# as a tarball under $DINDBOX_CACHE) as IMAGE (default dindbox-base:SUITE).
# Signatures are checked against the host's debian-archive-keyring; the archive
# snapshot's expired Valid-Until does not stop debootstrap.
ensure_base_image() {
    local suite=${1:-$DINDBOX_SUITE} image=${2:-} packages key tarball root log t0
    [ -n "$image" ] || if [ "$suite" = "$DINDBOX_SUITE" ]; then image=$DINDBOX_BASE_IMAGE; else image=dindbox-base:$suite; fi
    if docker image inspect "$image" >/dev/null 2>&1; then return 0; fi
    packages=$(dindbox_base_packages "$suite") || return 1
    key=$(printf '%s\n' "$suite minbase $packages" | md5sum | cut -c1-12)
    tarball=$DINDBOX_CACHE/base-$suite-$key.tar
    log=$DINDBOX_CACHE/debootstrap-$suite.log
    mkdir -p "$DINDBOX_CACHE"
    if [ ! -s "$tarball" ]; then
        [ -n "$DINDBOX_DEBIAN_MIRROR" ] ||
            die "no Debian mirror in this machine's apt sources; set DINDBOX_DEBIAN_MIRROR" || return 1
        root=$DINDBOX_CACHE/base-rootfs-$suite.tmp
        rm -rf "$root"
        say "debootstrapping $suite with $packages from $DINDBOX_DEBIAN_MIRROR (a few minutes)"
        t0=$(date +%s)
        debootstrap --variant=minbase --include="$packages" \
            "$suite" "$root" "$DINDBOX_DEBIAN_MIRROR" >"$log" 2>&1 || {
            tail -n 30 "$log" >&2
            die "debootstrap of $suite failed (log: $log)" || return 1
        }
        # Downloaded .debs and package lists only make the image bigger.
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
        # The archive snapshot's Release files are past Valid-Until: apt in the box
        # (and the Dockerfile's fallback install) would refuse them.
        echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99dindbox-snapshot"
        tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
        say "debootstrap of $suite took $(($(date +%s) - t0)) s; cached $tarball"
    fi
    say "importing $tarball as $image"
    docker import --change 'CMD ["/bin/bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tarball" "$image" >/dev/null
}

# Makes busybox:latest (a busybox-static rootfs) in the current DOCKER_HOST and
# $BUSYBOX_TAR (`docker save` of it) for loading into inner daemons.
ensure_busybox_image() {
    local root=$DINDBOX_CACHE/busybox-rootfs rootfs_tar=$DINDBOX_CACHE/busybox-rootfs.tar applet
    mkdir -p "$DINDBOX_CACHE"
    if ! docker image inspect busybox:latest >/dev/null 2>&1; then
        if [ ! -s "$rootfs_tar" ]; then
            rm -rf "$root"
            mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev,var}
            chmod 1777 "$root/tmp"
            cp /bin/busybox "$root/bin/busybox"
            for applet in $("$root/bin/busybox" --list); do
                [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
            done
            echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
            echo 'root:x:0:' >"$root/etc/group"
            tar --numeric-owner -C "$root" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
            rm -rf "$root"
        fi
        docker import --change 'CMD ["sh"]' --change 'ENV PATH=/bin' \
            "$rootfs_tar" busybox:latest >/dev/null
        rm -f "$BUSYBOX_TAR"
        say "imported busybox:latest"
    fi
    if [ ! -s "$BUSYBOX_TAR" ]; then
        docker save busybox:latest -o "$BUSYBOX_TAR.tmp" && chmod 644 "$BUSYBOX_TAR.tmp" && mv "$BUSYBOX_TAR.tmp" "$BUSYBOX_TAR"
    fi
}

# ---------------------------------------------------------------- boxes

# Waits until `docker version` answers on $1 (a DOCKER_HOST), at most $2 seconds.
wait_docker_api() {
    local host=$1 limit=${2:-60} start
    start=$(date +%s)
    while ! DOCKER_HOST=$host timeout 5 docker version >/dev/null 2>&1; do
        if (($(date +%s) - start >= limit)); then return 1; fi
        sleep 0.2
    done
}

# Makes DOCKER_HOST point at the daemon that runs boxes: $DINDBOX_DOCKER_HOST
# if set, else the host's, else the private outer one (started if needed).
# A DOCKER_HOST already in the environment is ignored on purpose: after
# `eval "$(scripts/run.sh)"` it points at a box, which refuses --privileged.
docker_up_any() {
    if [ -n "${DINDBOX_DOCKER_HOST:-}" ]; then
        export DOCKER_HOST=$DINDBOX_DOCKER_HOST
        timeout 10 docker version >/dev/null 2>&1 ||
            die "DINDBOX_DOCKER_HOST=$DINDBOX_DOCKER_HOST does not answer \`docker version\`" || return 1
        say "using DINDBOX_DOCKER_HOST=$DOCKER_HOST"
        return 0
    fi
    unset DOCKER_HOST
    use_host_docker_if_any || outer_docker_up
}

# ---------------------------------------------------------------- userns-remap daemon

# A second daemon, started with --userns-remap=default, for boxes without
# --privileged (tests/e2e/unprivileged.rs). It lives in a network namespace of
# its own (`unshare -n`): two daemons on one network namespace fight over
# docker0. Its socket, data root, exec root and pid file are under
# $DINDBOX_USERNS_DIR; its containers are reached with
# `nsenter --net=/proc/$(cat $DINDBOX_USERNS_DIR/pid)/ns/net`.
DINDBOX_USERNS_DIR=${DINDBOX_USERNS_DIR:-$DINDBOX_TEST_DIR/userns}
DINDBOX_USERNS_SOCK=$DINDBOX_USERNS_DIR/docker.sock

_userns_answers() { DOCKER_HOST=unix://$DINDBOX_USERNS_SOCK timeout 10 docker version >/dev/null 2>&1; }

# Starts (or reuses) the userns-remap daemon; prints its DOCKER_HOST. A box
# without --privileged gets /dev/net/tun (slirp4netns); its root is not the
# host's, so the node must be 0666 as udev makes it (a bare devtmpfs has 0600).
userns_docker_up() {
    local dir=$DINDBOX_USERNS_DIR i pid
    if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
        say "chmod 0666 /dev/net/tun (was $(stat -c %a /dev/net/tun); udev's default is 0666)"
        chmod 0666 /dev/net/tun || return 1
    fi
    if _userns_answers; then
        echo "unix://$DINDBOX_USERNS_SOCK"
        return 0
    fi
    mkdir -p "$dir/root" "$dir/exec"
    if [ -s "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        say "userns-remap dockerd $(cat "$dir/pid") is not answering; waiting for it"
    else
        rm -f "$dir/pid"
        say "starting the userns-remap dockerd in its own network namespace (log: $dir/dockerd.log)"
        # --userns-remap=default adds the user dockremap and its /etc/subuid range.
        setsid unshare -n sh -c 'ip link set lo up && exec "$@"' sh \
            dockerd --host "unix://$DINDBOX_USERNS_SOCK" --data-root "$dir/root" \
            --exec-root "$dir/exec" --pidfile "$dir/pid" --userns-remap=default \
            >>"$dir/dockerd.log" 2>&1 </dev/null &
        pid=$!
    fi
    for ((i = 0; i < 120; i++)); do
        if _userns_answers; then
            echo "unix://$DINDBOX_USERNS_SOCK"
            return 0
        fi
        if [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$dir/dockerd.log" >&2
            die "userns-remap dockerd exited during startup (log: $dir/dockerd.log)" || return 1
        fi
        sleep 0.5
    done
    die "userns-remap dockerd did not answer on $DINDBOX_USERNS_SOCK within 60 s"
}

# Stops the userns-remap daemon (its network namespace goes with it).
userns_docker_down() {
    local pidfile=$DINDBOX_USERNS_DIR/pid pid i
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    say "stopping the userns-remap dockerd $pid"
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Copies IMAGE from the current DOCKER_HOST into the daemon at $1 unless it
# already has the same image id.
copy_image_to() {
    local to=$1 image=$2 id
    id=$(docker image inspect -f '{{.Id}}' "$image") || return 1
    [ "$(DOCKER_HOST=$to docker image inspect -f '{{.Id}}' "$image" 2>/dev/null)" = "$id" ] && return 0
    say "copying $image to $to"
    docker save "$image" | DOCKER_HOST=$to docker load >/dev/null
}
