#!/usr/bin/env bash
# Installs everything Ferry needs on a fresh Debian 12 machine: the Debian tools it drives,
# Node.js 24 (as the npm package `node`, into node_modules/.bin) and the npm dependencies.
# Run as root (or with sudo). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools Ferry drives or compares against. Keep this list in step with docs/architecture.md.
PACKAGES=(
  squashfs-tools erofs-utils cryptsetup-bin zstd attr fdisk util-linux e2fsprogs
  casync debootstrap xz-utils nginx-light
  systemd-boot efibootmgr dt-utils grub-common u-boot-tools libubootenv-tool time
  # the fleet server's second database, and the dashboard's browser tests
  postgresql chromium fonts-liberation
  # real-boot tests (packages/vm): QEMU, GRUB for BIOS, busybox for the initramfs
  qemu-system-x86 grub-pc-bin busybox-static kmod cpio binutils
  # kexec into an installed update (ferry reboot --kexec): the guest image carries its kexec
  kexec-tools
  # ... and UEFI: OVMF, GRUB for EFI, systemd-boot's EFI binary, the FAT ESP built without a mount
  ovmf grub-efi-amd64-bin systemd-boot-efi dosfstools mtools
  # delta benchmark peers (npm run bench)
  zchunk ostree xdelta3 rsync
  # deployments: the btrfs loop test (reflink checkouts)
  btrfs-progs
)

need=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -f package-lock.json ]; then npm ci --no-fund --no-audit; else npm install --no-fund --no-audit; fi
node_modules/.bin/node scripts/require-node.mjs
echo "setup: ready ($(node_modules/.bin/node --version))"
