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
#
#   BENCH_ONLY=box          parts 1-3 only
#   BENCH_ONLY=graphdriver  part 4 only (default: all, part 4 when root)
#   BENCH_RUNS=5            N
#   BENCH_PORT=23790        host port used by the bench boxes
#   BENCH_SKIP_BUILD=1      use the existing $DINDBOX_IMAGE
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${BENCH_ONLY:-} in
'' | box) ;;
graphdriver) exec bash "$DINDBOX_REPO/scripts/bench-graphdriver.sh" ;;
*) die "BENCH_ONLY=$BENCH_ONLY: use box or graphdriver" ;;
esac

runs=${BENCH_RUNS:-5}
port=${BENCH_PORT:-23790}
api=tcp://127.0.0.1:$port
name=dindbox-bench
volume=dindbox-bench-data

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
    docker run -d --privileged --name "$name" -e PORT=2375 -p "127.0.0.1:$port:2375" \
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

# ---------------------------------------------------------------- proxy overhead
# The same box: loadgen inside it, against the proxy (public socket) and
# against dockerd's private socket, one after the other.
seconds=${BENCH_SECONDS:-5}
(cd "$DINDBOX_REPO" && cargo build --release --quiet --example loadgen)
docker cp "$DINDBOX_REPO/target/release/examples/loadgen" "$name:/usr/local/bin/loadgen" >/dev/null
# A few containers, so /containers/json has something to list.
ensure_busybox_image
docker exec -i "$name" docker load -q <"$BUSYBOX_TAR" >/dev/null
for i in 1 2 3; do docker exec "$name" docker run -d --name "idle$i" busybox sleep 600 >/dev/null; done
overhead=()
for path in /_ping /containers/json; do
    for clients in 1 64; do
        direct=$(docker exec "$name" loadgen /run/dindbox/docker.sock "$path" "$clients" "$seconds")
        proxied=$(docker exec "$name" loadgen /var/run/docker.sock "$path" "$clients" "$seconds")
        say "$path c=$clients direct:  $direct"
        say "$path c=$clients proxied: $proxied"
        overhead+=("$(awk -v p="$path" -v c="$clients" -v d="$direct" -v x="$proxied" 'BEGIN {
            split(d, a, /[ =]/); split(x, b, /[ =]/)   # requests N rps R p50_us A p99_us B errors E
            printf "%-17s c=%-3d direct %7.0f req/s p50 %5d us p99 %6d us | proxied %7.0f req/s p50 %5d us p99 %6d us | req/s ratio %.2f", p, c, a[4], a[6], a[8], b[4], b[6], b[8], b[4] / a[4]
        }')")
    done
done

# Streaming through the proxy against the private socket, with the docker CLI
# inside the box: 1 GiB of exec stdout, and `docker load` of a 500 MiB image.
direct_cli="docker -H unix:///run/dindbox/docker.sock"
proxied_cli="docker -H unix:///var/run/docker.sock"
timed() { # shell command run in the box -> milliseconds
    local t0
    t0=$(date +%s%N)
    docker exec "$name" sh -c "$*" >/dev/null
    echo $((($(date +%s%N) - t0) / 1000000))
}
gib="head -c 1073741824 /dev/zero"
exec_direct=$(timed "$direct_cli exec idle1 $gib | wc -c")
exec_proxied=$(timed "$proxied_cli exec idle1 $gib | wc -c")
# A 500 MiB single-layer image, saved once inside the box.
docker exec "$name" sh -c "mkdir -p /tmp/big && head -c 524288000 /dev/urandom >/tmp/big/blob &&
    tar -C /tmp/big -c . | $direct_cli import - big:bench >/dev/null && $direct_cli save big:bench >/tmp/big.tar &&
    $direct_cli rmi big:bench >/dev/null"
load_direct=$(timed "$direct_cli load -q </tmp/big.tar && $direct_cli rmi big:bench")
load_proxied=$(timed "$proxied_cli load -q </tmp/big.tar && $proxied_cli rmi big:bench")
cleanup

echo
echo "== dindbox bench ($(date -u +%FT%TZ), $(nproc) cores, outer $outer, N=$runs)"
printf 'readiness median, dindbox (init + proxy): %6d ms\n' "${results[dindbox]}"
printf 'readiness median, bare dockerd:           %6d ms\n' "${results[bare]}"
awk -v a="${results[dindbox]}" -v b="${results[bare]}" 'BEGIN {
    printf "ratio dindbox/bare:                        %6.2f\n", a / b
    printf "ratio dindbox/(bare - its 1 s TCP pause):  %6.2f\n", a / (b > 1000 ? b - 1000 : b)
}'
printf 'idle RSS of PID 1 (%s):              %6s KiB\n' "$pid1" "$rss_kb"
printf 'idle RSS of the inner dockerd:            %6s KiB\n' "$dockerd_kb"
echo "proxy overhead (inside one box, ${seconds}s per run, loadgen on the same 2 cores):"
printf '  %s\n' "${overhead[@]}"
awk -v d="$exec_direct" -v p="$exec_proxied" 'BEGIN {
    printf "  1 GiB of exec stdout: direct %d ms, proxied %d ms, proxied throughput %.2f of direct\n", d, p, d / p }'
awk -v d="$load_direct" -v p="$load_proxied" 'BEGIN {
    printf "  docker load of 500 MiB: direct %d ms, proxied %d ms, proxied throughput %.2f of direct\n", d, p, d / p }'

if [ -z "${BENCH_ONLY:-}" ] && [ "$(id -u)" = 0 ]; then
    echo
    BENCH_SKIP_BUILD=1 bash "$DINDBOX_REPO/scripts/bench-graphdriver.sh"
fi
