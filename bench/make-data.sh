#!/usr/bin/env bash
# Builds real Debian bench data, cached outside git; see bench/README.md.
#
#   bench/make-data.sh [--out DIR]      (default: <repo>/.cache/bench-data)
#
# Idempotent: every artefact is built under a temporary name, renamed into place, then given a
# stamp holding its recipe. An artefact whose stamp matches the current recipe is skipped; one
# without a matching stamp (a changed recipe, an interrupted run) is deleted and rebuilt.
#
# The rootfs trees are hostile input in principle (their symlinks may point anywhere): the host
# never writes into them through a path. Extra packages come from debootstrap --include or from
# apt/dpkg running inside the chroot; only cp -a (which never follows symlinks in its source)
# and mke2fs -d (which stores symlinks as symlinks) read them from outside.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$REPO/.cache/bench-data"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "make-data: unknown argument: $1" >&2; exit 2 ;;
  esac
done

SUITE=bookworm
RECIPE_VERSION=1
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200} # 2024-01-01T00:00:00Z
# v2 = v1 + these 20 packages (a typical small device: networking, TLS, shell tools, python).
V2_EXTRA=(ca-certificates curl file gnupg iproute2 iputils-ping jq kmod less lsof netbase
  openssh-client procps psmisc python3-minimal rsync vim-tiny wget xz-utils zstd)
# The 1 GiB image = v2 + these (no recommends): a kernel, a toolchain, full python/perl, locales, git and systemd.
BIG_EXTRA=(linux-image-amd64 build-essential gdb git python3 python3-numpy perl locales-all
  systemd systemd-sysv udev dbus man-db manpages manpages-dev vim nftables)
# v3 = v1 with the first of these that the -security/-updates suites upgrade; else emulated.
UPGRADE_PREFERENCE="tzdata perl-base apt libc6 util-linux"
IMAGE_UUID=6f9b2c1e-5a3d-4e8f-9c0b-1d2e3f405162
IMAGE_MIN_BYTES=$((1024 * 1024 * 1024))

die() { echo "make-data: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
for t in debootstrap mke2fs unshare chroot du; do
  command -v "$t" >/dev/null || die "missing tool: $t"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE="$OUT/.debs"
mkdir -p "$CACHE"

# The first URI in the host's apt sources (one-line *.list or deb822 *.sources) serving $1
# with component main. Host names stay out of this file: they are read at run time.
apt_uri() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
        if ($(i + 1) != s) next
        for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" 'function flush() { if (deb && on && suite && main && uri) print uri;
        deb = 0; on = 1; suite = 0; main = 0; uri = "" }
      BEGIN { RS = ""; FS = "\n" }
      { flush(); for (k = 1; k <= NF; k++) { line = $k; if (line ~ /^#/) continue;
          split(line, kv, ":"); key = tolower(kv[1]); val = substr(line, length(kv[1]) + 2);
          n = split(val, w, /[ \t]+/);
          for (m = 1; m <= n; m++) { if (w[m] == "") continue;
            if (key == "types" && w[m] == "deb") deb = 1;
            if (key == "enabled" && w[m] == "no") on = 0;
            if (key == "suites" && w[m] == s) suite = 1;
            if (key == "components" && w[m] == "main") main = 1;
            if (key == "uris" && uri == "") uri = w[m] } } }
      END { flush() }' "$f"
  done | head -n 1
}

# Runs a command inside a rootfs with its own /proc, in a private mount and pid namespace, so
# nothing stays mounted on the host and every path resolves inside the chroot.
in_root() {
  local root=$1
  shift
  unshare --mount --pid --fork --propagation private \
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive /bin/sh -c 'mount -t proc proc /proc && exec "$@"' sh "$@"
}

# Deletes a path that may hold a half-built rootfs, never crossing into a leftover mount.
remove() {
  local p=$1
  [ -e "$p" ] || return 0
  awk -v p="$p/" 'index($5 "/", p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$p"
}

