#!/bin/sh
# Example Ferry/RAUC custom bootloader backend. It keeps its own boot selection in a text file and
# also implements the boot side (`boot`), so it doubles as the conformance fixture of the custom
# backend. Copy it as the starting point for a real backend: replace read_state/write_state with
# your bootloader's storage and `boot` with what your bootloader does.
#
# Verbs (RAUC's, called as `example.sh <verb> [bootname] [good|bad]`):
#   get-primary            print the bootname the next boot tries first (empty: none)
#   set-primary <b>        try <b> first with $FERRY_BOOT_ATTEMPTS attempts
#   get-state <b>          print good|bad, and the attempts left while on trial ("good 2")
#   set-state <b> good|bad commit <b>, or never try it again
#   get-current            print the bootname booted this time
#   boot                   (fixture only) one boot as the bootloader would do it
#
# State file ($FERRY_ROOT/var/lib/ferry/custom-boot.state), one KEY=VALUE a line:
#   ORDER=A B      try order;  <b>=good | bad | <attempts left>;  CURRENT=<booted bootname>
set -eu

state="${FERRY_ROOT:-}/var/lib/ferry/custom-boot.state"
bootnames="${FERRY_BOOTNAMES:-A B}"

die() { echo "example.sh: $*" >&2; exit 1; }

check_name() {
	case "$1" in '' | *[!A-Za-z0-9_]*) die "invalid bootname '$1'" ;; esac
	for b in $bootnames; do [ "$b" = "$1" ] && return 0; done
	die "unknown bootname '$1'"
}

# Fresh state: the first bootname is primary, every slot committed.
read_state() {
	ORDER="$bootnames"
	CURRENT=""
	for b in $bootnames; do eval "S_$b=good"; done
	[ -f "$state" ] || return 0
	while IFS='=' read -r key value; do
		case "$key" in
		ORDER) ORDER="$value" ;;
		CURRENT) CURRENT="$value" ;;
		*) check_name "$key" && eval "S_$key=\$value" ;;
		esac
	done <"$state"
}

# Atomic: write a temp file beside the state, then rename(2) over it.
write_state() {
	mkdir -p "$(dirname "$state")"
	tmp="$state.tmp.$$"
	{
		echo "ORDER=$ORDER"
		echo "CURRENT=$CURRENT"
		for b in $bootnames; do eval "echo \"$b=\$S_$b\""; done
	} >"$tmp"
	sync "$tmp" 2>/dev/null || sync
	mv -f "$tmp" "$state"
}

slot() { eval "echo \"\$S_$1\""; }

# Bootable: committed, or on trial with attempts left.
bootable() {
	case "$(slot "$1")" in good) return 0 ;; bad | 0) return 1 ;; *) return 0 ;; esac
}

first_bootable() {
	for b in $ORDER; do
		if bootable "$b"; then echo "$b"; return 0; fi
	done
}

read_state
verb="${1:-}"
case "$verb" in
get-primary) first_bootable ;;
set-primary)
	check_name "${2:-}"
	attempts="${FERRY_BOOT_ATTEMPTS:-3}"
	case "$attempts" in '' | *[!0-9]*) die "FERRY_BOOT_ATTEMPTS is not a number" ;; esac
	rest=""
	for b in $ORDER; do [ "$b" = "$2" ] || rest="$rest $b"; done
	ORDER="$2$rest"
	eval "S_$2=$attempts"
	write_state
	;;
get-state)
	check_name "${2:-}"
	case "$(slot "$2")" in
	good) echo good ;;
	bad) echo bad ;;
	0) echo "bad 0" ;;
	*) echo "good $(slot "$2")" ;;
	esac
	;;
set-state)
	check_name "${2:-}"
	case "${3:-}" in good | bad) eval "S_$2=$3" ;; *) die "set-state needs good or bad" ;; esac
	write_state
	;;
get-current) echo "$CURRENT" ;;
boot)
	chosen="$(first_bootable)"
	[ -n "$chosen" ] || { CURRENT=""; write_state; exit 0; }
	case "$(slot "$chosen")" in good) ;; *) eval "S_$chosen=$(($(slot "$chosen") - 1))" ;; esac
	CURRENT="$chosen"
	write_state
	echo "$chosen"
	;;
*) die "unknown verb '$verb' (want get-primary, set-primary, get-state, set-state, get-current)" ;;
esac
