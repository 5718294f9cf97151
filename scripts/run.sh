#!/usr/bin/env bash
# The main job: on a fresh machine, installs what is missing, uses the host's
# Docker (or starts a private one), builds the dindbox image, runs one box with
# its proxied Docker API on 127.0.0.1:$DINDBOX_PORT (TLS with client
# certificates, as docker:dind does), smoke-tests it, and prints
#   export DOCKER_HOST=tcp://127.0.0.1:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=...
# on stdout (everything else goes to stderr), so `eval "$(scripts/run.sh)"` works.
#
#   DINDBOX_TLS=1          0: plain TCP instead (no authentication: loopback only)
#   DINDBOX_PORT           host port to publish the box's API on (127.0.0.1 only;
#                          default 2376 with TLS, 2375 plain); the box serves it on
#                          the same PORT inside
#   DINDBOX_CERTS          host dir mounted at /certs with TLS (docker:dind layout;
#                          generated once, reused): /var/lib/dindbox/run/$DINDBOX_NAME/certs
#   DINDBOX_NAME=dindbox   container name; its volume is $DINDBOX_NAME-data
#   DINDBOX_DOCKER_HOST    the Docker that runs the box (default: the host's if
#                          /var/run/docker.sock answers, else a private one)
#   DINDBOX_IMAGE, DINDBOX_BASE, DINDBOX_BINARY: see build-image.sh
#
# The image is dindbox:dev (Debian sid: dockerd 28.5 with compose and buildx);
# DINDBOX_SUITE=trixie|bookworm runs dindbox:dev-<suite> instead.
#
# `scripts/run.sh --graphdriver` (root, the bookworm image): the box's images and containers live
# on the host instead, in $DINDBOX_GD_ROOT/$DINDBOX_NAME (default
# /var/lib/dindbox-gd/dindbox, made a shared mount), served by a host-side
# `dindbox graphdriver-server` (socket and log in /run/dindbox/gd/$DINDBOX_NAME)
# that this script starts (or restarts) first; the box gets the area at
# /var/lib/docker (rslave) and the socket directory at /dindbox/graphdriver.
#
# `scripts/run.sh --snapshotter` (root, the default sid image, dockerd 28+): the same for
# the containerd image store: a host-side `dindbox snapshotter-server` (root
# $DINDBOX_SN_ROOT, default /var/lib/dindbox-sn; socket and log in
# /run/dindbox/sn/$DINDBOX_NAME) keeps the box's snapshots in $DINDBOX_SN_ROOT/$DINDBOX_NAME
# and mounts them there; the box gets ROOT/NAME/shared at /var/lib/dindbox-snapshots
# (read-only, rslave), ROOT/NAME/containerd at /var/lib/dindbox-containerd (its containerd's
# root: the layer blobs) and the socket directory at /dindbox/snapshotter.
set -euo pipefail
# The proxy graphdriver needs dockerd 20.10-27 (Docker 28 removed graphdriver
# plugins): with --graphdriver the box is the bookworm image, unless
# DINDBOX_SUITE says otherwise. Before lib.sh, which names the image after it.
for arg in "$@"; do
    if [ "$arg" = --graphdriver ]; then export DINDBOX_SUITE=${DINDBOX_SUITE:-bookworm}; fi
done
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

graphdriver= snapshotter=
for arg in "$@"; do
    case "$arg" in
    --graphdriver) graphdriver=1 ;;
    --snapshotter) snapshotter=1 ;;
    *) die "unknown argument $arg (only --graphdriver or --snapshotter)" ;;
    esac
done
[ -z "$graphdriver" ] || [ -z "$snapshotter" ] || die "--graphdriver and --snapshotter: choose one"

name=${DINDBOX_NAME:-dindbox}
volume=$name-data
if [ "${DINDBOX_TLS:-1}" = 0 ]; then
    port=${DINDBOX_PORT:-2375}
    tls_args=(-e DOCKER_TLS_CERTDIR=)
    client_env=()
else
    port=${DINDBOX_PORT:-2376}
    certs=${DINDBOX_CERTS:-/var/lib/dindbox/run/$name/certs}
    mkdir -p "$certs"
    tls_args=(-v "$certs:/certs")
    client_env=(DOCKER_TLS_VERIFY=1 "DOCKER_CERT_PATH=$certs/client")
fi
api=tcp://127.0.0.1:$port
gd_root=${DINDBOX_GD_ROOT:-/var/lib/dindbox-gd}
gd_run=/run/dindbox/gd/$name
sn_root=${DINDBOX_SN_ROOT:-/var/lib/dindbox-sn}
sn_run=/run/dindbox/sn/$name

if [ "$(id -u)" = 0 ]; then ensure_packages; fi
docker_up_any
outer=$DOCKER_HOST
export DINDBOX_DOCKER_HOST=$outer # for build-image.sh
bash "$DINDBOX_REPO/scripts/build-image.sh"
ensure_busybox_image # busybox.tar to load into the box (there is no registry)

if docker container inspect "$name" >/dev/null 2>&1; then
    say "replacing the existing box $name (its storage and images stay)"
    docker rm -f "$name" >/dev/null
fi

