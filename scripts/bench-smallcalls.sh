#!/usr/bin/env bash
# The proxy's own cost on small calls (issue 13), on the host, side by side:
# GET /_ping (and GET /containers/json) with 1 and 64 clients
# (examples/loadgen.rs) against
#   direct   dockerd's socket (the outer daemon of scripts/lib.sh, or DOCKER_HOST's)
#   socat    `socat UNIX-LISTEN:...,fork UNIX-CONNECT:dockerd` (a blind relay)
#   relay    examples/relay.rs (a tokio byte copier: the floor of a Rust relay)
#   dindbox  the release `dindbox proxy` (no owner label) in front of the same socket
# taking turns within each round; medians of the rounds and per-round ratios
# to socat (the issue's bar: every cell at or above socat's).
#
#   BENCH_ROUNDS=3   rounds
#   BENCH_SECONDS=3  seconds a run
#   BENCH_CALLGRIND=1  also count the proxy's and socat's instructions per request under
#                      valgrind's callgrind (1 client): a figure the machine's
#                      load does not move, for comparing two builds
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-3}
if [ "$(id -u)" = 0 ]; then ensure_packages; fi
docker_up_any
upstream=${DOCKER_HOST#unix://}
[ -S "$upstream" ] || die "no unix socket for dockerd (DOCKER_HOST=$DOCKER_HOST)"

(cd "$DINDBOX_REPO" && cargo build --release --quiet --bin dindbox --example loadgen --example relay)
target_dir=$(cd "$DINDBOX_REPO" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
bin=$target_dir/release
dir=$(mktemp -d -t dindbox-smallcalls.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

socat "UNIX-LISTEN:$dir/socat.sock,fork" "UNIX-CONNECT:$upstream" 2>/dev/null &
pids+=($!)
"$bin/examples/relay" "$dir/relay.sock" "$upstream" &
pids+=($!)
"$bin/dindbox" proxy --ds "$upstream" --ls "$dir/dindbox.sock" >"$dir/proxy.log" 2>&1 &
pids+=($!)
declare -A sockets=([direct]=$upstream [socat]=$dir/socat.sock [relay]=$dir/relay.sock [dindbox]=$dir/dindbox.sock)
targets=(direct socat relay dindbox)
for target in "${targets[@]}"; do
    for ((i = 0; i < 100; i++)); do
        if [ -S "${sockets[$target]}" ] && "$bin/examples/loadgen" "${sockets[$target]}" /_ping 1 0.05 >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
done

stats() { "$bin/examples/loadgen" stats "$@"; }
for ((round = 0; round < rounds; round++)); do
    for path in /_ping /containers/json; do
        for clients in 1 64; do
            n=${#targets[@]}
            for ((i = 0; i < n; i++)); do
                target=${targets[(($round + i) % n)]}
                line=$("$bin/examples/loadgen" "${sockets[$target]}" "$path" "$clients" "$seconds")
                say "round $((round + 1)) $path c=$clients $target: $line"
                # requests=N rps=R p50_us=A p99_us=B errors=E -> "R A B"
                echo "$line" | awk '{split($0, f, /[ =]/); print f[4], f[6], f[8]}' >>"$dir/${path//\//_}.$clients.$target"
            done
        done
    done
done

echo
echo "== dindbox small calls ($(date -u +%FT%TZ), $(nproc) cores, dockerd $(docker version -f '{{.Server.Version}}' 2>/dev/null), $rounds rounds of ${seconds}s, ratios: median of per-round ratios)"
for path in /_ping /containers/json; do
    for clients in 1 64; do
        key=$dir/${path//\//_}.$clients
        row=$(printf '%-17s c=%-3d' "$path" "$clients")
        for target in "${targets[@]}"; do
            row+=$(printf ' | %s %6.0f req/s p50 %5.0f us p99 %6.0f us' "$target" \
                "$(stats median "$key.$target" 1)" "$(stats median "$key.$target" 2)" "$(stats median "$key.$target" 3)")
        done
        row+=$(printf ' | dindbox/socat req/s %.2f' "$(stats ratio "$key.dindbox" "$key.socat" 1)")
        echo "  $row"
    done
done

[ "${BENCH_CALLGRIND:-0}" = 1 ] || exit 0
command -v valgrind >/dev/null || die "BENCH_CALLGRIND=1 needs valgrind (apt-get install valgrind)"
# Instructions a request (user space only: the system calls' kernel work is
# not counted) of the proxy, warmed up first, and of socat, which serves one
# connection without `fork` and exits (so its start-up is counted in).
count() { # callgrind output, loadgen line -> instructions a request
    local total requests
    total=$(callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    requests=$(echo "$2" | sed 's/.*requests=\([0-9]*\).*/\1/')
    echo $((total / requests))
}
wait_socket() { for ((i = 0; i < 100; i++)); do [ -S "$1" ] && return; sleep 0.2; done; }
dindbox_instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        "$bin/dindbox" proxy --ds "$upstream" --ls "$dir/cg.sock" >/dev/null 2>&1 &
    local vg=$! line
    wait_socket "$dir/cg.sock"
    "$bin/examples/loadgen" "$dir/cg.sock" "$1" 1 2 >/dev/null
    callgrind_control -z "$vg" >/dev/null 2>&1
    line=$("$bin/examples/loadgen" "$dir/cg.sock" "$1" 1 "$seconds")
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg"; wait "$vg" 2>/dev/null || true
    count "$dir/cg.out.1" "$line"
    rm -f "$dir"/cg.out* "$dir/cg.sock"
}
socat_instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        socat "UNIX-LISTEN:$dir/cg.sock" "UNIX-CONNECT:$upstream" >/dev/null 2>&1 &
    local vg=$! line
    wait_socket "$dir/cg.sock"
    line=$("$bin/examples/loadgen" "$dir/cg.sock" "$1" 1 "$seconds")
    wait "$vg" 2>/dev/null || true
    count "$dir/cg.out" "$line"
    rm -f "$dir"/cg.out* "$dir/cg.sock"
}
echo
echo "== instructions a request (callgrind, 1 client, user space)"
for path in /_ping /containers/json; do
    printf '  %-17s dindbox %6d   socat %6d\n' "$path" "$(dindbox_instructions "$path")" "$(socat_instructions "$path")"
done
