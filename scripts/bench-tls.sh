#!/usr/bin/env bash
# TLS against plain TCP through the proxy (issue 6, "Benchmark"): two boxes of
# $DINDBOX_IMAGE, one with `-e PORT=2375`, one with
# `-e DOCKER_TLS_CERTDIR=/certs` (client certificates required), then
#   - `docker version` with the real CLI, N times each: median wall time
#     (process start, TCP connect, TLS handshake with the client certificate,
#     /_ping, /version);
#   - curl GET /_ping, N times each: median of the TLS handshake alone
#     (curl's time_appconnect - time_connect) and of the whole request.
#
#   BENCH_RUNS=20           N
#   BENCH_SKIP_BUILD=1      use the existing $DINDBOX_IMAGE
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=${BENCH_RUNS:-20}
plain_port=23791
tls_port=23792
certs=

if [ "$(id -u)" = 0 ]; then ensure_packages; fi
docker_up_any
export DINDBOX_DOCKER_HOST=$DOCKER_HOST # for build-image.sh
if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then bash "$DINDBOX_REPO/scripts/build-image.sh"; fi
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

cleanup() {
    docker rm -f -v dindbox-bench-plain dindbox-bench-tls >/dev/null 2>&1 || true
    docker volume rm dindbox-bench-plain dindbox-bench-tls >/dev/null 2>&1 || true
    if [ -n "$certs" ]; then rm -rf "$certs"; fi
}
trap cleanup EXIT
cleanup
certs=$(mktemp -d -t dindbox-bench-certs.XXXXXX)

docker run -d --privileged --name dindbox-bench-plain -e PORT=2375 -e DOCKER_TLS_CERTDIR= -p "127.0.0.1:$plain_port:2375" \
    -v dindbox-bench-plain:/var/lib/docker "$DINDBOX_IMAGE" >/dev/null
docker run -d --privileged --name dindbox-bench-tls -e DOCKER_TLS_CERTDIR=/certs -v "$certs:/certs" \
    -p "127.0.0.1:$tls_port:2376" -v dindbox-bench-tls:/var/lib/docker "$DINDBOX_IMAGE" >/dev/null

plain=(env DOCKER_HOST=tcp://127.0.0.1:$plain_port)
tls=(env DOCKER_HOST=tcp://127.0.0.1:$tls_port DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$certs/client")
wait_box() { # env assignments for the CLI...
    local i
    for ((i = 0; i < 600; i++)); do
        env "$@" timeout 5 docker version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    env "$@" docker version >/dev/null || die "the box at $1 does not answer"
}
wait_box "${plain[@]:1}"
wait_box "${tls[@]:1}"

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# Microseconds of one run of "$@".
micros() {
    local t0
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || die "failed: $*"
    echo $((($(date +%s%N) - t0) / 1000))
}

version_plain=$(for ((i = 0; i < runs; i++)); do micros "${plain[@]}" docker version; done | median)
version_tls=$(for ((i = 0; i < runs; i++)); do micros "${tls[@]}" docker version; done | median)
ping_plain=$(for ((i = 0; i < runs; i++)); do
    curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$plain_port/_ping"
done | median)
curl_tls=(curl -sf -o /dev/null --cacert "$certs/client/ca.pem" --cert "$certs/client/cert.pem"
    --key "$certs/client/key.pem" "https://127.0.0.1:$tls_port/_ping")
samples=$(for ((i = 0; i < runs; i++)); do "${curl_tls[@]}" -w '%{time_connect} %{time_appconnect} %{time_total}\n'; done)
handshake_tls=$(awk '{print $2 - $1}' <<<"$samples" | median)
ping_tls=$(awk '{print $3}' <<<"$samples" | median)

echo
echo "== dindbox TLS bench ($(date -u +%FT%TZ), $(nproc) cores, N=$runs, medians)"
awk -v p="$version_plain" -v t="$version_tls" 'BEGIN {
    printf "docker version (real CLI): plain TCP %6.1f ms, TLS %6.1f ms (%+.1f ms)\n", p / 1000, t / 1000, (t - p) / 1000 }'
awk -v p="$ping_plain" -v t="$ping_tls" -v h="$handshake_tls" 'BEGIN {
    printf "curl GET /_ping:           plain TCP %6.2f ms, TLS %6.2f ms, of which the handshake %.2f ms\n", p * 1000, t * 1000, h * 1000 }'
