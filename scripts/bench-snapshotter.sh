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
source "$(dirname "${BASH_SOURCE[0]}")/lib-storage-bench.sh"

runs=${BENCH_RUNS:-5}
run_runs=${BENCH_SN_RUNS:-10}
sn_box=snbench-sn
native_box=snbench-native
sn_volume=snbench-sn-data
native_volume=snbench-native-data
bench_dir=$DINDBOX_TEST_DIR/snbench
sockets=$bench_dir/sock

storage_bench_setup snapshotter

server_pid=
cleanup() {
    docker rm -f -v "$sn_box" "$native_box" >/dev/null 2>&1 || true
    docker volume rm "$sn_volume" "$native_volume" >/dev/null 2>&1 || true
    storage_server_cleanup "$server_pid" "$bench_dir"
}
trap cleanup EXIT
cleanup

# ---------------------------------------------------------------- the boxes
mkdir -p "$bench_dir/root" "$sockets"
storage_server_start snapshotter "$sn_box" "$sockets/snapshots.sock"

docker run -d --privileged --name "$sn_box" -v "$sn_volume:/var/lib/docker" \
    --mount "type=bind,src=$bench_dir/root/$sn_box/shared,dst=/var/lib/dindbox-snapshots,bind-propagation=rslave,readonly" \
    -v "$bench_dir/root/$sn_box/containerd:/var/lib/dindbox-containerd" \
    -v "$sockets:/dindbox/snapshotter" -e DINDBOX_SNAPSHOTTER=unix:///dindbox/snapshotter/snapshots.sock \
    "$DINDBOX_IMAGE" >/dev/null
docker run -d --privileged --name "$native_box" -v "$native_volume:/var/lib/docker" \
    -e DINDBOX_CONTAINERD_STORE=1 "$DINDBOX_IMAGE" >/dev/null
storage_measure "dindbox snapshotter bench" "$sn_box" "snapshotter-server" "$native_box" "native overlayfs"
