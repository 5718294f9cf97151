#!/usr/bin/env bash
# Benchmarks (reported in notes, not timed tests).
#
#   1. Readiness: time from `docker run` of a box (fresh volume) to the first
#      successful `docker version` through the published port, for
#        (a) dindbox:   the image as shipped (dindbox init + proxy on PORT)
#        (b) bare:      the same image with `--entrypoint dockerd -H tcp://0.0.0.0:2375 --tls=false`
#      (`--tls=false` is explicit because dockerd 20.10 sleeps 15 s on a plain TCP
#      listener otherwise; it still sleeps 1 s, which no flag avoids, so the
#      summary also shows the baseline without that second).
#      Median of N runs, and the ratio (a)/(b).
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
#   BENCH_ONLY=box          parts 1-3 only
#   BENCH_ONLY=graphdriver  part 4 only (default: all, part 4 when root)
#   BENCH_ONLY=adversarial  part 5 only
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
'' | box | proxy) ;;
graphdriver) exec bash "$DINDBOX_REPO/scripts/bench-graphdriver.sh" ;;
adversarial) exec bash "$DINDBOX_REPO/scripts/bench-adversarial.sh" ;;
*) die "BENCH_ONLY=$BENCH_ONLY: use box, proxy, graphdriver or adversarial (unset: everything)" ;;
esac

runs=${BENCH_RUNS:-5}
port=${BENCH_PORT:-23790}
# box: readiness, RSS and proxy; proxy: the proxy part alone.
only=${BENCH_ONLY:-all}
if [ "$only" = box ]; then only=all; fi
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