# start_storage_server KIND ROOT RUN SOCKET: (re)starts `dindbox KIND-server -R
# ROOT -C $name -S unix://RUN/SOCKET` in the background, its pid in
# RUN/server.pid and its log in RUN/server.log, and waits for the socket.
start_storage_server() {
    local kind=$1 root=$2 run=$3 socket=$4
    binary=${DINDBOX_BINARY:-$(static_binary_path)} # the one build-image.sh built
    mkdir -p "$root" "$run"
    if [ -s "$run/server.pid" ] && kill -0 "$(cat "$run/server.pid")" 2>/dev/null; then
        say "stopping the previous $kind server $(cat "$run/server.pid")"
        kill -TERM "$(cat "$run/server.pid")"
        for _ in $(seq 100); do kill -0 "$(cat "$run/server.pid")" 2>/dev/null || break; sleep 0.1; done
    fi
    say "starting dindbox $kind-server for $name (area $root/$name, log $run/server.log)"
    setsid "$binary" "$kind-server" -R "$root" -C "$name" \
        -S "unix://$run/$socket" >>"$run/server.log" 2>&1 </dev/null &
    echo $! >"$run/server.pid"
    for _ in $(seq 100); do [ -S "$run/$socket" ] && break; sleep 0.1; done
    [ -S "$run/$socket" ] || {
        tail -n 20 "$run/server.log" >&2
        die "the $kind server did not create $run/$socket; its log is above"
    }
}

storage=(-v "$volume:/var/lib/docker")
if [ -n "$graphdriver" ]; then
    [ "$(id -u)" = 0 ] || die "--graphdriver needs root (it makes a shared bind mount on the host)"
    area=$gd_root/$name
    mkdir -p "$area"
    # The server's overlay mounts reach the box only through propagation.
    if ! mountpoint -q "$area"; then mount --bind "$area" "$area"; fi
    mount --make-shared "$area"
    start_storage_server graphdriver "$gd_root" "$gd_run" dindbox.sock
    storage=(--mount "type=bind,src=$area,dst=/var/lib/docker,bind-propagation=rslave"
        -v "$gd_run:/dindbox/graphdriver" -e DINDBOX_GRAPHDRIVER=unix:///dindbox/graphdriver/dindbox.sock)
fi

if [ -n "$snapshotter" ]; then
    [ "$(id -u)" = 0 ] || die "--snapshotter needs root (the server mounts on the host)"
    # It makes ROOT/NAME/shared a shared mount itself.
    start_storage_server snapshotter "$sn_root" "$sn_run" snapshots.sock
    storage+=(--mount "type=bind,src=$sn_root/$name/shared,dst=/var/lib/dindbox-snapshots,bind-propagation=rslave,readonly"
        -v "$sn_root/$name/containerd:/var/lib/dindbox-containerd"
        -v "$sn_run:/dindbox/snapshotter" -e DINDBOX_SNAPSHOTTER=unix:///dindbox/snapshotter/snapshots.sock)
fi

say "starting box $name on $api"
t0=$(date +%s%N)
docker run -d --privileged --name "$name" -e "PORT=$port" -p "127.0.0.1:$port:$port" \
    "${tls_args[@]}" "${storage[@]}" "$DINDBOX_IMAGE" >/dev/null

# Ready = the API answers through the proxy on the published port.
while ! env "${client_env[@]}" DOCKER_HOST=$api timeout 5 docker version >/dev/null 2>&1; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
        docker logs --tail 50 "$name" >&2 || true
        die "box $name exited (code $(docker inspect -f '{{.State.ExitCode}}' "$name")) before it was ready; its log is above"
    fi
    if (($(date +%s%N) - t0 > 120000000000)); then
        docker logs --tail 50 "$name" >&2 || true
        die "box $name not ready on $api after 120 s; its log is above"
    fi
    sleep 0.2
done
say "box ready in $((($(date +%s%N) - t0) / 1000000)) ms"

export DOCKER_HOST=$api
for kv in "${client_env[@]}"; do export "${kv?}"; done
if ! docker image inspect busybox:latest >/dev/null 2>&1; then
    say "loading busybox into the box through the proxy"
    docker load -q -i "$BUSYBOX_TAR" >&2
fi
say "smoke test: docker run --rm busybox echo hi"
out=$(docker run --rm busybox echo hi) || die "smoke container failed"
[ "$out" = hi ] || die "smoke container printed '$out', expected 'hi'"
say "smoke test passed"

say "the box: DOCKER_HOST=$outer docker logs $name  (stop: docker stop $name)"
if [ -n "$graphdriver" ]; then
    say "its layers: $gd_root/$name on the host; server log $gd_run/server.log" \
        "(stop it after the box: kill \$(cat $gd_run/server.pid); then umount $gd_root/$name)"
fi
if [ -n "$snapshotter" ]; then
    say "its snapshots and layer blobs: $sn_root/$name on the host; server log $sn_run/server.log" \
        "(stop it after the box: kill \$(cat $sn_run/server.pid))"
fi
say "use it with:"
if [ ${#client_env[@]} -gt 0 ]; then
    echo "export DOCKER_HOST=$api ${client_env[*]}"
else
    echo "export DOCKER_HOST=$api; unset DOCKER_TLS_VERIFY DOCKER_CERT_PATH"
fi
