# Sourced by scripts/bench-graphdriver.sh and scripts/bench-snapshotter.sh:
# a box on a host storage server against a box on the inner dockerd's own
# storage, taking turns within each round: `docker load` of the 6-layer image
# (`$image_tar` copied in as /gdbench-img.tar), then `$run_runs` runs of
# `docker run --rm $image true`. The caller sets `runs`, `run_runs` and
# `bench_dir` (the server's root and log), and calls storage_bench_setup first.

image=gdbench-img:latest
image_tar=$DINDBOX_CACHE/gdbench-image-v1.tar
direct="docker -H unix:///run/dindbox/docker.sock" # the CLI on the box's dockerd

# The common start, for the benchmark named $1: root, packages, the outer
# daemon, the box image (unless BENCH_SKIP_BUILD=1), `binary` (the dindbox
# that runs the server), the 6-layer image tarball and `image_mib`.
storage_bench_setup() {
    [ "$(id -u)" = 0 ] || die "the $1 benchmark needs root (the server mounts on the host)"
    ensure_packages
    docker_up_any
    export DINDBOX_DOCKER_HOST=$DOCKER_HOST # for build-image.sh
    if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then bash "$DINDBOX_REPO/scripts/build-image.sh"; fi
    binary=${DINDBOX_BINARY:-$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/dindbox}
    [ -x "$binary" ] || die "no dindbox binary at $binary (cargo build --release, or DINDBOX_BINARY=)"
    storage_bench_image
    image_mib=$(($(stat -c %s "$image_tar") / 1048576))
    say "image tarball $image_tar: $image_mib MiB"
}

storage_loadgen=
# `loadgen stats ARGS...` (examples/loadgen.rs), built on first use.
storage_stats() {
    if [ -z "$storage_loadgen" ]; then
        (cd "$DINDBOX_REPO" && cargo build --release --quiet --example loadgen)
        storage_loadgen=$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps |
            jq -r .target_directory)/release/examples/loadgen
    fi
    "$storage_loadgen" stats "$@"
}

# storage_server_start KIND BOX SOCKET [ARGS...]: starts `dindbox KIND-server
# -R $bench_dir/root -C BOX -S unix://SOCKET ARGS...` in the background (its
# log in $bench_dir/server.log, its pid in `server_pid`) and waits for SOCKET.
storage_server_start() {
    local kind=$1 box=$2 socket=$3
    shift 3
    say "starting the host $kind server (log $bench_dir/server.log)"
    setsid "$binary" "$kind-server" -R "$bench_dir/root" -C "$box" -S "unix://$socket" "$@" \
        >>"$bench_dir/server.log" 2>&1 </dev/null &
    server_pid=$!
    for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
    [ -S "$socket" ] || die "the $kind server did not start (log $bench_dir/server.log)"
}

# Waits for each box's dockerd and copies the image tarball in.
storage_boxes_ready() {
    local box t0
    for box in "$@"; do
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
}

# Fails unless box $1's dockerd runs on storage driver $2 (an image without
# the server's support would measure the box's own storage instead).
storage_expect_driver() {
    local driver
    driver=$(docker exec "$1" $direct info -f '{{.Driver}}')
    [ "$driver" = "$2" ] || die "box $1 runs on storage driver $driver, not $2: rebuild the image (unset BENCH_SKIP_BUILD)"
}

# Milliseconds of one `docker load` inside box $1.
storage_time_load() {
    docker exec "$1" sh -c "t0=\$(date +%s%N); $direct load -q -i /gdbench-img.tar >/dev/null &&
        echo \$(((\$(date +%s%N) - t0) / 1000000))"
}

# Milliseconds of each of `$run_runs` `docker run --rm IMG true` in box $1, one a line.
storage_time_runs() {
    docker exec "$1" sh -c "for i in \$(seq $run_runs); do t0=\$(date +%s%N);
        $direct run --rm $image true || exit 1; echo \$(((\$(date +%s%N) - t0) / 1000000)); done"
}

# storage_rounds SERVER_BOX NATIVE_BOX DIR: `$runs` rounds, the two boxes in
# turn (the first alternates); each box's load times go to DIR/load.BOX (a
# line a round) and its run times to DIR/run.BOX.
storage_rounds() {
    local server=$1 native=$2 dir=$3 i box ms order
    for ((i = 1; i <= runs; i++)); do
        if ((i % 2)); then order=("$server" "$native"); else order=("$native" "$server"); fi
        for box in "${order[@]}"; do
            ms=$(storage_time_load "$box")
            echo "$ms" >>"$dir/load.$box"
            storage_time_runs "$box" | tee -a "$dir/run.$box" >"$dir/round"
            docker exec "$box" $direct rmi "$image" >/dev/null
            say "round $i $box: load $ms ms, run median $(storage_stats median "$dir/round" 1) ms"
        done
    done
}

