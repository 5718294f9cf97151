#!/usr/bin/env bash
# The proxy graphdriver against the inner daemon's own overlay2 (issue 5,
# "Benchmark"). Run it through `BENCH_ONLY=graphdriver scripts/bench.sh`, or
# directly. Needs root (a shared bind mount on the host).
#
# Two boxes of $DINDBOX_IMAGE (the bookworm image by default) run side by side:
#   gd      its /var/lib/docker is a host area (rslave) served by a host-side
#           `dindbox graphdriver-server` (overlay driver);
#   native  its /var/lib/docker is a docker volume: the inner overlay2.
# A ~200 MiB multi-layer image (busybox, three 55 MiB random layers, a layer
# of 4096 small files, a layer with a whiteout and an opaque directory) is
# built once on the outer daemon, saved to $DINDBOX_CACHE and copied into each
# box's root file system (/gdbench-img.tar: init's tmpfs on /tmp would hide
# it from `docker cp`). Then, N rounds, alternating which setup goes first:
#   - `docker load -i` of it inside the box (wall time measured in the box,
#     against dockerd's private socket, so the proxy is not measured);
#   - BENCH_GD_RUNS x `docker run --rm IMG true` (start latency);
#   - `docker rmi` (not timed), so the next round loads afresh.
# Medians, throughput (MiB/s) and the ratios gd/native are printed.
#
#   BENCH_RUNS=5            N (load rounds)
#   BENCH_GD_RUNS=10        `docker run` samples per round and setup
#   BENCH_SKIP_BUILD=1      use the existing $DINDBOX_IMAGE (build-image.sh)
#   DINDBOX_BINARY=path     the dindbox binary for the host server
#                           (default: target/release/dindbox of this repo)
#   DINDBOX_SUITE=bookworm  the boxes' base: bookworm (dockerd 20.10) or trixie (26.1);
#                           dockerd 28 (the default sid image) has no graphdriver plugins
set -euo pipefail
# Before lib.sh, which names the image after the suite (dindbox:dev-bookworm).
export DINDBOX_SUITE=${DINDBOX_SUITE:-bookworm}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib-storage-bench.sh"
[ "$DINDBOX_SUITE" != sid ] || die "the graphdriver benchmark needs dockerd 20.10-27: DINDBOX_SUITE=bookworm or trixie"

runs=${BENCH_RUNS:-5}
run_runs=${BENCH_GD_RUNS:-10}
gd_box=gdbench-gd
native_box=gdbench-native
native_volume=gdbench-native-data
bench_dir=$DINDBOX_TEST_DIR/gdbench
area=$bench_dir/root/$gd_box
sockets=$bench_dir/sock

storage_bench_setup graphdriver

server_pid=
cleanup() {
    docker rm -f -v "$gd_box" "$native_box" >/dev/null 2>&1 || true
    docker volume rm "$native_volume" >/dev/null 2>&1 || true
    storage_server_cleanup "$server_pid" "$bench_dir"
}
trap cleanup EXIT
cleanup

# ---------------------------------------------------------------- the boxes
mkdir -p "$area" "$sockets"
mount --bind "$area" "$area"
mount --make-shared "$area"
storage_server_start graphdriver "$gd_box" "$sockets/dindbox.sock" --driver overlay

docker run -d --privileged --name "$gd_box" \
    --mount "type=bind,src=$area,dst=/var/lib/docker,bind-propagation=rslave" \
    -v "$sockets:/dindbox/graphdriver" -e DINDBOX_GRAPHDRIVER=unix:///dindbox/graphdriver/dindbox.sock \
    "$DINDBOX_IMAGE" >/dev/null
docker run -d --privileged --name "$native_box" -v "$native_volume:/var/lib/docker" "$DINDBOX_IMAGE" >/dev/null
storage_measure "dindbox graphdriver bench" "$gd_box" "graphdriver-server (overlay)" "$native_box" "native overlay2"
