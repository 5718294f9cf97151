#!/usr/bin/env bash
# The proxy snapshotter against containerd's own overlayfs snapshotter (issue
# 14, "Benchmark"). Run it through `BENCH_ONLY=snapshotter scripts/bench.sh`,
# or directly. Needs root (the server mounts on the host).
#
# Two boxes of $DINDBOX_IMAGE (the sid image: dockerd 28.5, containerd 2.1),
# both with the containerd image store, run side by side:
#   sn      on a host-side `dindbox snapshotter-server` (DINDBOX_SNAPSHOTTER;
#           the area's shared/ bound rslave at /var/lib/dindbox-snapshots, its
#           containerd/ at /var/lib/dindbox-containerd);
#   native  DINDBOX_CONTAINERD_STORE=1 on a docker volume: containerd's overlayfs.
# The ~200 MiB 6-layer image of scripts/bench-graphdriver.sh (built once on
# the outer daemon, cached in $DINDBOX_CACHE) is copied into each box. Then,
# N rounds, alternating which setup goes first:
#   - `docker load -i` of it inside the box (wall time measured in the box,
#     against dockerd's private socket, so the proxy is not measured);
#   - BENCH_SN_RUNS x `docker run --rm IMG true` (start latency);
#   - `docker rmi` (not timed), so the next round loads afresh.
# Medians, throughput (MiB/s) and the ratios sn/native are printed.
#
#   BENCH_RUNS=5            N (load rounds)
#   BENCH_SN_RUNS=10        `docker run` samples per round and setup
#   BENCH_SKIP_BUILD=1      use the existing $DINDBOX_IMAGE (build-image.sh)
#   DINDBOX_BINARY=path     the dindbox binary for the host server
#                           (default: target/release/dindbox of this repo)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=${BENCH_RUNS:-5}
run_runs=${BENCH_SN_RUNS:-10}
sn_box=snbench-sn
native_box=snbench-native
sn_volume=snbench-sn-data
native_volume=snbench-native-data
bench_dir=$DINDBOX_TEST_DIR/snbench
sockets=$bench_dir/sock
image=gdbench-img:latest
image_tar=$DINDBOX_CACHE/gdbench-image-v1.tar
direct="docker -H unix:///run/dindbox/docker.sock"

[ "$(id -u)" = 0 ] || die "the snapshotter benchmark needs root (the server mounts on the host)"
ensure_packages
docker_up_any
export DINDBOX_DOCKER_HOST=$DOCKER_HOST # for build-image.sh
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then bash "$DINDBOX_REPO/scripts/build-image.sh"; fi
binary=${DINDBOX_BINARY:-$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/dindbox}
[ -x "$binary" ] || die "no dindbox binary at $binary (cargo build --release, or DINDBOX_BINARY=)"

server_pid=
cleanup() {
    docker rm -f -v "$sn_box" "$native_box" >/dev/null 2>&1 || true
    docker volume rm "$sn_volume" "$native_volume" >/dev/null 2>&1 || true
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    # The server's mounts and its shared/ bind, deepest first.
    if [ -d "$bench_dir" ]; then
        awk -v d="$bench_dir/" 'index($5, d) == 1 {print length($5), $5}' /proc/self/mountinfo |
            sort -rn | cut -d' ' -f2- | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        if ! awk -v d="$bench_dir/" 'index($5, d) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
            rm -rf "$bench_dir"
        fi
    fi
}
trap cleanup EXIT
cleanup

[ -s "$image_tar" ] || die "no $image_tar: run BENCH_ONLY=graphdriver scripts/bench.sh once (it builds the image)"
image_mib=$(($(stat -c %s "$image_tar") / 1048576))
say "image tarball $image_tar: $image_mib MiB"

# ---------------------------------------------------------------- the boxes
mkdir -p "$bench_dir/root" "$sockets"
say "starting the host snapshotter server (log $bench_dir/server.log)"
setsid "$binary" snapshotter-server -R "$bench_dir/root" -C "$sn_box" \
    -S "unix://$sockets/snapshots.sock" >>"$bench_dir/server.log" 2>&1 </dev/null &
server_pid=$!
for _ in $(seq 100); do [ -S "$sockets/snapshots.sock" ] && break; sleep 0.1; done
[ -S "$sockets/snapshots.sock" ] || die "the snapshotter server did not start (log $bench_dir/server.log)"

