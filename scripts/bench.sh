#!/usr/bin/env bash
# Benchmarks (reported in notes, not timed tests).
#
#   1. Readiness: time from `docker run` of a box (fresh volume) to the first
#      successful `docker version`, for
#        (a) dindbox:     the image as shipped, plain TCP (`-e PORT=2375 -e DOCKER_TLS_CERTDIR=`)
#        (b) dindbox-tls: the image as shipped with TLS (`-e DOCKER_TLS_CERTDIR=/certs`, port
#                         2376, fresh certificates each run, the CLI with the client certificate)
#        (c) bare-unix:   the same image with `--entrypoint dockerd -H unix:///run/bench/docker.sock`,
#                         the socket's directory bound from the host (the baseline)
#        (d) bare-tcp:    the same image with `--entrypoint dockerd -H tcp://0.0.0.0:2375 --tls=false`
#      (`--tls=false` is explicit because dockerd 20.10 to 28 sleep 15 s on a plain TCP
#      listener otherwise; they still sleep 1 s, which no flag avoids: hence (c)).
#      Median of N runs, and the ratios to (c).
#   2. Idle RSS of the dindbox process (PID 1 of the box).
#   3. Proxy overhead: GET /_ping and GET /containers/json through the proxy's
#      unix socket against dockerd's private socket directly, from inside a
#      box (examples/loadgen.rs): p50/p99 latency and req/s with 1 and 64
#      concurrent clients, BENCH_SECONDS each (default 5), and the ratios;
#      and streaming: 1 GiB of `docker exec` stdout and `docker load` of a
#      500 MiB image, with the docker CLI inside the box, proxied vs direct.
#
#   4. The proxy graphdriver against the inner overlay2: `docker load` of a
#      ~200 MiB multi-layer image and `docker run` start latency
#      (scripts/bench-graphdriver.sh; root only).
#   5. Adversarial bodies (issue 11): the release proxy in front of fake-dockerd,
#      the time to decide on three hostile JSON bodies and a bystander's /_ping
#      p99 while 4 clients send them, next to its p99 with no load
#      (scripts/bench-adversarial.sh; needs no Docker).
#
#   6. Create latency: N `POST /containers/create` of busybox (examples/loadgen.rs
#      `create`), through the proxy's socket and on dockerd's private socket in
#      turn, from inside a box (each container removed, untimed): p50/p99 and
#      the ratios.
#   7. BuildKit: `docker buildx build` of a small multi-stage project (FROM the
#      local busybox: no registry) with the box's own buildx CLI, through the
#      proxy's socket against dockerd's private socket, without and with the
#      build cache: medians of N and the ratios. Needs a base with buildx (sid, the default).
#   8. The owner-mode tag lock (issue 11): BENCH_TAGS `docker tag` of busybox to
#      free tags, one after another, on dockerd's socket, through the box's proxy
#      (no owner: one check) and through a standalone `dindbox proxy --owner-label`
#      in the box (checks, and a lock container created and removed per tag):
#      milliseconds a tag (medians of N rounds) and the ratios to dockerd's socket.
#
#   DINDBOX_SUITE=suite     the base (sid: 28.5, the default; trixie: 26.1; bookworm: 20.10);
#                           DINDBOX_IMAGE names the image (scripts/lib.sh)
#   BENCH_ONLY=box          parts 1-3 and 6-8 (the default minus 4 and 5)
#   BENCH_ONLY=ready        part 1 (and 2)
#   BENCH_ONLY=create       part 6
#   BENCH_ONLY=buildx       part 7
#   BENCH_ONLY=taglock      part 8
#   BENCH_TAGS=20           tags a socket a round in part 8
#   BENCH_ONLY=graphdriver  part 4 only (default: all, part 4 when root)
#   BENCH_ONLY=adversarial  part 5 only
#   BENCH_ONLY=snapshotter  the proxy snapshotter against containerd's own overlayfs
#                           (scripts/bench-snapshotter.sh; root only; not in the default run)
#   BENCH_ONLY=unprivileged the box without --privileged against the privileged box:
#                           ready time and `docker run --rm busybox true` (scripts/bench-unprivileged.sh; root)
#   BENCH_ONLY=smallcalls   the proxy's cost on small calls on the host, against
#                           dockerd's socket, socat and a tokio relay (scripts/bench-smallcalls.sh)
#   BENCH_CREATES=200       creates per socket in part 6
#   BENCH_RUNS=5            N
#   BENCH_PORT=23790        host port used by the bench boxes
#   BENCH_SKIP_BUILD=1      use the existing $DINDBOX_IMAGE
#   BENCH_ONLY=proxy        only part 3 (proxy overhead and streaming)
#   BENCH_SECONDS=5         seconds per loadgen run
#   BENCH_ROUNDS=1          part 3 is repeated this many times, the targets taking
#                           turns within each round; the figures are medians
#   BENCH_BASELINE_BINARY=path  another dindbox binary (e.g. the previous commit's)
#                           run in the same box as a standalone `dindbox proxy` and
#                           measured beside the box's proxy and the direct socket
#   BENCH_RELAY=1           also measure examples/relay.rs in the box: a plain byte
#                           copier between the same sockets, the floor of any proxy
#                           that adds one unix-socket hop
#   BENCH_NAME=dindbox-bench    name of the box, and prefix of its volume
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${BENCH_ONLY:-} in
'' | box | ready | proxy | create | buildx | taglock) ;;
graphdriver) exec bash "$DINDBOX_REPO/scripts/bench-graphdriver.sh" ;;
snapshotter) exec bash "$DINDBOX_REPO/scripts/bench-snapshotter.sh" ;;
adversarial) exec bash "$DINDBOX_REPO/scripts/bench-adversarial.sh" ;;
smallcalls) exec bash "$DINDBOX_REPO/scripts/bench-smallcalls.sh" ;;
unprivileged) exec bash "$DINDBOX_REPO/scripts/bench-unprivileged.sh" ;;
*) die "BENCH_ONLY=$BENCH_ONLY: use box, ready, proxy, create, buildx, taglock, smallcalls, unprivileged, graphdriver, snapshotter or adversarial (unset: everything)" ;;
esac

