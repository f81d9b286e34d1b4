#!/bin/bash
# The VM tests' initramfs: build-initramfs.sh KERNELDIR INIT OUT.img
# busybox-static + the modules virtio, squashfs, overlay and ext4 need (in modprobe's order),
# vfat with its code pages and efivarfs for a UEFI disk's ESP, i6300esb (the watchdog /init arms
# when the machine has one) + INIT as /init. Variant inits (one that exits, to make the kernel
# panic) use the same script.
set -euo pipefail
KDIR=${1:?usage: build-initramfs.sh KERNELDIR INIT OUT.img}
INIT=${2:?init script}
OUT=${3:?output file}
ver=$(cat "$KDIR/version")
stage=$(mktemp -d "${OUT}.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/lib/modules"
cp /bin/busybox "$stage/bin/busybox"
for applet in $("$stage/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
: >"$stage/modules.list"
modprobe -S "$ver" -d "$KDIR/root" -a --show-depends \
    virtio_pci virtio_blk virtio_net squashfs overlay crc32c_generic ext4 i6300esb \
    vfat nls_cp437 nls_ascii nls_utf8 efivarfs |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
    name=$(basename "$ko")
    cp "$ko" "$stage/lib/modules/$name"
    echo "$name" >>"$stage/modules.list"
done
cp "$INIT" "$stage/init"
chmod 755 "$stage/init"
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --reproducible) |
    gzip -9n >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
