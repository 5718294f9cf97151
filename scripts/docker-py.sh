#!/usr/bin/env bash
# docker-py's own integration tests (tests/integration of the `docker` sdist on
# PyPI) twice, on two boxes of the same image: straight to the inner dockerd's
# private socket, and through the proxy. Prints the tests that pass directly but
# fail through the proxy, each a documented refusal (the proxy's `dindbox: ...
# is not allowed` message, matched against scripts/docker-py-refusals.txt) or a
# regression, and exits 1 when there is a regression. A test that fails through
# the proxy for another reason is tried up to twice more before it counts as one
# (docker-py has races of its own, e.g. `logs` read right after `start`).
#
# Nothing of docker-py is kept in the repo: the sdist and a virtualenv with
# pinned test dependencies are fetched at run time into $DINDBOX_CACHE/docker-py
# (pip; python3-venv from apt when missing). There is no registry: each box gets
# busybox:latest (scripts/lib.sh's busybox-static image) tagged as the images
# the suite pulls (alpine:3.10, alpine:latest); tests that need a registry fail
# both ways and so do not count.
#
#   DINDBOX_IMAGE            the box image (default dindbox:dev, the sid base: dockerd 28.5;
#                            build it with `scripts/build-image.sh`)
#   DOCKER_PY_VERSION        the `docker` sdist (default 7.0.0, the newest on PyPI
#                            that ships tests/; 7.1.0 and 7.2.0 ship none)
#   DOCKER_TEST_API_VERSION  the API version both runs speak (default 1.41)
#   DOCKER_PY_TESTS          what pytest runs, relative to the sdist (default tests/integration)
#   DOCKER_PY_RESULTS        where the JUnit files and pytest logs go (default: a new
#                            directory under /tmp, kept and printed)
#   DOCKER_PY_SEQUENTIAL=1   run the two suites one after the other (default: at once)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

version=${DOCKER_PY_VERSION:-7.0.0}
api=${DOCKER_TEST_API_VERSION:-1.41}
tests=${DOCKER_PY_TESTS:-tests/integration}
image=${DINDBOX_IMAGE:-dindbox:dev}
cache=$DINDBOX_CACHE/docker-py
results=${DOCKER_PY_RESULTS:-$(mktemp -d /tmp/dindbox-docker-py.XXXXXX)}
refusals=$DINDBOX_REPO/scripts/docker-py-refusals.txt
mkdir -p "$cache" "$results"
results=$(cd "$results" && pwd)

# Pinned: docker-py 7.0.0's test-requirements.txt and requirements.txt, and
# what they pull in, at versions that install on the machine's Python 3.
PY_PINS=(
    pytest==7.4.2 pytest-timeout==2.1.0 iniconfig==2.0.0 pluggy==1.3.0
    packaging==21.3 pyparsing==3.1.1
    requests==2.31.0 urllib3==1.26.18 idna==3.6 certifi==2023.11.17 charset-normalizer==3.3.2
    websocket-client==1.3.3
    paramiko==2.11.0 six==1.16.0 bcrypt==4.1.2 pynacl==1.5.0 cryptography==41.0.7 cffi==1.16.0
    pycparser==2.21
)

# A virtualenv with exactly PY_PINS, made once per pin list.
python_env() {
    local key venv
    key=$(printf '%s\n' "${PY_PINS[@]}" | sha256sum | cut -c1-12)
    venv=$cache/venv-$key
    if [ ! -x "$venv/bin/python" ] || [ ! -e "$venv/.complete" ]; then
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
            [ "$(id -u)" = 0 ] || die "python3 -m venv is missing (apt-get install python3-venv)" || return 1
            say "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null; } ||
                die "apt-get install python3-venv failed" || return 1
        fi
        say "creating $venv (pip install ${PY_PINS[*]})"
        rm -rf "$venv"
        python3 -m venv "$venv" >&2 || return 1
        "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "${PY_PINS[@]}" >&2 || return 1
        "$venv/bin/pip" check >&2 || return 1
        touch "$venv/.complete"
    fi
    echo "$venv"
}

# docker-py's sdist from PyPI, unpacked; its tests/ checked.
docker_py_source() { # VENV
    local dir=$cache/docker-$version
    if [ ! -d "$dir/tests" ]; then
        say "downloading the docker $version sdist from PyPI"
        "$1/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
            -d "$cache" "docker==$version" >&2 || return 1
        rm -rf "$dir"
        tar -xzf "$cache/docker-$version.tar.gz" -C "$cache" || return 1
    fi
    [ -d "$dir/$tests" ] || die "the docker $version sdist on PyPI has no $tests (7.1.0 and later" \
        "ship no tests/, and PyPI has no other source of them): use DOCKER_PY_VERSION=7.0.0" || return 1
    echo "$dir"
}