runs=${BENCH_RUNS:-5}
port=${BENCH_PORT:-23790}
# box: every part that runs in a box; the others: that part alone.
only=${BENCH_ONLY:-all}
if [ "$only" = box ]; then only=all; fi
want() { [ "$only" = all ] || [ "$only" = "$1" ]; }
creates=${BENCH_CREATES:-200}
tags=${BENCH_TAGS:-20}
seconds=${BENCH_SECONDS:-5}
rounds=${BENCH_ROUNDS:-1}
api=tcp://127.0.0.1:$port
name=${BENCH_NAME:-dindbox-bench}
volume=$name-data

if [ "$(id -u)" = 0 ]; then ensure_packages; fi
docker_up_any
outer=$DOCKER_HOST
export DINDBOX_DOCKER_HOST=$outer # for build-image.sh
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then bash "$DINDBOX_REPO/scripts/build-image.sh"; fi
# examples/loadgen.rs: the load in the box, and the statistics here.
(cd "$DINDBOX_REPO" && cargo build --release --quiet --example loadgen --example relay)
target_dir=$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
# `stats median FILE COLUMN` (FILE - is stdin), `stats ratio FILE BASE COLUMN
# [inverse]`: the median of per-round ratios (see examples/loadgen.rs).
stats() { "$target_dir/release/examples/loadgen" stats "$@"; }

# Bound into the bare-unix box (its socket) and the TLS box (its certificates).
bench_dir=$(mktemp -d -t dindbox-bench.XXXXXX)
cleanup() { docker rm -f -v "$name" >/dev/null 2>&1 || true; docker volume rm "$volume" >/dev/null 2>&1 || true; }
trap 'cleanup; rm -rf "$bench_dir"' EXIT

