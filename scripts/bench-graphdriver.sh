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
[ "$DINDBOX_SUITE" != sid ] || die "the graphdriver benchmark needs dockerd 20.10-27: DINDBOX_SUITE=bookworm or trixie"

runs=${BENCH_RUNS:-5}
run_runs=${BENCH_GD_RUNS:-10}
gd_box=gdbench-gd
native_box=gdbench-native
native_volume=gdbench-native-data
bench_dir=$DINDBOX_TEST_DIR/gdbench
area=$bench_dir/root/$gd_box
sockets=$bench_dir/sock
image=gdbench-img:latest
image_tar=$DINDBOX_CACHE/gdbench-image-v1.tar
direct="docker -H unix:///run/dindbox/docker.sock"

[ "$(id -u)" = 0 ] || die "the graphdriver benchmark needs root (it makes a shared bind mount on the host)"
ensure_packages
docker_up_any
export DINDBOX_DOCKER_HOST=$DOCKER_HOST # for build-image.sh
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then bash "$DINDBOX_REPO/scripts/build-image.sh"; fi
binary=${DINDBOX_BINARY:-$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/dindbox}
[ -x "$binary" ] || die "no dindbox binary at $binary (cargo build --release, or DINDBOX_BINARY=)"

server_pid=
cleanup() {
    docker rm -f -v "$gd_box" "$native_box" >/dev/null 2>&1 || true
    docker volume rm "$native_volume" >/dev/null 2>&1 || true
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    # The server's overlay mounts, then the area's own bind mount, deepest first.
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

# ---------------------------------------------------------------- the image
if [ ! -s "$image_tar" ]; then
    ensure_busybox_image
    context=$(mktemp -d)
    cat >"$context/Dockerfile" <<'EOF'
FROM busybox:latest
RUN mkdir -p /data && head -c 57671680 /dev/urandom >/data/a
RUN head -c 57671680 /dev/urandom >/data/b
RUN head -c 57671680 /dev/urandom >/data/c && mkdir -p /data/cache && echo x >/data/cache/old
RUN for d in $(seq 8); do mkdir -p /small/$d && for f in $(seq 512); do head -c 8192 /dev/urandom >/small/$d/$f || exit 1; done; done
RUN rm /data/a && rm -rf /data/cache && mkdir /data/cache && echo new >/data/cache/new
EOF
    say "building $image (about 200 MiB, 6 layers) on the outer daemon"
    docker build -t "$image" "$context" >"$DINDBOX_CACHE/gdbench-build.log" 2>&1 ||
        die "building $image failed (log: $DINDBOX_CACHE/gdbench-build.log)"
    rm -rf "$context"
    docker save "$image" -o "$image_tar.tmp" && mv "$image_tar.tmp" "$image_tar"
    docker rmi "$image" >/dev/null
fi
image_mib=$(($(stat -c %s "$image_tar") / 1048576))
say "image tarball $image_tar: $image_mib MiB"

# ---------------------------------------------------------------- the boxes
mkdir -p "$area" "$sockets"
mount --bind "$area" "$area"
mount --make-shared "$area"
say "starting the host graphdriver server (log $bench_dir/server.log)"
setsid "$binary" graphdriver-server -R "$bench_dir/root" -C "$gd_box" --driver overlay \
    -S "unix://$sockets/dindbox.sock" >>"$bench_dir/server.log" 2>&1 </dev/null &
server_pid=$!
for _ in $(seq 100); do [ -S "$sockets/dindbox.sock" ] && break; sleep 0.1; done
[ -S "$sockets/dindbox.sock" ] || die "the graphdriver server did not start (log $bench_dir/server.log)"

docker run -d --privileged --name "$gd_box" \
    --mount "type=bind,src=$area,dst=/var/lib/docker,bind-propagation=rslave" \
    -v "$sockets:/dindbox/graphdriver" -e DINDBOX_GRAPHDRIVER=unix:///dindbox/graphdriver/dindbox.sock \
    "$DINDBOX_IMAGE" >/dev/null
docker run -d --privileged --name "$native_box" -v "$native_volume:/var/lib/docker" "$DINDBOX_IMAGE" >/dev/null
for box in "$gd_box" "$native_box"; do
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
# Milliseconds of each of BENCH_GD_RUNS `docker run --rm IMG true`, one a line.
time_runs() {
    docker exec "$1" sh -c "for i in \$(seq $run_runs); do t0=\$(date +%s%N);
        $direct run --rm $image true || exit 1; echo \$(((\$(date +%s%N) - t0) / 1000000)); done"
}

declare -A loads runs_ms last
paired=() # per round: native load ms / gd load ms (the two ran back to back)
for ((i = 1; i <= runs; i++)); do
    if ((i % 2)); then order=("$gd_box" "$native_box"); else order=("$native_box" "$gd_box"); fi
    for box in "${order[@]}"; do
        ms=$(time_load "$box")
        loads[$box]+="$ms "
        last[$box]=$ms
        mapfile -t samples < <(time_runs "$box")
        runs_ms[$box]+="${samples[*]} "
        docker exec "$box" $direct rmi "$image" >/dev/null
        say "round $i $box: load $ms ms, run median $(printf '%s\n' "${samples[@]}" | median) ms"
    done
    paired+=("$(awk -v g="${last[$gd_box]}" -v n="${last[$native_box]}" 'BEGIN {printf "%d", n * 1000 / g}')")
done

load_gd=$(printf '%s\n' ${loads[$gd_box]} | median)
load_native=$(printf '%s\n' ${loads[$native_box]} | median)
run_gd=$(printf '%s\n' ${runs_ms[$gd_box]} | median)
run_native=$(printf '%s\n' ${runs_ms[$native_box]} | median)
echo
echo "== dindbox graphdriver bench ($(date -u +%FT%TZ), $(nproc) cores, image $image_mib MiB / 6 layers, N=$runs loads, $((runs * run_runs)) runs per setup)"
echo "   load samples (ms): gd: ${loads[$gd_box]}| native: ${loads[$native_box]}"
awk -v g="$load_gd" -v n="$load_native" -v m="$image_mib" 'BEGIN {
    printf "docker load median: graphdriver-server (overlay) %6d ms (%5.1f MiB/s) | native overlay2 %6d ms (%5.1f MiB/s) | throughput ratio gd/native %.2f\n", g, m * 1000 / g, n, m * 1000 / n, n / g }'
awk -v r="$(printf '%s\n' "${paired[@]}" | median)" 'BEGIN {
    printf "median of the per-round throughput ratios gd/native (each round ran both back to back): %.2f\n", r / 1000 }'
awk -v g="$run_gd" -v n="$run_native" 'BEGIN {
    printf "docker run --rm true median: graphdriver-server %4d ms | native overlay2 %4d ms | latency ratio gd/native %.2f\n", g, n, g / n }'