boxes=()
cleanup() {
    local name
    for name in "${boxes[@]}"; do
        docker rm -f -v "$name" >/dev/null 2>&1 || true
        docker volume rm -f "$name" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# Starts a box for ROLE whose inner dockerd listens on a socket the host sees
# ($results/ROLE-socket/docker.sock; DINDBOX_DOCKERD_SOCKET moves it out of the
# box's /run tmpfs, nothing else changes).
start_box() { # NAME ROLE
    mkdir -p "$results/$2-socket"
    docker run -d --privileged --name "$1" -e PORT=2375 -e DOCKER_TLS_CERTDIR= \
        -e DINDBOX_DOCKERD_SOCKET=/dindbox-direct/docker.sock -v "$results/$2-socket:/dindbox-direct" \
        -v "$1:/var/lib/docker" -p 127.0.0.1::2375 "$image" >/dev/null
}

# Waits for both the proxy and the inner dockerd of box NAME (ROLE), then gives
# the inner dockerd busybox:latest under the names the suite pulls.
prepare_box() { # NAME ROLE
    local direct=unix://$results/$2-socket/docker.sock port tag
    port=$(docker port "$1" 2375/tcp | head -n 1 | sed 's/.*://')
    if ! wait_docker_api "tcp://127.0.0.1:$port" 120 || ! wait_docker_api "$direct" 30; then
        docker logs --tail 40 "$1" >&2 || true
        die "box $1 was not ready within 150 s (log above)" || return 1
    fi
    DOCKER_HOST=$direct docker load -q -i "$BUSYBOX_TAR" >/dev/null || return 1
    for tag in alpine:3.10 alpine:latest; do
        DOCKER_HOST=$direct docker tag busybox:latest "$tag" || return 1
    done
}

# Runs pytest from the sdist against DOCKER_HOST; the JUnit file is $results/ROLE.xml.
# --runxfail: a test docker-py marks as one that may fail is judged like the
# others (its failure, with the proxy's reason, is then in the JUnit file).
run_suite() { # ROLE DOCKER_HOST [pytest arguments]
    local role=$1 host=$2 t0 rc=0
    shift 2
    mkdir -p "$results/$role-home"
    t0=$(date +%s)
    (cd "$suite" && env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT -u DOCKER_CONFIG \
        HOME="$results/$role-home" DOCKER_HOST="$host" DOCKER_TEST_API_VERSION="$api" \
        "$venv/bin/python" -m pytest -p no:cacheprovider --timeout 300 -q --runxfail \
        --junitxml "$results/$role.xml" "$@") >"$results/$role.log" 2>&1 || rc=$?
    # 0: all passed, 1: some failed; anything else is pytest itself failing.
    if [ "$rc" -gt 1 ] || [ ! -s "$results/$role.xml" ]; then
        tail -n 30 "$results/$role.log" >&2
        die "pytest ($role) exited $rc (log: $results/$role.log)" || return 1
    fi
    say "$role: $(tail -n 1 "$results/$role.log") ($(($(date +%s) - t0)) s)"
}

started=$(date +%s)
if [ "$(id -u)" = 0 ]; then ensure_packages; fi
docker_up_any
ensure_busybox_image
venv=$(python_env)
suite=$(docker_py_source "$venv")
docker image inspect "$image" >/dev/null 2>&1 ||
    die "image $image is missing: DINDBOX_IMAGE=$image bash scripts/build-image.sh"
say "docker-py $version (API $api) on $image; results in $results"

# The e2e harness's naming: boxes of a run killed midway are removed by the next e2e run.
direct_box=dindbox-e2e-dockerpy-direct-$$-0 proxy_box=dindbox-e2e-dockerpy-proxy-$$-0
boxes=("$direct_box" "$proxy_box")
rm -f "$results"/*.xml
start_box "$direct_box" direct
start_box "$proxy_box" proxy
prepare_box "$direct_box" direct
prepare_box "$proxy_box" proxy
proxy_host=tcp://127.0.0.1:$(docker port "$proxy_box" 2375/tcp | head -n 1 | sed 's/.*://')
direct_host=unix://$results/direct-socket/docker.sock
say "boxes ready after $(($(date +%s) - started)) s; running $tests directly ($direct_host) and through the proxy ($proxy_host)"

t0=$(date +%s)
if [ "${DOCKER_PY_SEQUENTIAL:-}" = 1 ]; then
    run_suite direct "$direct_host" "$tests"
    run_suite proxy "$proxy_host" "$tests"
else
    run_suite direct "$direct_host" "$tests" &
    direct_run=$!
    run_suite proxy "$proxy_host" "$tests" &
    proxy_run=$!
    wait "$direct_run" && wait "$proxy_run"
fi
suites_took=$(($(date +%s) - t0))

compare=("$venv/bin/python" "$DINDBOX_REPO/scripts/docker-py-compare.py")
runs=("$results/direct.xml" "$results/proxy.xml" "$refusals" "$suite")
for retry in 1 2; do
    mapfile -t again < <("${compare[@]}" candidates "${runs[@]}")
    [ ${#again[@]} -gt 0 ] || break
    say "trying ${#again[@]} tests through the proxy again ($retry of 2)"
    run_suite "proxy-retry-$retry" "$proxy_host" "${again[@]}"
    runs+=("$results/proxy-retry-$retry.xml")
done
rc=0
"${compare[@]}" report "${runs[@]}" || rc=$?
echo
echo "docker-py: both suites took $suites_took s; $(($(date +%s) - started)) s in all; results in $results"
exit "$rc"