# The CLI's environment for the box being timed.
ready_env=(DOCKER_HOST=$api)
# Prints milliseconds from `docker run` (these args) to the first `docker
# version` that works with $ready_env.
time_to_ready() { # docker-run args...
    local t0 now
    cleanup
    t0=$(date +%s%N)
    docker run -d --privileged --name "$name" -v "$volume:/var/lib/docker" "$@" >/dev/null
    until env "${ready_env[@]}" timeout 5 docker version >/dev/null 2>&1; do
        now=$(date +%s%N)
        if (((now - t0) > 120000000000)) || [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
            docker logs --tail 30 "$name" >&2 || true
            die "bench box not ready (log above)"
        fi
        sleep 0.05
    done
    echo $((($(date +%s%N) - t0) / 1000000))
}

# The box the other parts use: the image as shipped, plain TCP.
plain_box() {
    ready_env=(DOCKER_HOST=$api)
    time_to_ready -e PORT=2375 -e DOCKER_TLS_CERTDIR= -p "127.0.0.1:$port:2375" "$DINDBOX_IMAGE"
}

# Prints milliseconds until a box started as `mode` answers (see part 1).
ready_ms() { # mode
    case $1 in
    dindbox) plain_box ;;
    dindbox-tls)
        rm -rf "$bench_dir/certs"
        ready_env=(DOCKER_HOST=$api DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$bench_dir/certs/client)
        time_to_ready -e DOCKER_TLS_CERTDIR=/certs -v "$bench_dir/certs:/certs" -p "127.0.0.1:$port:2376" "$DINDBOX_IMAGE"
        ;;
    bare-unix)
        rm -f "$bench_dir/docker.sock"
        ready_env=(DOCKER_HOST=unix://$bench_dir/docker.sock)
        time_to_ready -v "$bench_dir:/run/bench" --entrypoint dockerd "$DINDBOX_IMAGE" -H unix:///run/bench/docker.sock
        ;;
    bare-tcp)
        ready_env=(DOCKER_HOST=$api)
        time_to_ready -p "127.0.0.1:$port:2375" --entrypoint dockerd "$DINDBOX_IMAGE" -H tcp://0.0.0.0:2375 --tls=false
        ;;
    esac
}

header() { echo; echo "== dindbox bench ($(date -u +%FT%TZ), $(nproc) cores, outer $outer, image $DINDBOX_IMAGE, N=$runs)"; }
print_ready() {
    local mode
    echo "readiness (docker run to the first docker version), medians of $runs, the modes taking turns:"
    for mode in "${ready_modes[@]}"; do
        awk -v m="$mode" -v ms="${results[$mode]}" -v b="${results[bare-unix]}" \
            'BEGIN {printf "  %-12s %6d ms   ratio to bare-unix %5.2f\n", m, ms, ms / b}'
    done
    printf '  idle RSS of PID 1 (%s): %s KiB; of the inner dockerd: %s KiB\n' "$pid1" "$rss_kb" "$dockerd_kb"
}

declare -A results
ready_modes=(dindbox dindbox-tls bare-unix bare-tcp)
if want ready; then
    # The modes take turns, so a busy machine slows them alike.
    declare -A samples
    for ((i = 1; i <= runs; i++)); do
        for mode in "${ready_modes[@]}"; do
            ms=$(ready_ms "$mode")
            samples[$mode]+="$ms "
            say "readiness $mode run $i: $ms ms"
        done
    done
    for mode in "${ready_modes[@]}"; do
        results[$mode]=$(printf '%s\n' ${samples[$mode]} | stats median - 1)
    done

    # Idle RSS: a fresh box, ready, left alone for a few seconds.
    plain_box >/dev/null
    sleep 5
    pid1=$(docker exec "$name" cat /proc/1/comm)
    rss_kb=$(docker exec "$name" awk '/^VmRSS:/ {print $2}' /proc/1/status)
    dockerd_kb=$(docker exec "$name" sh -c 'awk "/^VmRSS:/ {print \$2}" /proc/$(pidof dockerd)/status' || echo "?")
fi
if [ "$only" = ready ]; then
    header
    print_ready
    exit 0
fi
plain_box >/dev/null

# ---------------------------------------------------------------- the box's tools
# The same box for parts 3, 6 and 7: loadgen inside it; the proxy (public
# socket), dockerd's private socket and, for part 3, more targets (below).
docker cp "$target_dir/release/examples/loadgen" "$name:/usr/local/bin/loadgen" >/dev/null
declare -A sockets=([direct]=/run/dindbox/docker.sock [proxied]=/var/run/docker.sock)
targets=(direct proxied)
if want proxy && [ -n "${BENCH_BASELINE_BINARY:-}" ]; then
    docker cp "$BENCH_BASELINE_BINARY" "$name:/usr/local/bin/dindbox-before" >/dev/null
    docker exec -d "$name" dindbox-before proxy --ds /run/dindbox/docker.sock --ls /run/bench-before.sock
    for ((i = 0; i < 100; i++)); do
        if docker exec "$name" docker -H unix:///run/bench-before.sock version >/dev/null 2>&1; then break; fi
        sleep 0.2
    done
    sockets[before]=/run/bench-before.sock
    targets+=(before)
