#!/usr/bin/env bash
# Builds the dindbox image (default tag dindbox:dev) into the daemon in
# DINDBOX_DOCKER_HOST (else the host's Docker, else the private outer one).
#
#   DINDBOX_SUITE=suite      the Debian suite of the debootstrapped base: sid (dockerd
#                            28.5 with the compose and buildx plugins, the default),
#                            trixie (26.1) or bookworm (20.10); its base is
#                            dindbox-base:<suite>, made and cached on first use.
#   DINDBOX_IMAGE=tag        image tag (default dindbox:dev on sid,
#                            dindbox:dev-<suite> on the others)
#   DINDBOX_BASE=image       another base image instead of the debootstrapped one.
#                            With a registry, DINDBOX_BASE=debian:sid-slim works too.
#   DINDBOX_BINARY=path      use this binary instead of the static `cargo build` below
#
# The binary is static (glibc linked in, no PT_INTERP, no NEEDED): built with
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
#       --bin dindbox --target "$(rustc -vV | sed -n 's/^host: //p')"
# into target/<triple>/release/dindbox, so it drops into any base, Alpine's
# docker:dind included. The explicit --target keeps RUSTFLAGS off build scripts
# and proc-macros. A second image, ${DINDBOX_IMAGE}-scratch, holds nothing but
# that binary (FROM scratch: no libc, no shell); tests/e2e/scratch.rs runs it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$DINDBOX_REPO"
docker_up_any

static=1
if [ -n "${DINDBOX_BINARY:-}" ]; then
    binary=$DINDBOX_BINARY
    [ -x "$binary" ] || die "no dindbox binary at $binary"
    if why=$(static_elf "$binary"); then
        say "$binary is static ($why)"
    else
        # A dynamic glibc binary still runs on the Debian base; not in the scratch image.
        static=0
        say "warning: DINDBOX_BINARY=$binary is not static ($why): the image works on a glibc" \
            "base only; no ${DINDBOX_IMAGE}-scratch (tests/e2e/scratch.rs fails without it)"
    fi
else
    build_static_binary
    binary=$(static_binary_path)
fi

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

# The same binary alone in an empty image: no libc, no shell, no /etc.
scratch=${DINDBOX_IMAGE}-scratch
if [ "$static" = 0 ]; then
    docker rmi "$scratch" >/dev/null 2>&1 || true # never leave an older binary there
    exit 0
fi
mkdir -p "$context-scratch"
cp -p "$binary" "$context-scratch/dindbox"
printf '%s\n' 'FROM scratch' 'COPY dindbox /dindbox' 'ENTRYPOINT ["/dindbox"]' >"$context-scratch/Dockerfile"
previous=$(docker image inspect -f '{{.Id}}' "$scratch" 2>/dev/null || true)
if ! docker build -t "$scratch" "$context-scratch" >"$context-scratch.log" 2>&1; then
    tail -n 40 "$context-scratch.log" >&2
    die "docker build of $scratch failed (log: $context-scratch.log)"
fi
current=$(docker image inspect -f '{{.Id}}' "$scratch")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then docker rmi "$previous" >/dev/null 2>&1 || true; fi
say "image $scratch (the binary alone, FROM scratch) built"
