# Ferry A/B slot selection for U-Boot (boot script source).
# Compile: mkimage -A arm64 -T script -C none -n "Ferry A/B" -d ferry-boot.cmd boot.scr
#
# Reads the environment written by Ferry's `uboot` backend (RAUC's names plus BOOT_<X>_TRIAL):
#   BOOT_ORDER      bootnames, space-separated, primary first     (default: "A B")
#   BOOT_<X>_LEFT   attempts left, hexadecimal as setexpr writes  (default: 3)
#   BOOT_<X>_TRIAL  1 while X is on trial: only then is LEFT counted down
#
# The first slot in BOOT_ORDER with LEFT > 0 boots. A slot on trial has LEFT decremented and
# saved before it boots, so a slot that never reaches `ferry mark-good` runs out and the next
# slot in BOOT_ORDER boots. A committed slot (no TRIAL) is not counted, so nothing is written
# on an ordinary boot. If no slot is bootable, the first slot in BOOT_ORDER (or A) boots as a
# last resort, unchanged.
#
# The board provides ferry_boot_A and ferry_boot_B (load the slot's kernel and boot it) and
# may set ferry_bootargs, e.g.
#   setenv ferry_boot_A 'load mmc 0:2 ${kernel_addr_r} /boot/Image; booti ${kernel_addr_r} - ${fdtcontroladdr}'
#   setenv ferry_bootargs 'console=ttyS0,115200 root=PARTLABEL=rootfs-a ro'
#
# Keep the slot list (A, B), the defaults and the bootnames in system.toml identical. Ferry's
# conformance fixture (packages/agent/src/bootloader-uboot.test.ts) models this script step for
# step; change both together. ferry_slot and ferry_save are hush-local: saveenv does not store
# them.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

ferry_slot=
ferry_save=
for BOOT_SLOT in "${BOOT_ORDER}"; do
  if test -z "${ferry_slot}" && test "x${BOOT_SLOT}" = "xA" && test 0x${BOOT_A_LEFT} -gt 0; then
    ferry_slot=A
    if test "x${BOOT_A_TRIAL}" = "x1"; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      ferry_save=1
    fi
    echo "ferry: booting slot A (${BOOT_A_LEFT} attempts left, trial=${BOOT_A_TRIAL})"
  fi
  if test -z "${ferry_slot}" && test "x${BOOT_SLOT}" = "xB" && test 0x${BOOT_B_LEFT} -gt 0; then
    ferry_slot=B
    if test "x${BOOT_B_TRIAL}" = "x1"; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      ferry_save=1
    fi
    echo "ferry: booting slot B (${BOOT_B_LEFT} attempts left, trial=${BOOT_B_TRIAL})"
  fi
done

if test -n "${ferry_save}"; then
  saveenv
fi

if test -z "${ferry_slot}"; then
  echo "ferry: no bootable slot (BOOT_ORDER=${BOOT_ORDER} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT})"
  echo "ferry: booting the first slot in BOOT_ORDER as a last resort"
  for BOOT_SLOT in "${BOOT_ORDER}"; do
    if test -z "${ferry_slot}"; then
      ferry_slot=${BOOT_SLOT}
    fi
  done
  if test -z "${ferry_slot}"; then
    ferry_slot=A
  fi
fi

setenv bootargs "${ferry_bootargs} ferry.slot=${ferry_slot}"
run ferry_boot_${ferry_slot}
echo "ferry: ferry_boot_${ferry_slot} returned; slot ${ferry_slot} did not boot"