fi
if want proxy && [ "${BENCH_RELAY:-}" = 1 ]; then
    docker cp "$target_dir/release/examples/relay" "$name:/usr/local/bin/relay" >/dev/null
    docker exec -d "$name" relay /run/bench-relay.sock /run/dindbox/docker.sock
    sockets[relay]=/run/bench-relay.sock
    targets+=(relay)
fi
ensure_busybox_image
docker exec -i "$name" docker load -q <"$BUSYBOX_TAR" >/dev/null

sample_dir=$bench_dir/samples
mkdir -p "$sample_dir"
timed() { # shell command run in the box -> milliseconds
    local t0
    t0=$(date +%s%N)
    docker exec "$name" sh -c "$*" >/dev/null
    echo $((($(date +%s%N) - t0) / 1000000))
}
# The order of the targets rotates from round to round, so none is always first.
rotate() { # round -> targets, rotated
    local n=${#targets[@]} i
    for ((i = 0; i < n; i++)); do echo "${targets[(($1 + i) % n)]}"; done
}
# The load of the machine changes between rounds: a ratio is taken within each
# round (the targets ran minutes apart at most) and the median of those is shown
# (`stats ratio`).

# ---------------------------------------------------------------- 3. proxy overhead
# loadgen against each target; the targets take turns within each round.
overhead=()
streaming=()
if want proxy; then
    # A few containers, so /containers/json has something to list.
    for i in 1 2 3; do docker exec "$name" docker run -d --name "idle$i" busybox sleep 3600 >/dev/null; done
    # A 500 MiB single-layer image, saved once inside the box.
    docker exec "$name" sh -c "mkdir -p /tmp/big && head -c 524288000 /dev/urandom >/tmp/big/blob &&
        tar -C /tmp/big -c . | docker -H unix:///run/dindbox/docker.sock import - big:bench >/dev/null &&
        docker -H unix:///run/dindbox/docker.sock save big:bench >/tmp/big.tar &&
        docker -H unix:///run/dindbox/docker.sock rmi big:bench >/dev/null"
    gib="head -c 1073741824 /dev/zero"
    for ((round = 0; round < rounds; round++)); do
        for path in /_ping /containers/json; do
            for clients in 1 64; do
                for target in $(rotate "$round"); do
                    line=$(docker exec "$name" loadgen "${sockets[$target]}" "$path" "$clients" "$seconds")
                    say "round $((round + 1)) $path c=$clients $target: $line"
                    # requests=N rps=R p50_us=A p99_us=B errors=E -> "R A B"
                    echo "$line" | awk '{split($0, f, /[ =]/); print f[4], f[6], f[8]}' >>"$sample_dir/${path//\//_}.$clients.$target"
                done
            done
        done
        for target in $(rotate "$round"); do
            cli="docker -H unix://${sockets[$target]}"
            ms=$(timed "$cli exec idle1 $gib | wc -c")
            say "round $((round + 1)) 1 GiB exec stdout $target: $ms ms"
            echo "$ms" >>"$sample_dir/exec.$target"
            ms=$(timed "$cli load -q </tmp/big.tar && $cli rmi big:bench")
            say "round $((round + 1)) docker load 500 MiB $target: $ms ms"
            echo "$ms" >>"$sample_dir/load.$target"
        done
    done
    for path in /_ping /containers/json; do
        for clients in 1 64; do
            key=$sample_dir/${path//\//_}.$clients
            row=$(printf '%-17s c=%-3d' "$path" "$clients")
            for target in "${targets[@]}"; do
                row+=$(printf ' | %s %6.0f req/s p50 %5.0f us p99 %6.0f us' "$target" \
                    "$(stats median "$key.$target" 1)" "$(stats median "$key.$target" 2)" "$(stats median "$key.$target" 3)")
            done
            for target in "${targets[@]:1}"; do
                row+=$(printf ' | %s/direct %.2f' "$target" "$(stats ratio "$key.$target" "$key.direct" 1)")
            done
            overhead+=("$row")
        done
    done
    for what in exec load; do
        case $what in exec) label="1 GiB of exec stdout" mib=1024 ;; load) label="docker load of 500 MiB" mib=500 ;; esac
        row=$(printf '%-23s' "$label:")
        for target in "${targets[@]}"; do
            row+=$(awk -v t="$target" -v ms="$(stats median "$sample_dir/$what.$target" 1)" -v m="$mib" \
                'BEGIN {printf " %s %d ms (%.0f MiB/s)", t, ms, m * 1000 / ms}')
        done
        for target in "${targets[@]:1}"; do
            row+=$(printf ' | %s throughput/direct %.2f' "$target" "$(stats ratio "$sample_dir/$what.$target" "$sample_dir/$what.direct" 1 inverse)")
        done
        streaming+=("$row")
    done
    docker exec "$name" sh -c 'docker rm -f idle1 idle2 idle3 >/dev/null; rm -f /tmp/big.tar'
