#!/bin/bash
# Debian's stock kernel for the VM tests: build-kernel.sh OUTDIR
# Writes OUTDIR/vmlinuz, OUTDIR/version and OUTDIR/root/lib/modules/<version> (depmod'ed).
set -euo pipefail
OUT=${1:?usage: build-kernel.sh OUTDIR}
rm -rf "$OUT" && mkdir -p "$OUT/debs"
cd "$OUT/debs"
# The meta package names the versioned image package in its Depends.
apt-get download linux-image-amd64 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
meta=$(ls linux-image-amd64_*.deb)
pkg=$(dpkg-deb -f "$meta" Depends | tr ',|' '\n\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*-amd64\).*/\1/p' | head -n1)
[ -n "$pkg" ] || { echo "build-kernel: no linux-image dependency in $meta" >&2; exit 1; }
apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
dpkg-deb -x "$(ls "$pkg"_*.deb)" "$OUT/root"
ver=${pkg#linux-image-}
depmod -b "$OUT/root" "$ver"
cp "$OUT/root/boot/vmlinuz-$ver" "$OUT/vmlinuz"
echo "$ver" >"$OUT/version"
rm -rf "$OUT/debs"
