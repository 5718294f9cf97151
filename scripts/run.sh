#!/usr/bin/env bash
# The main job: on a fresh machine, installs what is missing, uses the host's
# Docker (or starts a private one), builds the dindbox image, runs one box with
# its proxied Docker API on 127.0.0.1:$DINDBOX_PORT, smoke-tests it, and prints
#   export DOCKER_HOST=tcp://127.0.0.1:$DINDBOX_PORT
# on stdout (everything else goes to stderr), so `eval "$(scripts/run.sh)"` works.
#
#   DINDBOX_PORT=2375      host port to publish the box's API on (127.0.0.1 only)
#   DINDBOX_NAME=dindbox   container name; its volume is $DINDBOX_NAME-data
#   DINDBOX_DOCKER_HOST    the Docker that runs the box (default: the host's if
#                          /var/run/docker.sock answers, else a private one)
#   DINDBOX_IMAGE, DINDBOX_BASE, DINDBOX_BINARY: see build-image.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port=${DINDBOX_PORT:-2375}
name=${DINDBOX_NAME:-dindbox}
volume=$name-data
api=tcp://127.0.0.1:$port

if [ "$(id -u)" = 0 ]; then ensure_packages; fi
docker_up_any
outer=$DOCKER_HOST
export DINDBOX_DOCKER_HOST=$outer # for build-image.sh
bash "$DINDBOX_REPO/scripts/build-image.sh"
ensure_busybox_image # busybox.tar to load into the box (there is no registry)

if docker container inspect "$name" >/dev/null 2>&1; then
    say "replacing the existing box $name (its volume $volume and images stay)"
    docker rm -f "$name" >/dev/null
fi
say "starting box $name on $api"
t0=$(date +%s%N)
docker run -d --privileged --name "$name" -e PORT=2375 -p "127.0.0.1:$port:2375" \
    -v "$volume:/var/lib/docker" "$DINDBOX_IMAGE" >/dev/null

# Ready = the API answers through the proxy on the published port.
while ! DOCKER_HOST=$api timeout 5 docker version >/dev/null 2>&1; do
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
if ! docker image inspect busybox:latest >/dev/null 2>&1; then
    say "loading busybox into the box through the proxy"
    docker load -q -i "$BUSYBOX_TAR" >&2
fi
say "smoke test: docker run --rm busybox echo hi"
out=$(docker run --rm busybox echo hi) || die "smoke container failed"
[ "$out" = hi ] || die "smoke container printed '$out', expected 'hi'"
say "smoke test passed"

say "the box: DOCKER_HOST=$outer docker logs $name  (stop: docker stop $name)"
say "use it with:"
echo "export DOCKER_HOST=$api"
