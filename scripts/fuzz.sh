#!/usr/bin/env bash
# Fuzzes the proxy's request path (route + parse + policy + rewrite) for a
# bounded time: FUZZ_SECONDS (default 60). The corpus in fuzz/corpus/request
# is kept in the repo; new inputs found by a run are added to it locally.
# cargo-fuzz runs on the stable toolchain here with RUSTC_BOOTSTRAP=1 and no
# sanitizer (-s none): coverage guidance and panics/asserts still work.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "[fuzz] installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -s none request
# A scratch copy keeps the committed corpus unchanged by CI runs.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/corpus"
cp -r corpus/request/. "$scratch/corpus/"
log=$scratch/fuzz.log
status=0
cargo fuzz run -s none request "$scratch/corpus" -- -max_total_time="$seconds" -max_len=4096 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
grep -E '^(Done|stat::number_of_executed_units|INFO: seed)|panicked|ERROR' "$log" >&2 || true
if [ "$status" -ne 0 ]; then
    grep -A30 panicked "$log" >&2 || tail -n 40 "$log" >&2
    echo "[fuzz] FAILED: a crashing input is in fuzz/artifacts/request/" >&2
    exit "$status"
fi
echo "[fuzz] no crash in ${seconds}s"