# storage_report TITLE SERVER_BOX SERVER_NAME NATIVE_BOX NATIVE_NAME DIR
storage_report() {
    local title=$1 server=$2 server_name=$3 native=$4 native_name=$5 dir=$6
    local load_s load_n run_s run_n paired
    load_s=$(storage_stats median "$dir/load.$server" 1)
    load_n=$(storage_stats median "$dir/load.$native" 1)
    run_s=$(storage_stats median "$dir/run.$server" 1)
    run_n=$(storage_stats median "$dir/run.$native" 1)
    paired=$(storage_stats ratio "$dir/load.$server" "$dir/load.$native" 1 inverse)
    echo
    echo "== $title ($(date -u +%FT%TZ), $(nproc) cores, image $image_mib MiB / 6 layers, N=$runs loads, $((runs * run_runs)) runs per setup)"
    echo "   load samples (ms): $server_name: $(tr '\n' ' ' <"$dir/load.$server")| $native_name: $(tr '\n' ' ' <"$dir/load.$native")"
    awk -v s="$load_s" -v n="$load_n" -v m="$image_mib" -v sn="$server_name" -v nn="$native_name" 'BEGIN {
        printf "docker load median: %s %6d ms (%5.1f MiB/s) | %s %6d ms (%5.1f MiB/s) | throughput ratio %.2f\n", sn, s, m * 1000 / s, nn, n, m * 1000 / n, n / s }'
    printf 'median of the per-round throughput ratios (each round ran both back to back): %.2f\n' "$paired"
    awk -v s="$run_s" -v n="$run_n" -v sn="$server_name" -v nn="$native_name" 'BEGIN {
        printf "docker run --rm true median: %s %4d ms | %s %4d ms | latency ratio %.2f\n", sn, s, nn, n, s / n }'
}

# storage_measure TITLE SERVER_BOX SERVER_NAME NATIVE_BOX NATIVE_NAME: waits
# for both boxes, checks that the first runs on the server's driver `dindbox`,
# runs the rounds and prints the report.
storage_measure() {
    local title=$1 server=$2 server_name=$3 native=$4 native_name=$5 samples=$bench_dir/samples
    storage_boxes_ready "$server" "$native"
    storage_expect_driver "$server" dindbox
    rm -rf "$samples" && mkdir -p "$samples"
    storage_rounds "$server" "$native" "$samples"
    storage_report "$title" "$server" "$server_name" "$native" "$native_name" "$samples"
}

# Stops the server `$1` (a pid, or empty), unmounts everything under the
# bench directory `$2` deepest first (the server's mounts, then the area's own
# bind), and removes the directory once nothing is mounted there.
storage_server_cleanup() {
    local pid=$1 dir=$2
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    [ -d "$dir" ] || return 0
    awk -v d="$dir/" 'index($5, d) == 1 {print length($5), $5}' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2- | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if ! awk -v d="$dir/" 'index($5, d) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
        rm -rf "$dir"
    fi
}

# The 6-layer image (about 200 MiB: three 55 MiB files, 4096 small ones, a
# deletion and an opaque directory) saved at `$image_tar`, built on the outer
# daemon the first time.
storage_bench_image() {
    [ -s "$image_tar" ] && return 0
    ensure_busybox_image
    local context
    context=$(mktemp -d)
    cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM busybox:latest
RUN mkdir -p /data && head -c 57671680 /dev/urandom >/data/a
RUN head -c 57671680 /dev/urandom >/data/b
RUN head -c 57671680 /dev/urandom >/data/c && mkdir -p /data/cache && echo x >/data/cache/old
RUN for d in $(seq 8); do mkdir -p /small/$d && for f in $(seq 512); do head -c 8192 /dev/urandom >/small/$d/$f || exit 1; done; done
RUN rm /data/a && rm -rf /data/cache && mkdir /data/cache && echo new >/data/cache/new
DOCKERFILE
    say "building $image (about 200 MiB, 6 layers) on the outer daemon"
    docker build -t "$image" "$context" >"$DINDBOX_CACHE/gdbench-build.log" 2>&1 ||
        die "building $image failed (log: $DINDBOX_CACHE/gdbench-build.log)"
    rm -rf "$context"
    docker save "$image" -o "$image_tar.tmp" && mv "$image_tar.tmp" "$image_tar"
    docker rmi "$image" >/dev/null
}
