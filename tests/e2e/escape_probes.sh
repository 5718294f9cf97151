# Escape probes (issue 15), run by busybox sh as root inside a box or an
# inner container: each prints `PROBE <name> escaped|denied <detail>`.
# "escaped" means the kernel let root here act on the host; every probe
# undoes what it did and changes no host setting:
#   sysrq       writes `h` (print help to the kernel log) to /proc/sysrq-trigger
#               ("absent" on a kernel without CONFIG_MAGIC_SYSRQ)
#   sysctl      writes kernel.printk_ratelimit's own value back
#   blockdev    mknods the host's first disk (/proc/partitions) and mounts it: the
#               host's own superblock again (a read-only mount would need a second
#               open of a disk mounted read-write, which the kernel refuses)
#   devices     finds that disk's node in /dev
#   module      init_module passes its CAP_SYS_MODULE check (busybox insmod of a
#               file that is no module: ENOEXEC "invalid module format", not EPERM;
#               "absent" when the kernel has no module support, ENOSYS)
#   cgroup      mounts the memory cgroup hierarchy and makes a directory at its root
#   signal      sends SIGCONT to a host root process (`sleep $HOST_SLEEP`) in this
#               pid namespace and reads its environ (a ptrace access check)
#   otherbox    reads another box's file $OTHER_DATA through the mounted host disk
# Environment: HOST_SLEEP (the helper's sleep argument), OTHER_DATA (a host path).
b=${BUSYBOX:-busybox}
work=/tmp/dindbox-probe.$$
$b mkdir -p "$work/mnt" "$work/cg"

say() { echo "PROBE $1 $2 $(echo "$3" | $b tr '\n' ' ' | $b head -c 200)"; }

if [ ! -e /proc/sysrq-trigger ] && $b grep -q '^proc /proc ' /proc/mounts; then say sysrq absent "no /proc/sysrq-trigger in this kernel"
elif out=$( (echo h >/proc/sysrq-trigger) 2>&1); then say sysrq escaped "wrote h"; else say sysrq denied "$out"; fi

v=$($b cat /proc/sys/kernel/printk_ratelimit 2>&1)
if out=$( (echo "$v" >/proc/sys/kernel/printk_ratelimit) 2>&1); then say sysctl escaped "wrote $v"; else say sysctl denied "$out"; fi

disk=$($b awk 'NR > 2 && $4 != "" { print $4; exit }' /proc/partitions)
majmin=$($b awk -v d="$disk" '$4 == d { print $1, $2 }' /proc/partitions)
mounted=no
mount_disk() { # busybox's own probing retries read-only, which the kernel refuses
    $b mknod "$work/disk" b $majmin 2>&1 || return 1
    for t in $($b grep -v nodev /proc/filesystems); do
        err=$($b mount -t "$t" "$work/disk" "$work/mnt" 2>&1) && return 0
    done
    echo "$err"
    return 1
}
if out=$(mount_disk); then
    mounted=yes
    say blockdev escaped "mounted $disk ($majmin)"
else
    say blockdev denied "$disk ($majmin): $out"
fi

if [ -n "$disk" ] && [ -e "/dev/$disk" ]; then say devices escaped "/dev/$disk exists"; else say devices denied "no /dev/$disk"; fi

echo "dindbox escape probe: not a kernel module" >"$work/not.ko"
out=$($b insmod "$work/not.ko" 2>&1)
case $out in
*"not permitted"*) say module denied "$out" ;;
*"not support"*) say module absent "no module support in this kernel: $out" ;;
*) say module escaped "init_module answered: $out" ;;
esac

if out=$($b mount -t cgroup -o memory none "$work/cg" 2>&1 && $b mkdir "$work/cg/dindbox-probe-$$" 2>&1); then
    $b rmdir "$work/cg/dindbox-probe-$$"
    say cgroup escaped "made a directory at the root of the memory hierarchy"
    $b umount "$work/cg"
else
    say cgroup denied "$out"
    $b umount "$work/cg" 2>/dev/null
fi

pid=
for p in /proc/[0-9]*; do
    if [ "$($b tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" = "sleep $HOST_SLEEP " ]; then pid=${p#/proc/}; fi
done
if [ -z "$pid" ]; then
    say signal denied "no host process sleep $HOST_SLEEP in this pid namespace"
elif out=$($b kill -CONT "$pid" 2>&1 && $b head -c 1 "/proc/$pid/environ" 2>&1 >/dev/null); then
    say signal escaped "SIGCONT to host pid $pid and read its environ"
else
    say signal denied "pid $pid: $out"
fi

out=
if [ "$mounted" = yes ] && out=$($b cat "$work/mnt$OTHER_DATA" 2>&1); then
    say otherbox escaped "read $OTHER_DATA: $out"
else
    say otherbox denied "${out:-the host disk is not mounted}"
fi
[ "$mounted" = yes ] && $b umount "$work/mnt"
$b rm -rf "$work"
