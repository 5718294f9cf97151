#!/usr/bin/env bash
# The box without --privileged against the privileged box (issue 15), side by
# side: time from `docker run` (fresh volume) to the first `docker version`
# through the proxy, and `docker run --rm busybox true` through the proxy once
# the box is ready. The privileged box runs on the outer daemon, the other on
# the userns-remap daemon (scripts/lib.sh userns_docker_up, in a network
# namespace of its own, so its CLI runs under nsenter); the two take turns.
# Root only. `BENCH_ONLY=unprivileged bash scripts/bench.sh` runs it.
#
#   BENCH_RUNS=5            boxes started per mode (medians)
#   BENCH_RUN_TRUE=10       `docker run --rm busybox true` per box (medians)
#   BENCH_PORT=23791        the box's port on the loopback of its daemon's netns
#   BENCH_SKIP_BUILD=1      use the existing $DINDBOX_IMAGE
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (a second dockerd, in its own network namespace)"

runs=${BENCH_RUNS:-5}
run_true=${BENCH_RUN_TRUE:-10}
port=${BENCH_PORT:-23791}
name=dindbox-bench-unpriv
volume=$name-data

ensure_packages
outer_docker_up >/dev/null
outer=$DOCKER_HOST
export DINDBOX_DOCKER_HOST=$outer
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then bash "$DINDBOX_REPO/scripts/build-image.sh"; fi
ensure_busybox_image
userns=$(userns_docker_up)
copy_image_to "$userns" "$DINDBOX_IMAGE"
netns=/proc/$(cat "$DINDBOX_USERNS_DIR/pid")/ns/net

seccomp=$DINDBOX_REPO/image/seccomp-unprivileged.json
declare -A daemon=([privileged]=$outer [unprivileged]=$userns)
declare -A options=([privileged]="--privileged"
    [unprivileged]="--security-opt seccomp=$seccomp --security-opt systempaths=unconfined --device /dev/net/tun")

cli() { # mode docker-args... : the CLI where the box's published port is
    local mode=$1
    shift
    if [ "$mode" = unprivileged ]; then
        DOCKER_HOST=tcp://127.0.0.1:$port nsenter --net="$netns" docker "$@"
    else
        DOCKER_HOST=tcp://127.0.0.1:$port docker "$@"
    fi
}
cleanup() {
    local mode
    for mode in privileged unprivileged; do
        DOCKER_HOST=${daemon[$mode]} docker rm -f -v "$name" >/dev/null 2>&1 || true
        DOCKER_HOST=${daemon[$mode]} docker volume rm "$volume" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

ready_ms() { # mode -> ms from docker run to the first docker version through the proxy
    local mode=$1 t0
    cleanup
    t0=$(date +%s%N)
    # shellcheck disable=SC2086 # the options are words
    DOCKER_HOST=${daemon[$mode]} docker run -d --name "$name" ${options[$mode]} \
        -e PORT=2375 -e DOCKER_TLS_CERTDIR= -p "127.0.0.1:$port:2375" \
        -v "$volume:/var/lib/docker" "$DINDBOX_IMAGE" >/dev/null
    until cli "$mode" version >/dev/null 2>&1; do
        if (($(ms_since "$t0") > 120000)); then
            DOCKER_HOST=${daemon[$mode]} docker logs --tail 30 "$name" >&2 || true
            die "$mode box not ready within 120 s (log above)"
        fi
        sleep 0.05
    done
    ms_since "$t0"
}

run_true_ms() { # mode -> one ms figure per `docker run --rm busybox true`
    local mode=$1 i t0
    cli "$mode" load -q -i "$BUSYBOX_TAR" >/dev/null
    cli "$mode" run --rm busybox true # warm-up, untimed
    for ((i = 0; i < run_true; i++)); do
        t0=$(date +%s%N)
        cli "$mode" run --rm busybox true
        ms_since "$t0"
    done
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

declare -A ready_samples run_samples
for ((r = 1; r <= runs; r++)); do
    for mode in privileged unprivileged; do
        ms=$(ready_ms "$mode")
        ready_samples[$mode]+="$ms "
        run_samples[$mode]+="$(run_true_ms "$mode" | tr '\n' ' ')"
        say "$mode round $r: ready in $ms ms"
    done
done
cleanup

echo
echo "== dindbox bench: without --privileged ($(date -u +%FT%TZ), $(nproc) cores, image $DINDBOX_IMAGE, $runs boxes per mode, $run_true runs per box)"
printf '  %-13s %14s %28s\n' mode "ready (median)" "run --rm busybox true (median)"
for mode in privileged unprivileged; do
    printf '  %-13s %11s ms %25s ms\n' "$mode" \
        "$(tr ' ' '\n' <<<"${ready_samples[$mode]}" | grep . | median)" \
        "$(tr ' ' '\n' <<<"${run_samples[$mode]}" | grep . | median)"
done
