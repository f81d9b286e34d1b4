#!/bin/bash
# The VM tests' UEFI disk image: build-disk-efi.sh LOADER OUT.img BUNDLE PUBKEY
#   LOADER grub: EFI/BOOT/BOOTX64.EFI is GRUB (grub-mkimage -O x86_64-efi) with the same
#                grub.cfg (contrib/grub/ferry-ab.cfg) and grubenv as the BIOS disk, on the ESP.
#   LOADER systemd-boot: EFI/BOOT/BOOTX64.EFI is systemd-bootx64.efi, loader/loader.conf says
#                `default ferry-*`; Ferry's install copies slot A's kernel and initramfs out of
#                the image to ferry/ on the ESP and writes loader/entries/ferry-A+3.conf.
# Same partitions and numbers as build-disk.sh, so the root image's system.toml (/dev/vda3,
# /dev/vda4) and the initramfs fit unchanged:
#   1 bios   1 MiB    unused on UEFI (keeps the slots at 3 and 4)
#   2 boot   64 MiB   the ESP: FAT32, type EFI System; mounted at /boot in the guest
#   3 rootfs-a, 4 rootfs-b   128 MiB each: squashfs slots
#   5 data   128 MiB  ext4: /data/ferry (agent state), /data/overlay/<slot>
# Slot A is provisioned with Ferry itself exactly as build-disk.sh does it: `ferry install BUNDLE`
# on the host against a file-backed view of this disk, the ESP's files in a host directory that
# is then copied into a FAT image (mkfs.vfat -C + mtools: no vfat driver or mount is needed).
set -euo pipefail
LOADER=${1:?usage: build-disk-efi.sh grub|systemd-boot OUT.img BUNDLE PUBKEY}
OUT=${2:?output image}
BUNDLE=${3:?bundle} PUB=${4:?pubkey}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
case "$LOADER" in
    grub | systemd-boot) ;;
    *) echo "build-disk-efi.sh: unknown loader '$LOADER'" >&2 && exit 2 ;;
esac
work=$(mktemp -d "${OUT}.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
MiB=$((1024 * 1024))
disk="$work/prov/disk.img"
esp="$work/prov/boot"
mkdir -p "$work/prov/etc/ferry/keyring" "$esp" "$work/prov/data/ferry"
truncate -s $((452 * MiB)) "$disk"
sfdisk --quiet "$disk" <<'PT'
label: gpt
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=boot
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
if [ "$LOADER" = grub ]; then
    bootloader='[bootloader.grub]
env = "/boot/grub/grubenv"'
else
    # As the root image's system-systemd-boot.toml, whose kernel options the entries get.
    bootloader='[bootloader.systemd-boot]
entries = "/boot/loader/entries"
loader-conf = "/boot/loader/loader.conf"
esp = "/boot"

[bootloader.systemd-boot.kernel-options]
A = "root=PARTLABEL=rootfs-a ro ferry.slot=A console=ttyS0,115200 panic=5 loglevel=3"
B = "root=PARTLABEL=rootfs-b ro ferry.slot=B console=ttyS0,115200 panic=5 loglevel=3"'
fi
cat >"$work/prov/etc/ferry/system.toml" <<TOML
[system]
compatible = "ferry-vm-x86_64"
bootloader = "$LOADER"
boot-attempts = 3
data-directory = "/data/ferry"

[keyring]
path = "/etc/ferry/keyring"

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

$bootloader
TOML
mkdir -p "$esp/EFI/BOOT"
if [ "$LOADER" = grub ]; then
    mkdir -p "$esp/grub"
else
    mkdir -p "$esp/loader/entries"
    printf 'timeout 0\ndefault ferry-*\n' >"$esp/loader/loader.conf"
fi
FERRY_BOOTED_SLOT=B "$REPO/packages/cli/bin/ferry" install --root "$work/prov" "$BUNDLE" >"$work/install.log"
FERRY_BOOTED_SLOT=B "$REPO/packages/cli/bin/ferry" mark-bad --root "$work/prov" B >>"$work/install.log"

if [ "$LOADER" = systemd-boot ]; then
    cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$esp/EFI/BOOT/BOOTX64.EFI"
else
# grub.cfg exactly as build-disk.sh writes it: the slots are (hd0,gpt3) and (hd0,gpt4) under
# UEFI too; $prefix is the ESP's /grub, where load_env and save_env find grubenv.
cfg="$esp/grub/grub.cfg"
bash "$HERE/grub-cfg.sh" >"$cfg"
grub-script-check "$cfg"
grub-mkimage -O x86_64-efi -o "$esp/EFI/BOOT/BOOTX64.EFI" -p /grub \
    part_gpt fat ext2 squash4 gzio loadenv test echo linux normal configfile serial \
    terminal sleep reboot halt efi_gop
fi

# The ESP: FAT32 (the guest's init recognises it by its boot sector), filled with mtools.
mkfs.vfat -C -F 32 -n ESP "$work/boot.fs" $((bootSize / 1024)) >/dev/null
mcopy -s -Q -m -i "$work/boot.fs" "$esp"/* ::/
mke2fs -q -t ext4 -E root_owner=0:0 -d "$work/prov/data" "$work/data.fs" $((dataSize / 1024))k
dd if="$work/boot.fs" of="$disk" bs=1M seek=$((bootOff / MiB)) conv=notrunc,sparse status=none
dd if="$work/data.fs" of="$disk" bs=1M seek=$((dataOff / MiB)) conv=notrunc,sparse status=none
printf 'boot %s %s\nrootfs-a %s %s\nrootfs-b %s %s\ndata %s %s\n' "$bootOff" "$bootSize" \
    "$aOff" "$aSize" "$bOff" "$bSize" "$dataOff" "$dataSize" >"$OUT.layout"
mv "$disk" "$OUT"