docker run -d --privileged --name "$sn_box" -v "$sn_volume:/var/lib/docker" \
    --mount "type=bind,src=$bench_dir/root/$sn_box/shared,dst=/var/lib/dindbox-snapshots,bind-propagation=rslave,readonly" \
    -v "$bench_dir/root/$sn_box/containerd:/var/lib/dindbox-containerd" \
    -v "$sockets:/dindbox/snapshotter" -e DINDBOX_SNAPSHOTTER=unix:///dindbox/snapshotter/snapshots.sock \
    "$DINDBOX_IMAGE" >/dev/null
docker run -d --privileged --name "$native_box" -v "$native_volume:/var/lib/docker" \
    -e DINDBOX_CONTAINERD_STORE=1 "$DINDBOX_IMAGE" >/dev/null
for box in "$sn_box" "$native_box"; do
    t0=$(date +%s)
    until docker exec "$box" $direct version >/dev/null 2>&1; do
        if (($(date +%s) - t0 > 120)) || [ "$(docker inspect -f '{{.State.Running}}' "$box")" != true ]; then
            docker logs --tail 30 "$box" >&2 || true
            die "box $box not ready (log above)"
        fi
        sleep 0.2
    done
    docker cp "$image_tar" "$box:/gdbench-img.tar"
    say "$box ready: storage driver $(docker exec "$box" $direct info -f '{{.Driver}}')"
done
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }

# Milliseconds of one `docker load` inside the box.
time_load() {
    docker exec "$1" sh -c "t0=\$(date +%s%N); $direct load -q -i /gdbench-img.tar >/dev/null &&
        echo \$(((\$(date +%s%N) - t0) / 1000000))"
}
# Milliseconds of each of BENCH_SN_RUNS `docker run --rm IMG true`, one a line.
time_runs() {
    docker exec "$1" sh -c "for i in \$(seq $run_runs); do t0=\$(date +%s%N);
        $direct run --rm $image true || exit 1; echo \$(((\$(date +%s%N) - t0) / 1000000)); done"
}

declare -A loads runs_ms last
paired=() # per round: native load ms / sn load ms (the two ran back to back)
for ((i = 1; i <= runs; i++)); do
    if ((i % 2)); then order=("$sn_box" "$native_box"); else order=("$native_box" "$sn_box"); fi
    for box in "${order[@]}"; do
        ms=$(time_load "$box")
        loads[$box]+="$ms "
        last[$box]=$ms
        mapfile -t samples < <(time_runs "$box")
        runs_ms[$box]+="${samples[*]} "
        docker exec "$box" $direct rmi "$image" >/dev/null
        say "round $i $box: load $ms ms, run median $(printf '%s\n' "${samples[@]}" | median) ms"
    done
    paired+=("$(awk -v g="${last[$sn_box]}" -v n="${last[$native_box]}" 'BEGIN {printf "%d", n * 1000 / g}')")
done

load_sn=$(printf '%s\n' ${loads[$sn_box]} | median)
load_native=$(printf '%s\n' ${loads[$native_box]} | median)
run_sn=$(printf '%s\n' ${runs_ms[$sn_box]} | median)
run_native=$(printf '%s\n' ${runs_ms[$native_box]} | median)
echo
echo "== dindbox snapshotter bench ($(date -u +%FT%TZ), $(nproc) cores, image $image_mib MiB / 6 layers, N=$runs loads, $((runs * run_runs)) runs per setup)"
echo "   load samples (ms): sn: ${loads[$sn_box]}| native: ${loads[$native_box]}"
awk -v g="$load_sn" -v n="$load_native" -v m="$image_mib" 'BEGIN {
    printf "docker load median: snapshotter-server %6d ms (%5.1f MiB/s) | native overlayfs %6d ms (%5.1f MiB/s) | throughput ratio sn/native %.2f\n", g, m * 1000 / g, n, m * 1000 / n, n / g }'
awk -v r="$(printf '%s\n' "${paired[@]}" | median)" 'BEGIN {
    printf "median of the per-round throughput ratios sn/native (each round ran both back to back): %.2f\n", r / 1000 }'
awk -v g="$run_sn" -v n="$run_native" 'BEGIN {
    printf "docker run --rm true median: snapshotter-server %4d ms | native overlayfs %4d ms | latency ratio sn/native %.2f\n", g, n, g / n }'
