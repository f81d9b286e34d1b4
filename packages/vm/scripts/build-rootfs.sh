#!/bin/bash
# Staging tree of a VM root image: build-rootfs.sh OUTDIR VERSION VARIANT KERNELDIR INITRD PUBKEY
#   VARIANT good | bad-health (a health check that exits 1) | panic (INITRD is expected to be
#   the panicking one; the tree is otherwise good)
# The tree is built from nothing: every file is created at an explicit path under a directory
# this script made, so nothing is written through a symlink. Ferry turns it into an image.
set -euo pipefail
OUT=${1:?usage: build-rootfs.sh OUTDIR VERSION VARIANT KERNELDIR INITRD PUBKEY}
VERSION=${2:?version} VARIANT=${3:?variant} KDIR=${4:?kernel dir} INITRD=${5:?initrd} PUB=${6:?pubkey}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
NODE=$(readlink -f "$REPO/node_modules/.bin/node")
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
mkdir -p bin sbin usr/bin lib/x86_64-linux-gnu lib64 etc/ferry/keyring etc/ferry/health.d \
    boot proc sys dev run tmp data root opt/ferry/packages opt/ferry/node_modules/@ferry var/lib
cp /bin/busybox bin/busybox
for applet in $(bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "bin/$applet"
done
cp "$HERE/../guest/rootfs-init" sbin/init
chmod 755 sbin/init

# Node 24 (the repository's own binary) and the shared libraries ldd names.
cp "$NODE" usr/bin/node
for lib in $(ldd "$NODE" | awk '/=> \// { print $3 } /^\t\/lib64\// { print $1 }'); do
    case "$lib" in
        /lib64/*) cp -L "$lib" "lib64/$(basename "$lib")" ;;
        *) cp -L "$lib" "lib/x86_64-linux-gnu/$(basename "$lib")" ;;
    esac
done

# Ferry's runtime: sources without tests, types erased (strip-types.mjs), and the production
# dependency tree of the CLI.
cp "$REPO/package.json" opt/ferry/package.json
for p in core protocol builder repo agent cli; do
    "$NODE" --disable-warning=ExperimentalWarning "$HERE/strip-types.mjs" "$REPO/packages/$p" "opt/ferry/packages/$p"
    ln -s "../../packages/$p" "opt/ferry/node_modules/@ferry/$p"
done
(cd "$REPO" && npm ls --omit=dev --all --parseable -w packages/cli 2>/dev/null) |
    sed -n "s|^$REPO/node_modules/||p" | grep -v '^@ferry/' | grep -v '/node_modules/' |
    while read -r dep; do
        mkdir -p "opt/ferry/node_modules/$(dirname "$dep")"
        cp -a "$REPO/node_modules/$dep" "opt/ferry/node_modules/$dep"
    done
printf '#!/bin/sh\nexec /usr/bin/node --disable-warning=ExperimentalWarning /opt/ferry/packages/cli/src/main.js "$@"\n' >usr/bin/ferry
chmod 755 usr/bin/ferry

# Kernel and initramfs live inside the slot: GRUB loads them from the squashfs.
cp "$KDIR/vmlinuz" boot/vmlinuz
cp "$INITRD" boot/initrd.img

cp "$PUB" etc/ferry/keyring/release.pub
echo "$VERSION" >etc/ferry-release
cat >etc/ferry/system.toml <<'TOML'
[system]
compatible = "ferry-vm-x86_64"
bootloader = "grub"
boot-attempts = 3
data-directory = "/data/ferry"

[keyring]
path = "/etc/ferry/keyring"

[health]
directory = "/etc/ferry/health.d"
timeout = 60

[bootloader.grub]
env = "/boot/grub/grubenv"

[slot.rootfs.0]
device = "/dev/vda3"
bootname = "A"

[slot.rootfs.1]
device = "/dev/vda4"
bootname = "B"
TOML
# The same device booted by systemd-boot (a UEFI disk whose ESP has loader/loader.conf): the
# root's init puts this in place of system.toml. Kernels come out of the slot onto the ESP.
sed -e 's/^bootloader = "grub"$/bootloader = "systemd-boot"/' -e '/^\[bootloader\.grub\]$/,/^$/d' \
    etc/ferry/system.toml >etc/ferry/system-systemd-boot.toml
cat >>etc/ferry/system-systemd-boot.toml <<'TOML'

[bootloader.systemd-boot]
entries = "/boot/loader/entries"
loader-conf = "/boot/loader/loader.conf"
esp = "/boot"

[bootloader.systemd-boot.kernel-options]
A = "root=PARTLABEL=rootfs-a ro ferry.slot=A console=ttyS0,115200 panic=5 loglevel=3"
B = "root=PARTLABEL=rootfs-b ro ferry.slot=B console=ttyS0,115200 panic=5 loglevel=3"
TOML
printf '#!/bin/sh\n# the persistent data partition is writable\nexec touch /data/ferry/.health-probe\n' \
    >etc/ferry/health.d/10-data
if [ "$VARIANT" = bad-health ]; then
    printf '#!/bin/sh\necho "FERRY-HEALTH: 50-broken fails on purpose"\nexit 1\n' >etc/ferry/health.d/50-broken
fi
chmod 755 etc/ferry/health.d/*
