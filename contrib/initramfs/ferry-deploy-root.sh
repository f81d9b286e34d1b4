#!/bin/sh
# ferry-deploy-root: make a Ferry deployment the root filesystem (docs/deployments.md, "Boot").
#
# Kernel command line (written by Ferry's boot entries):
#   ferry.deployment=<id>   the deployment to boot, <n>-<12 hex>; without it this script does nothing
#   root=<dev>              the data partition (Debian's "local" script mounts it at $rootmnt), or
#   ferry.data=<dev>        the data partition, when root= is something else
#   ferry.store=<path>      the store on the data partition (default var/lib/ferry/deploy)
#
# Result, in the new root:
#   /     <data>/<store>/deployments/<id>, bound read-only
#   /etc  <data>/<store>/etc/<id>, read-write (the deployment's merged /etc)
#   /var  <data>/var, read-write (so the store is /var/lib/ferry/deploy in the running system)
#
# Two ways to run it:
#   Debian initramfs-tools: install as /etc/initramfs-tools/scripts/local-bottom/ferry-deploy-root,
#     then update-initramfs -u. A failure calls initramfs-tools' panic (a shell, or a reboot with
#     panic=<seconds> on the command line, which burns one boot attempt).
#   Standalone: ferry-deploy-root.sh [--cmdline TEXT] [--data DIR] --newroot DIR
#     --data is the data partition, already mounted; without it ferry.data= is mounted.
# Any refusal prints one line starting "ferry-deploy-root:" and exits non-zero.
# POSIX sh; works with busybox (sh, mount) and util-linux.
# shellcheck disable=SC1091,SC2015 # A && B || fail: fail exits, so it is the else branch.

PREREQ=""
case "$1" in
prereqs)
    echo "$PREREQ"
    exit 0
    ;;
esac

standalone=""
cmdline=""
data=""
newroot=""
while [ $# -gt 0 ]; do
    case "$1" in
    --cmdline) cmdline="$2"; standalone=1; shift 2 ;;
    --data) data="$2"; standalone=1; shift 2 ;;
    --newroot) newroot="$2"; standalone=1; shift 2 ;;
    *) echo "ferry-deploy-root: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

if [ -z "$standalone" ] && [ -r /scripts/functions ]; then
    . /scripts/functions
fi

fail() {
    echo "ferry-deploy-root: $*" >&2
    if [ -z "$standalone" ] && command -v panic >/dev/null 2>&1; then
        panic "ferry-deploy-root: $*"
    fi
    exit 1
}

[ -n "$standalone" ] || newroot="${rootmnt:-/root}"
[ -n "$newroot" ] || fail "--newroot is required"
[ -n "$cmdline" ] || cmdline="$(cat /proc/cmdline)"

id=""
datadev=""
store="var/lib/ferry/deploy"
set -f
for arg in $cmdline; do
    case "$arg" in
    ferry.deployment=*) id="${arg#ferry.deployment=}" ;;
    ferry.data=*) datadev="${arg#ferry.data=}" ;;
    ferry.store=*) store="${arg#ferry.store=}" ;;
    esac
done
set +f

if [ -z "$id" ]; then
    [ -z "$standalone" ] && exit 0
    fail "no ferry.deployment= on the kernel command line"
fi

# The id names a directory: refuse anything but <1-15 digits>-<12 lowercase hex> (path traversal).
num="${id%%-*}"
hex="${id#*-}"
case "$num" in '' | *[!0-9]*) fail "malformed ferry.deployment=$id" ;; esac
case "$hex" in *[!0-9a-f]*) fail "malformed ferry.deployment=$id" ;; esac
if [ "$num-$hex" != "$id" ] || [ ${#num} -gt 15 ] || [ ${#hex} -ne 12 ]; then
    fail "malformed ferry.deployment=$id"
fi
case "/$store/" in
*/../* | */./* | //*) fail "malformed ferry.store=$store" ;;
esac
case "$store" in *[!A-Za-z0-9._/-]*) fail "malformed ferry.store=$store" ;; esac

resolve() {
    if command -v resolve_device >/dev/null 2>&1; then
        resolve_device "$1" && echo "$DEV" && return 0
    fi
    case "$1" in
    /dev/*) echo "$1" ;;
    PARTLABEL=*) echo "/dev/disk/by-partlabel/${1#PARTLABEL=}" ;;
    PARTUUID=*) echo "/dev/disk/by-partuuid/${1#PARTUUID=}" ;;
    UUID=* | LABEL=*) findfs "$1" 2>/dev/null || blkid -l -o device -t "$1" 2>/dev/null ;;
    *) return 1 ;;
    esac
}

# Where the data partition is now, and whether it must first be moved off $rootmnt.
move=""
if [ -n "$data" ]; then
    :
elif [ -n "$datadev" ]; then
    dev="$(resolve "$datadev")" || fail "cannot resolve ferry.data=$datadev"
    if [ -n "$standalone" ]; then data="$(mktemp -d)"; else data=/ferry-data; fi
    mkdir -p "$data" && mount -o rw "$dev" "$data" || fail "cannot mount ferry.data=$datadev ($dev)"
elif [ -z "$standalone" ]; then
    data="$newroot"
    move=1
else
    fail "neither --data nor ferry.data= names the data partition"
fi

dep="$data/$store/deployments/$id"
etc="$data/$store/etc/$id"
[ -d "$dep" ] && [ ! -L "$dep" ] || fail "deployment $id not found in $data/$store/deployments"
[ -d "$etc" ] && [ ! -L "$etc" ] || fail "deployment $id has no /etc in $data/$store/etc"
for d in etc var; do
    [ -d "$dep/$d" ] && [ ! -L "$dep/$d" ] || fail "deployment $id has no /$d directory to mount on"
done

if [ -n "$move" ]; then
    mkdir -p /ferry-data && mount -o move "$newroot" /ferry-data || fail "cannot move $newroot"
    mount -o remount,rw /ferry-data || fail "cannot remount the data partition read-write"
    data=/ferry-data
    dep="$data/$store/deployments/$id"
    etc="$data/$store/etc/$id"
fi
mkdir -p "$data/var" || fail "cannot create var on the data partition"

# Root read-only: checkouts are hardlinks into the object store, a write would change every
# deployment sharing the file.
mount -o bind "$dep" "$newroot" || fail "cannot bind $dep"
mount -o remount,bind,ro "$newroot" || fail "cannot make $newroot read-only"
mount -o bind "$etc" "$newroot/etc" || fail "cannot bind $etc on /etc"
mount -o bind "$data/var" "$newroot/var" || fail "cannot bind $data/var on /var"
echo "ferry-deploy-root: booting deployment $id" >&2
exit 0
