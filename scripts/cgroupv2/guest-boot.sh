#!/bin/sh
# PID 1 of the cgroup-v2 test guest (baked into the cached disk image as
# /sbin/dindbox-v2boot). Mounts the basics and *only* cgroup2 (the kernel runs
# with cgroup_no_v1=all), mounts the 9p share from the host, runs the test
# script the host put there (share/guest-test.sh), and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
hostname v2guest
ip link set lo up
modprobe -q 9pnet_virtio
modprobe -q 9p
mkdir -p /mnt/share
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt/share &&
    [ -f /mnt/share/guest-test.sh ]; then
    bash /mnt/share/guest-test.sh 2>&1 | tee /mnt/share/guest.log
else
    echo "V2 FATAL guest: no 9p share or no guest-test.sh on it"
fi
sync
echo o >/proc/sysrq-trigger
sleep 30
