#!/bin/bash
# Inside a box without --privileged in the cgroup-v2 guest (guest-test.sh, the
# "without --privileged" part): can dockerd use the box's cgroup when it runs as
# root of a nested user namespace (rootlesskit) but NOT in rootless mode (moby
# gives rootless mode no cgroupfs driver: daemon/daemon_unix.go cgroupDriver())?
# Prints `V2 NOTE name=... detail=...` lines; decides nothing.
note() { echo "V2 NOTE name=${NOTE_PREFIX:-}$1 detail=$(echo "$2" | tr '\n' ' ' | cut -c1-400)"; }
note unpriv_box_cgroup_mount "$(grep cgroup /proc/self/mountinfo | cut -d' ' -f4-6,9-)"
note unpriv_box_cgroup_owner "$(stat -c '%n %u:%g %a' /sys/fs/cgroup /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/cgroup.subtree_control 2>&1)"
echo root:1:65535 >/etc/subuid
echo root:1:65535 >/etc/subgid
mkdir -p /run/dindbox
# In the nested namespaces: a cgroup namespace of their own (so cgroup2 can be
# mounted), the v2 evacuation, then dockerd with the cgroupfs driver.
cat >/tmp/child.sh <<'CHILD'
note() { echo "V2 NOTE name=${NOTE_PREFIX:-}$1 detail=$(echo "$2" | tr '\n' ' ' | cut -c1-3000)"; }
out=$(unshare --cgroup --mount sh -c '
    umount -l /sys/fs/cgroup 2>/dev/null
    mount -t cgroup2 none /sys/fs/cgroup || { echo "mount cgroup2: failed"; exit 1; }
    mkdir -p /sys/fs/cgroup/init 2>&1 || exit 1
    for p in $(cat /sys/fs/cgroup/cgroup.procs); do echo $p >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null; done
    sed -e "s/ / +/g" -e "s/^/+/" </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control || exit 1
    echo "subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    env -u ROOTLESSKIT_STATE_DIR dockerd --host unix:///run/dindbox/rootful.sock --data-root /var/lib/docker/rootful \
        --exec-root /run/dindbox/rootful-exec --pidfile /run/dindbox/rootful.pid --iptables=false \
        --add-runtime crun=/usr/bin/crun \
        >/tmp/rootful.log 2>&1 &
    for i in $(seq 240); do [ -S /run/dindbox/rootful.sock ] && docker -H unix:///run/dindbox/rootful.sock version >/dev/null 2>&1 && break; sleep 0.5; done
    D="docker -H unix:///run/dindbox/rootful.sock"
    echo "driver: $($D info -f "{{.CgroupDriver}} {{.CgroupVersion}}" 2>&1)"
    $D load -i /busybox.tar >/dev/null 2>/tmp/load.err || echo "load: $(cat /tmp/load.err)"
    for rt in runc crun; do
        echo "limited ($rt): $($D run --rm --runtime $rt --memory 32m --pids-limit 64 busybox cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>&1)"
    done
    echo "dockerd: $(grep -iE "level=(error|fatal)" /tmp/rootful.log | tail -n 2 | cut -c1-1200)"
' 2>&1)
note unpriv_rootful_in_userns "$out"
CHILD
out=$(timeout 400 rootlesskit --state-dir=/run/dindbox/rk-rootful --net=slirp4netns --disable-host-loopback \
    --copy-up=/etc bash /tmp/child.sh 2>&1)
echo "$out" | grep '^V2 NOTE' || note unpriv_rootful_in_userns "rootlesskit: $(echo "$out" | tail -n 3)"
