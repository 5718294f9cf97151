#!/usr/bin/env bash
# Builds the dindbox image (default tag dindbox:dev) into the daemon in
# DINDBOX_DOCKER_HOST (else the host's Docker, else the private outer one).
#
#   DINDBOX_SUITE=suite      the Debian suite of the debootstrapped base: bookworm
#                            (dockerd 20.10, the default), trixie (26.1) or sid (28.5);
#                            its base is dindbox-base:<suite>, made and cached on first use.
#   DINDBOX_IMAGE=tag        image tag (default dindbox:dev on bookworm,
#                            dindbox:dev-<suite> on the others)
#   DINDBOX_BASE=image       another base image instead of the debootstrapped one.
#                            With a registry, DINDBOX_BASE=debian:bookworm-slim works too.
#   DINDBOX_BINARY=path      use this binary instead of `cargo build --release`
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$DINDBOX_REPO"
docker_up_any

if [ -n "${DINDBOX_BINARY:-}" ]; then
    binary=$DINDBOX_BINARY
else
    say "cargo build --release"
    t0=$(date +%s)
    cargo build --release --locked --bin dindbox
    say "cargo build took $(($(date +%s) - t0)) s"
    binary=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/dindbox
fi
[ -x "$binary" ] || die "no dindbox binary at $binary"

base=${DINDBOX_BASE:-$DINDBOX_BASE_IMAGE}
if [ "$base" = "$DINDBOX_BASE_IMAGE" ]; then ensure_base_image; fi

# A small context: the Dockerfile and the binary only. `cp -p` keeps the mtime,
# so an unchanged binary hits the build cache.
context=$DINDBOX_CACHE/context-$(printf %s "$DINDBOX_IMAGE" | tr -c "A-Za-z0-9._-" _)
mkdir -p "$context"
cp -p image/Dockerfile "$context/Dockerfile"
cp -p "$binary" "$context/dindbox"
log=$context.build.log

say "docker build -t $DINDBOX_IMAGE (BASE=$base)"
t0=$(date +%s)
previous=$(docker image inspect -f '{{.Id}}' "$DINDBOX_IMAGE" 2>/dev/null || true)
if ! docker build --build-arg "BASE=$base" -t "$DINDBOX_IMAGE" "$context" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "docker build failed (log: $log)"
fi
# The image this tag named before is garbage now (unless a box still uses it).
current=$(docker image inspect -f '{{.Id}}' "$DINDBOX_IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then docker rmi "$previous" >/dev/null 2>&1 || true; fi
say "image $DINDBOX_IMAGE built in $(($(date +%s) - t0)) s"
