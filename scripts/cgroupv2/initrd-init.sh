#!/bin/busybox sh
# /init of the v2 guest's mini initramfs (scripts/test-cgroupv2.sh builds it):
# static busybox, the modules for virtio-blk and ext4 (in load order in
# /modules.list), then switch_root to the ext4 disk and its boot script.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.list); do insmod "/modules/$m" 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
    echo "V2 FATAL initramfs: cannot mount /dev/vda" >/dev/console
    echo o >/proc/sysrq-trigger
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/dindbox-v2boot