cleanup() { docker rm -f -v "$name" >/dev/null 2>&1 || true; docker volume rm "$volume" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Prints milliseconds from `docker run` to the first `docker version` through $api.
time_to_ready() { # extra docker-run args...
    local t0 now
    cleanup
    t0=$(date +%s%N)
    docker run -d --privileged --name "$name" -e PORT=2375 -e DOCKER_TLS_CERTDIR= -p "127.0.0.1:$port:2375" \
        -v "$volume:/var/lib/docker" "$@" >/dev/null
    until DOCKER_HOST=$api timeout 5 docker version >/dev/null 2>&1; do
        now=$(date +%s%N)
        if (((now - t0) > 120000000000)) || [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
            docker logs --tail 30 "$name" >&2 || true
            die "bench box not ready (log above)"
        fi
        sleep 0.05
    done
    echo $((($(date +%s%N) - t0) / 1000000))
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }

declare -A results
if [ "$only" = all ]; then
    for mode in dindbox bare; do
        samples=()
        for ((i = 1; i <= runs; i++)); do
            case $mode in
            dindbox) ms=$(time_to_ready "$DINDBOX_IMAGE") ;;
            bare) ms=$(time_to_ready --entrypoint dockerd "$DINDBOX_IMAGE" -H tcp://0.0.0.0:2375 --tls=false) ;;
            esac
            samples+=("$ms")
            say "readiness $mode run $i: $ms ms"
        done
        results[$mode]=$(printf '%s\n' "${samples[@]}" | median)
    done

    # Idle RSS: a fresh box, ready, left alone for a few seconds.
    time_to_ready "$DINDBOX_IMAGE" >/dev/null
    sleep 5
    pid1=$(docker exec "$name" cat /proc/1/comm)
    rss_kb=$(docker exec "$name" awk '/^VmRSS:/ {print $2}' /proc/1/status)
    dockerd_kb=$(docker exec "$name" sh -c 'awk "/^VmRSS:/ {print \$2}" /proc/$(pidof dockerd)/status' || echo "?")
else
    time_to_ready "$DINDBOX_IMAGE" >/dev/null
fi

# ---------------------------------------------------------------- proxy overhead
# The same box: loadgen inside it, against the proxy (public socket), against
# dockerd's private socket and, with BENCH_BASELINE_BINARY, against that
# binary's standalone proxy; the targets take turns within each round.
(cd "$DINDBOX_REPO" && cargo build --release --quiet --example loadgen --example relay)
target_dir=$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
docker cp "$target_dir/release/examples/loadgen" "$name:/usr/local/bin/loadgen" >/dev/null
declare -A sockets=([direct]=/run/dindbox/docker.sock [proxied]=/var/run/docker.sock)
targets=(direct proxied)
if [ -n "${BENCH_BASELINE_BINARY:-}" ]; then
    docker cp "$BENCH_BASELINE_BINARY" "$name:/usr/local/bin/dindbox-before" >/dev/null
    docker exec -d "$name" dindbox-before proxy --ds /run/dindbox/docker.sock --ls /run/bench-before.sock
    for ((i = 0; i < 100; i++)); do
        if docker exec "$name" docker -H unix:///run/bench-before.sock version >/dev/null 2>&1; then break; fi
        sleep 0.2
    done
    sockets[before]=/run/bench-before.sock
    targets+=(before)
fi
if [ "${BENCH_RELAY:-}" = 1 ]; then
    docker cp "$target_dir/release/examples/relay" "$name:/usr/local/bin/relay" >/dev/null
    docker exec -d "$name" relay /run/bench-relay.sock /run/dindbox/docker.sock
    sockets[relay]=/run/bench-relay.sock
    targets+=(relay)
fi
# A few containers, so /containers/json has something to list.
ensure_busybox_image
docker exec -i "$name" docker load -q <"$BUSYBOX_TAR" >/dev/null
for i in 1 2 3; do docker exec "$name" docker run -d --name "idle$i" busybox sleep 3600 >/dev/null; done
# A 500 MiB single-layer image, saved once inside the box.
docker exec "$name" sh -c "mkdir -p /tmp/big && head -c 524288000 /dev/urandom >/tmp/big/blob &&
    tar -C /tmp/big -c . | docker -H unix:///run/dindbox/docker.sock import - big:bench >/dev/null &&
    docker -H unix:///run/dindbox/docker.sock save big:bench >/tmp/big.tar &&
    docker -H unix:///run/dindbox/docker.sock rmi big:bench >/dev/null"

sample_dir=$(mktemp -d -t dindbox-bench.XXXXXX)
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
cleanup

median_of() { # file column -> median
    awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
# The load of the machine changes between rounds: a ratio is taken within each
# round (the targets ran minutes apart at most) and the median of those is shown.
ratio_of() { # file-of-target file-of-direct column invert(0|1) -> median of per-round ratios
    paste -d ' ' "$1" "$2" | awk -v c="$3" -v inv="$4" '{n = NF / 2; x = $c; d = $(c + n); print inv ? d / x : x / d}' >"$1.ratio"
    median_of "$1.ratio" 1
}
overhead=()
for path in /_ping /containers/json; do
    for clients in 1 64; do
        key=$sample_dir/${path//\//_}.$clients
        row=$(printf '%-17s c=%-3d' "$path" "$clients")
        for target in "${targets[@]}"; do
            row+=$(printf ' | %s %6.0f req/s p50 %5d us p99 %6d us' "$target" \
                "$(median_of "$key.$target" 1)" "$(median_of "$key.$target" 2)" "$(median_of "$key.$target" 3)")
        done
        for target in "${targets[@]:1}"; do
            row+=$(printf ' | %s/direct %.2f' "$target" "$(ratio_of "$key.$target" "$key.direct" 1 0)")
        done
        overhead+=("$row")
    done
done
streaming=()
for what in exec load; do
    case $what in exec) label="1 GiB of exec stdout" mib=1024 ;; load) label="docker load of 500 MiB" mib=500 ;; esac
    row=$(printf '%-23s' "$label:")
    for target in "${targets[@]}"; do
        row+=$(awk -v t="$target" -v ms="$(median_of "$sample_dir/$what.$target" 1)" -v m="$mib" \
            'BEGIN {printf " %s %d ms (%.0f MiB/s)", t, ms, m * 1000 / ms}')
    done
    for target in "${targets[@]:1}"; do
        row+=$(printf ' | %s throughput/direct %.2f' "$target" "$(ratio_of "$sample_dir/$what.$target" "$sample_dir/$what.direct" 1 1)")
    done
    streaming+=("$row")
done
rm -rf "$sample_dir"

echo
echo "== dindbox bench ($(date -u +%FT%TZ), $(nproc) cores, outer $outer, N=$runs)"
if [ "$only" = all ]; then
    printf 'readiness median, dindbox (init + proxy): %6d ms\n' "${results[dindbox]}"
    printf 'readiness median, bare dockerd:           %6d ms\n' "${results[bare]}"
    awk -v a="${results[dindbox]}" -v b="${results[bare]}" 'BEGIN {
        printf "ratio dindbox/bare:                        %6.2f\n", a / b
        printf "ratio dindbox/(bare - its 1 s TCP pause):  %6.2f\n", a / (b > 1000 ? b - 1000 : b)
    }'
    printf 'idle RSS of PID 1 (%s):              %6s KiB\n' "$pid1" "$rss_kb"
    printf 'idle RSS of the inner dockerd:            %6s KiB\n' "$dockerd_kb"
fi
echo "proxy overhead (inside one box, ${seconds}s per run, medians of $rounds rounds, ratios: median of per-round ratios, loadgen on the same $(nproc) cores):"
printf '  %s\n' "${overhead[@]}"
echo "streaming (docker CLI in the box, medians of $rounds rounds):"
printf '  %s\n' "${streaming[@]}"

if [ -z "${BENCH_ONLY:-}" ] && [ "$(id -u)" = 0 ]; then
    echo
    BENCH_SKIP_BUILD=1 bash "$DINDBOX_REPO/scripts/bench-graphdriver.sh"
fi
if [ -z "${BENCH_ONLY:-}" ]; then
    bash "$DINDBOX_REPO/scripts/bench-adversarial.sh"
fi
