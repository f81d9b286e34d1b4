/**
 * The bootloader interface: every backend (grub, uboot, systemd-boot, barebox, efi, custom,
 * file) implements these five verbs, which are RAUC's custom-backend verbs, and passes the one
 * conformance suite in @ferry/testing. Backends are chosen through BOOTLOADERS (bootloaders.ts),
 * never through `if` chains.
 *
 * Semantics (shared by all backends):
 * - `setPrimary(b, n)`: the next boot tries slot `b` first, with `n` attempts; other slots keep
 *   their relative order behind it. The slot counts as good while it has attempts left.
 * - `setState(b, 'good')`: the slot is committed: it stays bootable with no counting (or with its
 *   attempts reset to the full count), and keeps its place in the order.
 * - `setState(b, 'bad')`: the slot is never tried again until it is made primary again.
 * - `getState(b)`: 'good' when the bootloader would still boot it, 'bad' otherwise, with the
 *   attempts left where the backend counts them.
 * - `getPrimary()`: the slot the next boot tries first among good slots, or undefined.
 * - `getCurrent()` (optional): what the bootloader itself says was booted this time.
 * - `nextBoot()` and `countBootAttempt(b)` (optional, together): the boot script's part of a boot
 *   that bypasses it (kexec). `nextBoot()` names the slot the script would boot next, changing
 *   nothing; `countBootAttempt(b)` changes the boot state exactly as the script does when it
 *   boots `b` (consumes one attempt) and resolves to a function that gives the attempt back.
 *   Backends without them cannot be kexec'd into (KEXEC_UNSUPPORTED).
 */
export type SlotBootState = 'good' | 'bad';

export interface BootState {
  state: SlotBootState;
  /** Boot attempts left, where the backend counts them; undefined for committed slots. */
  attemptsLeft?: number;
}

/** The slot the boot script would boot next, and its attempts left after that boot. */
export interface NextBoot {
  /** Undefined when the script has no bootable slot (only its last resort). */
  bootname?: string;
  /** Where the backend counts: attempts left once this boot is counted. */
  attemptsLeft?: number;
}

export interface Bootloader {
  /** Backend name, as in system.toml. */
  readonly name: string;
  getPrimary(): Promise<string | undefined>;
  setPrimary(bootname: string, attempts: number): Promise<void>;
  getState(bootname: string): Promise<BootState>;
  setState(bootname: string, state: SlotBootState): Promise<void>;
  getCurrent?(): Promise<string | undefined>;
  nextBoot?(): Promise<NextBoot>;
  countBootAttempt?(bootname: string): Promise<() => Promise<void>>;
  /**
   * Optional: puts what the bootloader needs outside the slot to boot it (systemd-boot: the
   * slot's kernel, initramfs and entry on the ESP), read from the slot's newly written and
   * verified image. The installer calls it before the switch, while the slot is still bad.
   */
  prepareSlot?(p: PrepareSlot): Promise<void>;
}

/** The newly written slot `prepareSlot` gets. */
export interface PrepareSlot {
  bootname: string;
  /** Where the image is: device, offset and (after the install) its exact size. */
  device: string;
  offset: number;
  imageSize: number;
  /** Filesystem type of the image, from the manifest (squashfs, erofs). */
  imageType: string;
  /** Release version, for the entry's title. */
  version: string;
}

/** What a backend factory gets: its own options table from system.toml and context. */
export interface BootloaderContext {
  /** Every path in the options is resolved against this root (tests use a temp dir). */
  root: string;
  /** Bootnames of the bootable slots, in configuration order (e.g. ['A', 'B']). */
  bootnames: string[];
  /** Backend options from [bootloader.<name>] in system.toml (already key-checked by the backend). */
  options: Record<string, unknown>;
  /** Default number of boot attempts for a new slot. */
  attempts: number;
}

export type BootloaderFactory = (ctx: BootloaderContext) => Bootloader;
