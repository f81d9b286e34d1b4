#!/bin/bash
# Staging tree of a VM root image: build-rootfs.sh OUTDIR VERSION VARIANT KERNELDIR INITRD PUBKEY
#   VARIANT good | bad-health (a health check that exits 1) | panic (INITRD is expected to be
#   the panicking one; the tree is otherwise good) | hang (/sbin/init waits forever for a disk
#   that never appears, before it takes over the watchdog)
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
    boot proc sys dev run tmp data root opt var/lib
cp /bin/busybox bin/busybox
for applet in $(bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "bin/$applet"
done
cp "$HERE/../guest/rootfs-init" sbin/init
if [ "$VARIANT" = hang ]; then
    cat >sbin/init <<'INIT'
#!/bin/sh
# The hang release's /sbin/init: before it mounts anything else or takes over the watchdog, it
# waits for a disk that never appears. No panic, no reboot: only the watchdog ends this boot.
export PATH=/bin
mount -t proc proc /proc
echo "FERRY-HANG: release=$(cat /etc/ferry-release) waits for /dev/vdz $(cat /proc/cmdline)"
while [ ! -b /dev/vdz ]; do sleep 1; done
INIT
fi
chmod 755 sbin/init

# Node 24 (the repository's own binary), Debian's kexec (kexec-tools, for `ferry reboot
# --kexec`) and the shared libraries ldd names for them.
# Stripped of its debug symbols, as an image build would: 18 MB less to compress and install.
strip -o usr/bin/node "$NODE"
mkdir -p usr/sbin
cp /usr/sbin/kexec usr/sbin/kexec
for lib in $(ldd "$NODE" /usr/sbin/kexec | awk '/=> \// { print $3 } /^\t\/lib64\// { print $1 }' | sort -u); do
    case "$lib" in
        /lib64/*) cp -L "$lib" "lib64/$(basename "$lib")" ;;
        *) cp -L "$lib" "lib/x86_64-linux-gnu/$(basename "$lib")" ;;
    esac
done

# Ferry's runtime: the device build (scripts/build-device.ts), the CLI and agent as a few plain
# JavaScript files; under TCG it starts about 4x faster than the workspace's module tree.
"$NODE" "$REPO/scripts/build-device.ts" opt/ferry >/dev/null
printf '#!/bin/sh\nexec /usr/bin/node --disable-warning=ExperimentalWarning /opt/ferry/ferry.mjs "$@"\n' >usr/bin/ferry
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

# ferry reboot --kexec: the line GRUB's menu entry for the slot passes (build-disk.sh).
[kexec]
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "root=PARTLABEL=rootfs-{bootname-lower} ro ferry.slot={bootname} console=ttyS0,115200 panic=5 loglevel=3"

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