fi

# ---------------------------------------------------------------- 6. create latency
# One loadgen run a round: N creates on each socket, the sockets taking turns
# create by create; p50 and p99 per socket, ratios within the round.
create_rows=()
if want create; then
    for ((round = 0; round < rounds; round++)); do
        paths=()
        for target in "${targets[@]}"; do paths+=("${sockets[$target]}"); done
        out=$(docker exec "$name" loadgen create "$creates" busybox "${paths[@]}")
        i=0
        for target in "${targets[@]}"; do
            line=$(sed -n "$((i + 1))p" <<<"$out")
            say "round $((round + 1)) $creates creates $target: $line"
            # socket=S requests=N p50_us=A p99_us=B errors=E -> "A B N E"
            echo "$line" | awk '{split($0, f, /[ =]/); print f[6], f[8], f[4], f[10]}' >>"$sample_dir/create.$target"
            i=$((i + 1))
        done
    done
    row=$(printf 'POST /containers/create (N=%d a socket, one at a time):' "$creates")
    for target in "${targets[@]}"; do
        row+=$(printf ' | %s p50 %5.0f us p99 %6.0f us errors %.0f' "$target" "$(stats median "$sample_dir/create.$target" 1)" \
            "$(stats median "$sample_dir/create.$target" 2)" "$(stats median "$sample_dir/create.$target" 4)")
    done
    for target in "${targets[@]:1}"; do
        row+=$(printf ' | %s/direct p50 %.2f p99 %.2f' "$target" \
            "$(stats ratio "$sample_dir/create.$target" "$sample_dir/create.direct" 1)" \
            "$(stats ratio "$sample_dir/create.$target" "$sample_dir/create.direct" 2)")
    done
    create_rows+=("$row")
fi

# ---------------------------------------------------------------- 7. buildx
# The box's buildx CLI, its default (docker) driver on each socket: BuildKit's
# session and gRPC go through the proxy's hijacked connection, or straight to
# dockerd. N builds a target, the targets taking turns build by build.
buildx_rows=()
if want buildx; then
    if docker exec "$name" docker buildx version >/dev/null 2>&1; then
        docker exec "$name" sh -c 'mkdir -p /tmp/bx && cd /tmp/bx &&
            for i in $(seq 1 40); do head -c 30000 /dev/urandom | base64 >f$i.txt; done &&
            printf "%s\n" "FROM busybox AS build" "COPY . /src" \
                "RUN cat /src/*.txt | md5sum >/sum && mkdir /out && cp /src/f1.txt /out/" \
                "FROM busybox AS check" "COPY --from=build /sum /sum" "RUN test -s /sum" \
                "FROM busybox" "COPY --from=build /out /out" "COPY --from=check /sum /sum" >Dockerfile'
        for ((i = 0; i < runs; i++)); do
            for target in $(rotate "$i"); do
                cli="DOCKER_HOST=unix://${sockets[$target]} docker buildx build -q -t bx:bench"
                cold=$(timed "$cli --no-cache /tmp/bx")
                warm=$(timed "$cli /tmp/bx")
                say "build $((i + 1)) $target: no cache $cold ms, cached $warm ms"
                echo "$cold $warm" >>"$sample_dir/buildx.$target"
            done
        done
        buildx_version=$(docker exec "$name" docker buildx version | awk '{print $2}')
        for column in 1 2; do
            case $column in 1) label="no cache" ;; 2) label="cached" ;; esac
            row=$(printf 'buildx build, %-8s' "$label:")
            for target in "${targets[@]}"; do
                row+=$(printf ' | %s %5.0f ms' "$target" "$(stats median "$sample_dir/buildx.$target" "$column")")
            done
            for target in "${targets[@]:1}"; do
                row+=$(printf ' | %s/direct %.2f' "$target" "$(stats ratio "$sample_dir/buildx.$target" "$sample_dir/buildx.direct" "$column")")
            done
            buildx_rows+=("$row")
        done
    else
        buildx_rows+=("skipped: $DINDBOX_IMAGE has no docker buildx (the default sid image has)")
    fi
