#!/bin/bash
# The VM disks' grub.cfg on stdout (BIOS and UEFI alike): serial console, Ferry's slot selection
# from contrib/grub/ferry-ab.cfg verbatim, and the menu entries of slots A and B, which are
# (hd0,gpt3) and (hd0,gpt4) on both disks.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
printf 'serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n\n'
sed '/^# One entry per slot/,$d' "$REPO/contrib/grub/ferry-ab.cfg"
cat <<'CFG'
set timeout=0
echo "FERRY-GRUB: slot=$ferry_slot ORDER=$ORDER A_OK=$A_OK A_LEFT=$A_LEFT B_OK=$B_OK B_LEFT=$B_LEFT"

menuentry "Ferry slot A" --id ferry-A {
    linux (hd0,gpt3)/boot/vmlinuz root=PARTLABEL=rootfs-a ro ferry.slot=A console=ttyS0,115200 panic=5 loglevel=3
    initrd (hd0,gpt3)/boot/initrd.img
}

menuentry "Ferry slot B" --id ferry-B {
    linux (hd0,gpt4)/boot/vmlinuz root=PARTLABEL=rootfs-b ro ferry.slot=B console=ttyS0,115200 panic=5 loglevel=3
    initrd (hd0,gpt4)/boot/initrd.img
}
CFG
