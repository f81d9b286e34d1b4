#!/bin/bash
# The VM tests' GPT disk image: build-disk.sh OUT.img BUNDLE PUBKEY
#   1 bios   1 MiB    BIOS boot partition (GRUB core.img)
#   2 boot   32 MiB   ext4: grub/grub.cfg (Ferry's ferry-ab.cfg logic), grub/grubenv
#   3 rootfs-a, 4 rootfs-b   128 MiB each: squashfs slots holding /boot/vmlinuz + /boot/initrd.img
#   5 data   128 MiB  ext4: /data/ferry (agent state), /data/overlay/<slot> (writable layers)
# Slot A is provisioned with Ferry itself: `ferry install BUNDLE` runs on the host against a
# file-backed view of this very disk (same offsets), so slot A, the grubenv block and the agent
# state are exactly what the agent would have written; slot A's first boot is its trial boot.
# Filesystems are built as files (mke2fs -d) and written at their offsets: no partition nodes
# are needed. Only grub-bios-setup needs the boot partition mounted (a loop device at its offset).
set -euo pipefail
OUT=${1:?usage: build-disk.sh OUT.img BUNDLE PUBKEY}
BUNDLE=${2:?bundle} PUB=${3:?pubkey}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
work=$(mktemp -d "${OUT}.work.XXXXXX")
mnt=""
loop=""
cleanup() {
    [ -z "$mnt" ] || umount "$mnt" 2>/dev/null || true
    [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
MiB=$((1024 * 1024))
disk="$work/prov/disk.img"
mkdir -p "$work/prov/etc/ferry/keyring" "$work/prov/boot/grub" "$work/prov/data/ferry"
truncate -s $((420 * MiB)) "$disk"
sfdisk --quiet "$disk" <<'PT'
label: gpt
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=32MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot
size=128MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs-a
size=128MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs-b
size=128MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
PT
part() { sfdisk -J "$disk" | node -e 'const t=JSON.parse(require("fs").readFileSync(0,"utf8")).partitiontable;const p=t.partitions[Number(process.argv[1])-1];console.log(p.start*t.sectorsize,p.size*t.sectorsize)' "$1"; }
read -r bootOff bootSize < <(part 2)
read -r aOff aSize < <(part 3)
read -r bOff bSize < <(part 4)
read -r dataOff dataSize < <(part 5)

# Provision slot A with Ferry (host view of the device: the slots are regions of the disk file).
cp "$PUB" "$work/prov/etc/ferry/keyring/release.pub"
cat >"$work/prov/etc/ferry/system.toml" <<TOML
[system]
compatible = "ferry-vm-x86_64"
bootloader = "grub"
boot-attempts = 3
data-directory = "/data/ferry"

[keyring]
path = "/etc/ferry/keyring"

[bootloader.grub]
env = "/boot/grub/grubenv"

[slot.rootfs.0]
device = "/disk.img"
offset = $aOff
size = $aSize
bootname = "A"

[slot.rootfs.1]
device = "/disk.img"
offset = $bOff
size = $bSize
bootname = "B"
TOML
FERRY_BOOTED_SLOT=B "$REPO/packages/cli/bin/ferry" install --root "$work/prov" "$BUNDLE" >"$work/install.log"
FERRY_BOOTED_SLOT=B "$REPO/packages/cli/bin/ferry" mark-bad --root "$work/prov" B >>"$work/install.log"

# grub.cfg: serial console, Ferry's slot selection verbatim, this disk's menu entries.
cfg="$work/prov/boot/grub/grub.cfg"
bash "$HERE/grub-cfg.sh" >"$cfg"
grub-script-check "$cfg"

mkdir -p "$work/prov/boot/grub/i386-pc"
grub-mkimage -O i386-pc -o "$work/prov/boot/grub/i386-pc/core.img" -p '(hd0,gpt2)/grub' \
    biosdisk part_gpt ext2 squash4 gzio loadenv test echo linux normal configfile serial \
    terminal sleep reboot halt
cp /usr/lib/grub/i386-pc/boot.img "$work/prov/boot/grub/i386-pc/boot.img"

# ext4 with a journal, not ext2: the agent rewrites grubenv with a rename, and without a
# journal a power cut during it left the directory broken (EIO at the next boot).
mke2fs -q -t ext4 -E root_owner=0:0 -d "$work/prov/boot" "$work/boot.fs" $((bootSize / 1024))k
mke2fs -q -t ext4 -E root_owner=0:0 -d "$work/prov/data" "$work/data.fs" $((dataSize / 1024))k
dd if="$work/boot.fs" of="$disk" bs=1M seek=$((bootOff / MiB)) conv=notrunc,sparse status=none
dd if="$work/data.fs" of="$disk" bs=1M seek=$((dataOff / MiB)) conv=notrunc,sparse status=none

# grub-bios-setup wants its directory on the image's own boot partition.
mnt="$work/mnt"
mkdir -p "$mnt"
loop=$(losetup --show -f -o "$bootOff" --sizelimit "$bootSize" "$disk")
mount "$loop" "$mnt"
echo "(hd0) $disk" >"$work/device.map"
/usr/lib/grub/i386-pc/grub-bios-setup -d "$mnt/grub/i386-pc" -m "$work/device.map" "$disk"
umount "$mnt" && mnt=""
losetup -d "$loop" && loop=""
printf 'boot %s %s\nrootfs-a %s %s\nrootfs-b %s %s\ndata %s %s\n' "$bootOff" "$bootSize" \
    "$aOff" "$aSize" "$bOff" "$bSize" "$dataOff" "$dataSize" >"$OUT.layout"
mv "$disk" "$OUT"