fi

# ---------------------------------------------------------------- 8. tag lock
# A round: BENCH_TAGS tags on each socket in turn (a shell loop in the box, so
# `docker exec` is paid once a loop), each tag removed untimed after the round.
taglock_rows=()
if want taglock; then
    docker exec -d "$name" dindbox proxy --ds /run/dindbox/docker.sock --ls /run/bench-owner.sock \
        --owner-label dindbox.bench=job1
    for ((i = 0; i < 100; i++)); do
        if docker exec "$name" docker -H unix:///run/bench-owner.sock version >/dev/null 2>&1; then break; fi
        sleep 0.2
    done
    sockets[owner]=/run/bench-owner.sock
    lock_targets=(direct proxied owner)
    for ((round = 0; round < runs; round++)); do
        for target in "${lock_targets[@]}"; do
            cli="docker -H unix://${sockets[$target]}"
            ms=$(timed "for i in \$(seq 1 $tags); do $cli tag busybox lock-$target:\$i || exit 1; done")
            say "round $((round + 1)) $tags tags $target: $ms ms"
            awk -v ms="$ms" -v n="$tags" 'BEGIN {print ms / n}' >>"$sample_dir/taglock.$target"
            docker exec "$name" sh -c "for i in \$(seq 1 $tags); do docker -H unix:///run/dindbox/docker.sock rmi lock-$target:\$i; done >/dev/null"
        done
    done
    row=$(printf 'docker tag (%d a socket a round, CLI start included):' "$tags")
    for target in "${lock_targets[@]}"; do
        row+=$(printf ' | %s %.1f ms' "$target" "$(stats median "$sample_dir/taglock.$target" 1)")
    done
    for target in proxied owner; do
        row+=$(printf ' | %s/direct %.2f' "$target" "$(stats ratio "$sample_dir/taglock.$target" "$sample_dir/taglock.direct" 1)")
    done
    taglock_rows+=("$row")
fi
cleanup

header
if want ready; then print_ready; fi
if want proxy; then
    echo "proxy overhead (inside one box, ${seconds}s per run, medians of $rounds rounds, ratios: median of per-round ratios, loadgen on the same $(nproc) cores):"
    printf '  %s\n' "${overhead[@]}"
    echo "streaming (docker CLI in the box, medians of $rounds rounds):"
    printf '  %s\n' "${streaming[@]}"
fi
if want create; then
    echo "create latency (loadgen in the box, medians of $rounds rounds, ratios: median of per-round ratios):"
    printf '  %s\n' "${create_rows[@]}"
fi
if want buildx; then
    echo "buildx (the box's CLI${buildx_version:+ $buildx_version}, a 3-stage build FROM the local busybox, medians of $runs, ratios: median of per-build ratios):"
    printf '  %s\n' "${buildx_rows[@]}"
fi
if want taglock; then
    echo "owner-mode tag lock (medians of $runs rounds, ratios: median of per-round ratios):"
    printf '  %s\n' "${taglock_rows[@]}"
fi

if [ -z "${BENCH_ONLY:-}" ] && [ "$(id -u)" = 0 ]; then
    echo
    # Its own image (bookworm: dockerd 28 has no graphdriver plugins), built
    # unless BENCH_SKIP_BUILD=1 said the images are there.
    env -u DINDBOX_IMAGE bash "$DINDBOX_REPO/scripts/bench-graphdriver.sh"
fi
if [ -z "${BENCH_ONLY:-}" ]; then
    bash "$DINDBOX_REPO/scripts/bench-adversarial.sh"
fi