declare -a REPORT=()
# build NAME RECIPE FUNCTION: runs FUNCTION NAME.tmp unless NAME's stamp equals RECIPE.
build() {
  local name=$1 recipe=$2 fn=$3 stamp="$OUT/.$1.stamp" t0
  if [ -e "$OUT/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ]; then
    REPORT+=("$name|cached")
    return 0
  fi
  echo "make-data: building $name" >&2
  rm -f "$stamp"
  remove "$OUT/$name"
  remove "$OUT/$name.tmp"
  t0=$(date +%s)
  "$fn" "$OUT/$name.tmp"
  mv "$OUT/$name.tmp" "$OUT/$name"
  printf '%s' "$recipe" >"$stamp"
  REPORT+=("$name|$(($(date +%s) - t0)) s")
}
stamp_of() { cat "$OUT/.$1.stamp"; }

MIRROR=$(apt_uri "$SUITE")
[ -n "$MIRROR" ] || die "no apt source for $SUITE main in /etc/apt"
SECURITY=$(apt_uri "$SUITE-security")
UPDATES=$(apt_uri "$SUITE-updates")
echo "make-data: mirror taken from the host's apt sources" >&2

bootstrap() { # bootstrap DIR [PACKAGES...]
  local dir=$1
  shift
  local include=()
  [ $# -eq 0 ] || include=("--include=$(IFS=,; echo "$*")")
  debootstrap --variant=minbase --cache-dir="$CACHE" "${include[@]}" "$SUITE" "$dir" "$MIRROR" \
    >"$OUT/.debootstrap.log" 2>&1 || { tail -n 20 "$OUT/.debootstrap.log" >&2; die "debootstrap failed"; }
  # Device images ship without apt's caches and package lists.
  in_root "$dir" sh -c 'apt-get clean && rm -rf /var/lib/apt/lists/*'
}

make_v1() { bootstrap "$1"; }
make_v2() { bootstrap "$1" "${V2_EXTRA[@]}"; }
# apt inside a copy of v2, not debootstrap --include: debootstrap's resolver cannot pick a
# provider for a virtual package (gdb's libboost-regex1.74.0-icu72).
make_big() {
  cp -a "$OUT/rootfs-v2" "$1"
  in_root "$1" sh -c 'apt-get -qq update && apt-get -qq -y --no-install-recommends install "$@" &&
    apt-get clean && rm -rf /var/lib/apt/lists/*' sh "${BIG_EXTRA[@]}" >"$OUT/.big.log" 2>&1 ||
    { tail -n 20 "$OUT/.big.log" >&2; die "installing the big package set failed"; }
}

# Emulated upgrade when no suite offers one: the newest tzdata apt can download, rebuilt as a
# new version with one zone source line changed, built and installed by dpkg inside the chroot.
EMULATE_UPGRADE='set -e; cd /tmp; apt-get -qq update || true; apt-get download tzdata
  dpkg-deb -R tzdata_*.deb pkg
  sed -i "s/^Version: .*/&+ferrybench1/" pkg/DEBIAN/control
  printf "# ferry bench: emulated tzdata upgrade\n" >>pkg/usr/share/zoneinfo/tzdata.zi
  (cd pkg && find usr -type f -exec md5sum {} + >DEBIAN/md5sums)
  dpkg-deb -b pkg tzdata-new.deb >/dev/null && dpkg -i tzdata-new.deb >/dev/null
  rm -rf pkg tzdata_*.deb tzdata-new.deb'

make_v3() {
  local dir=$1 pkg="" p
  cp -a "$OUT/rootfs-v1" "$dir"
  in_root "$dir" dpkg-query -W >"$OUT/.v3-before"
  { [ -z "$SECURITY" ] || echo "deb $SECURITY $SUITE-security main"
    [ -z "$UPDATES" ] || echo "deb $UPDATES $SUITE-updates main"; } |
    in_root "$dir" sh -c 'cat >/etc/apt/sources.list.d/ferry-bench.list'
  # FERRY_BENCH_EMULATE_UPGRADE=1 takes the fallback path even when a real upgrade exists.
  if [ -z "${FERRY_BENCH_EMULATE_UPGRADE:-}" ] &&
    in_root "$dir" apt-get -qq update >"$OUT/.v3.log" 2>&1; then
    local upgradable
    upgradable=$(in_root "$dir" apt-get -s -qq upgrade | awk '$1 == "Inst" { print $2 }')
    for p in $UPGRADE_PREFERENCE; do
      if grep -qx "$p" <<<"$upgradable"; then pkg=$p; break; fi
    done
    [ -n "$pkg" ] || pkg=$(sort <<<"$upgradable" | head -n 1)
  fi
  if [ -n "$pkg" ]; then
    in_root "$dir" apt-get -qq -y --only-upgrade install "$pkg" >>"$OUT/.v3.log" 2>&1 ||
      die "upgrading $pkg in rootfs-v3 failed, see $OUT/.v3.log"
  else
    in_root "$dir" sh -c "$EMULATE_UPGRADE" >>"$OUT/.v3.log" 2>&1 ||
      die "emulating an upgrade in rootfs-v3 failed, see $OUT/.v3.log"
  fi
  in_root "$dir" sh -c 'rm -f /etc/apt/sources.list.d/ferry-bench.list; apt-get clean
    rm -rf /var/lib/apt/lists/*'
  in_root "$dir" dpkg-query -W >"$OUT/.v3-after"
  # What changed, for bench/README.md's claim "v1 with one package upgraded".
  diff "$OUT/.v3-before" "$OUT/.v3-after" | grep '^[<>]' >"$OUT/rootfs-v3.changes" || true
  rm -f "$OUT/.v3-before" "$OUT/.v3-after"
}

# v4: v2 with the emulated tzdata upgrade, the fourth of the deployment benchmark's five releases
# (v1, v3, v2, v4, big).
make_v4() {
  cp -a "$OUT/rootfs-v2" "$1"
  in_root "$1" sh -c "$EMULATE_UPGRADE; apt-get clean; rm -rf /var/lib/apt/lists/*" \
    >"$OUT/.v4.log" 2>&1 || die "emulating an upgrade in rootfs-v4 failed, see $OUT/.v4.log"
}

make_image() {
  local img=$1 kib bytes
  kib=$(du -sk --one-file-system "$OUT/rootfs-big" | cut -f1)
  # 15 % + 128 MiB for metadata and journal, rounded down to 64 MiB; never under 1 GiB.
  bytes=$(((kib * 1024 * 23 / 20 + (128 << 20)) / (64 << 20) * (64 << 20)))
  [ "$bytes" -ge "$IMAGE_MIN_BYTES" ] || bytes=$IMAGE_MIN_BYTES
  : >"$img"
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -F -t ext4 -b 4096 -m 0 -L ferry-bench \
    -U "$IMAGE_UUID" -E "root_owner=0:0,hash_seed=$IMAGE_UUID,lazy_itable_init=0" \
    -d "$OUT/rootfs-big" "$img" "$((bytes / 1024))k"
}

R="v$RECIPE_VERSION $SUITE"
build rootfs-v1 "$R minbase" make_v1
build rootfs-v2 "$R minbase +${V2_EXTRA[*]}" make_v2
build rootfs-v3 "$(stamp_of rootfs-v1) upgrade($UPGRADE_PREFERENCE)${FERRY_BENCH_EMULATE_UPGRADE:+ emulated}" \
  make_v3
build rootfs-v4 "$(stamp_of rootfs-v2) emulated-upgrade(tzdata)" make_v4
build rootfs-big "$(stamp_of rootfs-v2) +${BIG_EXTRA[*]}" make_big
build image-1g.ext4 "$(stamp_of rootfs-big) ext4/2 $IMAGE_UUID $SOURCE_DATE_EPOCH" make_image

printf '\n%-16s %10s %10s %12s\n' artefact size files built
for row in "${REPORT[@]}"; do
  name=${row%%|*}
  if [ -d "$OUT/$name" ]; then
    size=$(du -sh --one-file-system "$OUT/$name" | cut -f1)
    files=$(find "$OUT/$name" -xdev | wc -l)
  else
    size=$(du -h --apparent-size "$OUT/$name" | cut -f1)
    files=-
  fi
  printf '%-16s %10s %10s %12s\n' "$name" "$size" "$files" "${row#*|}"
done
echo "rootfs-v3 changes (- before, + after):"
sed 's/^</  -/; s/^>/  +/' "$OUT/rootfs-v3.changes"
echo "output: $OUT"
