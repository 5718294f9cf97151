#!/usr/bin/env bash
# The proxy against hostile JSON bodies (issue 11, "Denial of service"). Run it
# through `BENCH_ONLY=adversarial scripts/bench.sh`, or directly. Needs no Docker:
# the release `dindbox proxy` runs standalone in front of `fake-dockerd`
# (tests/support/fake_dockerd.rs), and examples/adversarial.rs measures, for
# three bodies (160k distinct Labels keys ~1.8 MB; 100k Dns servers + 16k
# repeated "HostConfig":{} ~1.3 MB; an 8 MiB {"Cmd":[0,0,...]}), the time to
# the proxy's answer (median of ADVERSARIAL_RUNS, default 3), and a bystander's
# /_ping latency with no load and while 4 clients send those bodies in a loop.
#
#   BENCH_SECONDS=5         seconds of bystander pings, idle and loaded
#   ADVERSARIAL_RUNS=3      sends of each body for its decision time
#   DINDBOX_BINARY=path     the proxy to measure (default: this repo's release build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=${BENCH_SECONDS:-5}
cd "$DINDBOX_REPO"
cargo build --release --quiet --bin dindbox --bin fake-dockerd --example adversarial
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
binary=${DINDBOX_BINARY:-$target_dir/release/dindbox}

work=$(mktemp -d -t dindbox-adversarial.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$target_dir/release/fake-dockerd" "--host=unix://$work/dockerd.sock" 2>"$work/dockerd.log" &
pids+=($!)
"$binary" proxy --dockersocket "$work/dockerd.sock" --listensocket "$work/proxy.sock" 2>"$work/proxy.log" &
pids+=($!)
for ((i = 0; i < 100; i++)); do
    if [ -S "$work/proxy.sock" ] && [ -S "$work/dockerd.sock" ]; then break; fi
    sleep 0.1
done
[ -S "$work/proxy.sock" ] || die "the proxy did not start (log: $(cat "$work/proxy.log"))"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
out=$("$target_dir/release/examples/adversarial" "$work/proxy.sock" "$seconds")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
rss_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/${pids[1]}/status")

echo
echo "== dindbox adversarial bench ($(date -u +%FT%TZ), $(nproc) cores, $(git rev-parse --short HEAD), load average before $load_before, after $load_after)"
printf '  %s\n' "$out"
echo "  peak RSS of the proxy process (VmHWM): $rss_kb KiB"
