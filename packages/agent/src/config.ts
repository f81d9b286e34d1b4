/**
 * The device configuration, `/etc/ferry/system.toml` (reference: docs/config.md). Read in four
 * steps: TOML parse, schema (config-schema.ts), normalise (defaults, paths joined with the
 * system root), rules (bootable slots, groups, overlaps). Every fault is CONFIG_INVALID with a
 * message naming the key.
 */
import { isAbsolute, join } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { FerryError, readBoundedFile, withContext } from '@ferry/core';
import { BOOTLOADER_NAMES, checkSchema, type RawConfig } from './config-schema.ts';
import { kexecCmdlineProblem } from './kexec-cmdline.ts';

export { BOOTLOADER_NAMES, CONFIG_KEYS, SLOT_NAME_RE } from './config-schema.ts';

/** The largest system.toml accepted: a device config is a few hundred bytes. */
export const MAX_CONFIG_BYTES = 64 * 1024;

/** One slot: a region of a block device or image file that holds one image. */
export interface SlotConfig {
  /** `<class>.<index>`, e.g. "rootfs.0". */
  name: string;
  /** "rootfs", "boot", "app" ...: matches manifest image names. */
  class: string;
  /** Absolute path of a block device or image file, already joined with the system root. */
  device: string;
  /** Byte offset inside the device; a multiple of 512; default 0. */
  offset: number;
  /** Byte size of the slot region; default: device size - offset. */
  size?: number;
  /** Set on slots the bootloader selects (e.g. "A"); unique. */
  bootname?: string;
  /** The bootable slot this one belongs with (e.g. boot.0 -> rootfs.0). */
  parent?: string;
  /** A readonly slot is never an install target. */
  readonly: boolean;
}

/** system.toml, normalised and checked. */
export interface SystemConfig {
  /** Where it was read from. */
  path: string;
  /** System root: '/' in production, a temp dir in tests; every path below is joined with it. */
  root: string;
  compatible: string;
  /** Backend name and its [bootloader.<backend>] options (checked by the backend itself). */
  bootloader: { backend: string; options: Record<string, unknown> };
  bootAttempts: number;
  /** How the agent reboots ([system] reboot-method): through the firmware, or with kexec. */
  rebootMethod: (typeof REBOOT_METHODS)[number];
  /** What a kexec reboot starts ([kexec]). */
  kexec: KexecConfig;
  dataDir: string;
  keyring: string;
  policy: { allowDowngrade: boolean; allowReinstall: boolean };
  health: { dir: string; timeoutSeconds: number };
  /** Where updates come from ([update]); `repository` is absent when none is configured. */
  update: UpdateConfig;
  /** The fleet server the device checks in with ([server]); absent when none is configured. */
  server?: ServerConfig;
  /** The update daemon's policies ([daemon]). */
  daemon: DaemonConfig;
  /** The deployment store ([deploy]). */
  deploy: DeployConfig;
  /** In file order. */
  slots: SlotConfig[];
}

/** [update]: the repository a device follows and the limits on every fetch from it. */
export interface UpdateConfig {
  /** Base URL of the repository (`metadata/`, `targets/`, `chunks/` below it). */
  repository?: string;
  /** The channel followed unless `ferry rebase` chose another (kept in the state). */
  channel: string;
  /** The repository's trusted root.json, shipped in the image. */
  trustedRoot: string;
  /** Parallel HTTP/1.1 keep-alive connections for chunk fetches. */
  parallel: number;
  /** Bytes per second over all connections; 0 = unlimited. */
  bandwidth: number;
  /** Seconds a request may take, headers and body together (slow retrieval). */
  timeoutSeconds: number;
  /** Bytes per second below which a transfer is abandoned (measured over 10 s windows); 0 = off. */
  minRate: number;
}

/** [server]: the fleet server, the device's own key and the director keys it trusts. */
export interface ServerConfig {
  /** Base URL of the fleet server (`/api/v1/device/...` below it). */
  url: string;
  /** The device's ed25519 private key (PEM); created on first use, mode 0600. */
  key: string;
  /** Enrolment token given at the first contact; without one an admin approves the device. */
  token?: string;
  /** Keyring of the director's public keys: assignments must carry a signature by one. */
  directorKeyring: string;
  /** Hardware id reported in the inventory. */
  hardwareId?: string;
}

export const REBOOT_METHODS = ['firmware', 'kexec'] as const;

/** [kexec]: the files a kexec reboot reads from the next slot's image, and its command line. */
export interface KexecConfig {
  /** The kernel, a path inside the slot's image. */
  kernel: string;
  /** The initramfs, a path inside the slot's image; '' for none. */
  initrd: string;
  /** The command line template: `{bootname}`, `{bootname-lower}`, `{slot}`, `{device}`. */
  cmdline: string;
  /** With reboot-method = "kexec": reboot through the firmware when kexec cannot start. */
  fallback: boolean;
}

export const DAEMON_INSTALL_POLICIES = ['auto', 'download-only', 'ask'] as const;
export const DAEMON_REBOOT_POLICIES = ['now', 'window', 'never'] as const;

/** [daemon]: when `ferry daemon` checks, and what it does with what it finds. */
export interface DaemonConfig {
  socket: string;
  intervalSeconds: number;
  jitterSeconds: number;
  install: (typeof DAEMON_INSTALL_POLICIES)[number];
  reboot: (typeof DAEMON_REBOOT_POLICIES)[number];
  /** Maintenance window, minutes after local midnight; `end < start` wraps past midnight. */
  window?: { start: number; end: number };
}

export const DEPLOY_CHECKOUT_MODES = ['hardlink', 'reflink', 'copy'] as const;
/** Who boots deployments: none (the store only), systemd-boot entries, or GRUB's menu fragment. */
export const DEPLOY_BOOT_BACKENDS = ['none', 'systemd-boot', 'grub'] as const;

/** [deploy]: where deployments are kept and how many (docs/deployments.md). */
export interface DeployConfig {
  /** The deployment store directory (objects, trees, checkouts, each deployment's /etc). */
  store: string;
  /** Deployments kept after an update besides pinned, default and booted ones. */
  keep: number;
  /** How checkouts place files. */
  checkout: (typeof DEPLOY_CHECKOUT_MODES)[number];
  /** Where each deployment's /etc merge conflicts are recorded (`<dir>/<deployment>/`). */
  etcConflicts: string;
  /** The boot side: entries, counting and the default (docs/deployments.md#boot). */
  boot: (typeof DEPLOY_BOOT_BACKENDS)[number];
  /** The mounted ESP / XBOOTLDR / boot partition that holds the entries and kernels. */
  bootDir: string;
  /** GRUB's environment block (grub backend). */
  grubEnv: string;
  /** `root=` on the kernel command line: the partition holding the store. */
  kernelRoot: string;
  /** More kernel arguments, space-separated. */
  kernelArgs: string[];
  /** Boot attempts a new deployment gets before the previous one boots again. */
  bootAttempts: number;
}

const BOOTNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

const invalid = (where: string, msg: string) => new FerryError('CONFIG_INVALID', `${where}${msg}`);

/** An absolute path without `..` segments, joined with the root. */
function rootPath(where: string, key: string, value: string, root: string): string {
  // `..` could climb out of the system root a test or image build passes in.
  if (!isAbsolute(value) || value.split('/').includes('..') || value.includes('\0'))
    throw invalid(where, `${key} must be an absolute path without '..', not '${value}'`);
  return join(root, value);
}

function intIn(
  where: string,
  key: string,
  v: number | undefined,
  def: number,
  min: number,
  max: number,
): number {
  const n = v ?? def;
  if (n < min || n > max) throw invalid(where, `${key} must be in ${min}..${max}, not ${n}`);
  return n;
}

function normaliseSlots(raw: RawConfig, root: string, where: string): SlotConfig[] {
  return raw.slots.map((s) => {
    const key = `[slot.${s.class}.${s.index}]`;
    if (s.device === undefined) throw invalid(where, `${key} device is required`);
    const offset = s.offset ?? 0;
    if (offset < 0 || offset % 512 !== 0)
      throw invalid(where, `${key} offset must be a non-negative multiple of 512, not ${offset}`);
    if (s.size !== undefined && s.size <= 0)
      throw invalid(where, `${key} size must be positive, not ${s.size}`);
    if (s.bootname !== undefined && !BOOTNAME_RE.test(s.bootname))
      throw invalid(where, `${key} bootname must match ${BOOTNAME_RE.source}, not '${s.bootname}'`);
    return {
      name: `${s.class}.${s.index}`,
      class: s.class,
      device: rootPath(where, `${key} device`, s.device, root),
      offset,
      ...(s.size !== undefined ? { size: s.size } : {}),
      ...(s.bootname !== undefined ? { bootname: s.bootname } : {}),
      ...(s.parent !== undefined ? { parent: s.parent } : {}),
      readonly: s.readonly ?? false,
    };
  });
}

function normalise(raw: RawConfig, root: string, path: string, where: string): SystemConfig {
  const { system: sys } = raw;
  if (sys.compatible === undefined || sys.compatible.trim() === '')
    throw invalid(where, '[system] compatible is required and must not be empty');
  if (sys.bootloader === undefined) throw invalid(where, '[system] bootloader is required');
  if (!(BOOTLOADER_NAMES as readonly string[]).includes(sys.bootloader))
    throw invalid(
      where,
      `[system] bootloader must be one of ${BOOTLOADER_NAMES.join(', ')}, not '${sys.bootloader}'`,
    );
  for (const name of Object.keys(raw.bootloader))
    if (name !== sys.bootloader)
      throw invalid(
        where,
        `[bootloader.${name}] given but [system] bootloader is '${sys.bootloader}'`,
      );
  const dataDir = rootPath(
    where,
    '[system] data-directory',
    sys['data-directory'] ?? '/var/lib/ferry',
    root,
  );
  return {
    path,
    root,
    compatible: sys.compatible,
    bootloader: { backend: sys.bootloader, options: { ...raw.bootloader[sys.bootloader] } },
    bootAttempts: intIn(where, '[system] boot-attempts', sys['boot-attempts'], 3, 1, 9),
    rebootMethod: oneOf(
      where,
      '[system] reboot-method',
      sys['reboot-method'] ?? 'firmware',
      REBOOT_METHODS,
    ),
    kexec: normaliseKexec(raw, where),
    dataDir,
    keyring: rootPath(where, '[keyring] path', raw.keyring.path ?? '/etc/ferry/keyring', root),
    policy: {
      allowDowngrade: raw.policy['allow-downgrade'] ?? false,
      allowReinstall: raw.policy['allow-reinstall'] ?? true,
    },
    health: {
      dir: rootPath(
        where,
        '[health] directory',
        raw.health.directory ?? '/etc/ferry/health.d',
        root,
      ),
      timeoutSeconds: intIn(where, '[health] timeout', raw.health.timeout, 60, 1, 86400),
    },
    update: normaliseUpdate(raw, root, where),
    ...normaliseServer(raw, root, dataDir, where),
    daemon: normaliseDaemon(raw, root, where),
    deploy: normaliseDeploy(raw, root, dataDir, where),
    slots: normaliseSlots(raw, root, where),
  };
}

const CHANNEL_RE = /^[a-z][a-z0-9-]{0,31}$/;

function normaliseUpdate(raw: RawConfig, root: string, where: string): UpdateConfig {
  const u = raw.update;
  if (u.repository !== undefined && !/^https?:\/\/[^\s]+$/.test(u.repository))
    throw invalid(where, `[update] repository must be an http(s) URL, not '${u.repository}'`);
  const channel = u.channel ?? 'stable';
  if (!CHANNEL_RE.test(channel))
    throw invalid(where, `[update] channel must match ${CHANNEL_RE.source}, not '${channel}'`);
  return {
    ...(u.repository !== undefined ? { repository: u.repository.replace(/\/+$/, '') } : {}),
    channel,
    trustedRoot: rootPath(
      where,
      '[update] trusted-root',
      u['trusted-root'] ?? '/etc/ferry/repository-root.json',
      root,
    ),
    parallel: intIn(where, '[update] parallel', u.parallel, 4, 1, 64),
    bandwidth: intIn(where, '[update] bandwidth', u.bandwidth, 0, 0, 1e12),
    timeoutSeconds: intIn(where, '[update] timeout', u.timeout, 60, 1, 86400),
    minRate: intIn(where, '[update] min-rate', u['min-rate'], 1024, 0, 1e12),
  };
}

function normaliseServer(
  raw: RawConfig,
  root: string,
  dataDir: string,
  where: string,
): { server?: ServerConfig } {
  const s = raw.server;
  if (s.url === undefined) {
    const set = Object.keys(s);
    if (set.length > 0) throw invalid(where, `[server] ${set[0]} needs [server] url`);
    return {};
  }
  if (!/^https?:\/\/[^\s]+$/.test(s.url))
    throw invalid(where, `[server] url must be an http(s) URL, not '${s.url}'`);
  if (s.token !== undefined && !/^[\x21-\x7e]{1,128}$/.test(s.token))
    throw invalid(where, '[server] token must be 1-128 printable characters without spaces');
  return {
    server: {
      url: s.url.replace(/\/+$/, ''),
      key: s.key ? rootPath(where, '[server] key', s.key, root) : join(dataDir, 'device.key'),
      ...(s.token !== undefined ? { token: s.token } : {}),
      directorKeyring: rootPath(
        where,
        '[server] director-keyring',
        s['director-keyring'] ?? '/etc/ferry/director-keyring',
        root,
      ),
      ...(s['hardware-id'] !== undefined ? { hardwareId: s['hardware-id'] } : {}),
    },
  };
}

function oneOf<T extends string>(where: string, key: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v))
    throw invalid(where, `${key} must be one of ${allowed.join(', ')}, not '${v}'`);
  return v as T;
}

function parseWindow(where: string, v: string): { start: number; end: number } {
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/.exec(v);
  if (!m) throw invalid(where, `[daemon] window must look like "02:00-04:30", not '${v}'`);
  const start = Number(m[1]) * 60 + Number(m[2]);
  const end = Number(m[3]) * 60 + Number(m[4]);
  if (start === end) throw invalid(where, `[daemon] window '${v}' is empty`);
  return { start, end };
}

function normaliseDeploy(
  raw: RawConfig,
  root: string,
  dataDir: string,
  where: string,
): DeployConfig {
  const d = raw.deploy;
  const path = (key: string, v: string | undefined, fallback: string) =>
    v === undefined ? fallback : rootPath(where, `[deploy] ${key}`, v, root);
  return {
    store: path('store', d.store, join(dataDir, 'deploy')),
    keep: intIn(where, '[deploy] keep', d.keep, 3, 1, 100),
    checkout: oneOf(where, '[deploy] checkout', d.checkout ?? 'hardlink', DEPLOY_CHECKOUT_MODES),
    etcConflicts: path('etc-conflicts', d['etc-conflicts'], join(dataDir, 'etc-conflicts')),
    ...deployBoot(d, root, where),
  };
}

function deployBoot(
  d: RawConfig['deploy'],
  root: string,
  where: string,
): Pick<
  DeployConfig,
  'boot' | 'bootDir' | 'grubEnv' | 'kernelRoot' | 'kernelArgs' | 'bootAttempts'
> {
  const boot = oneOf(where, '[deploy] boot', d.boot ?? 'none', DEPLOY_BOOT_BACKENDS);
  const path = (key: string, v: string) => rootPath(where, `[deploy] ${key}`, v, root);
  const bootDir = path('boot-dir', d['boot-dir'] ?? (boot === 'grub' ? '/boot' : '/efi'));
  const kernelRoot = d['kernel-root'] ?? 'PARTLABEL=data';
  if (!/^[!-~]+$/.test(kernelRoot) || /["'\\]/.test(kernelRoot))
    throw invalid(where, `[deploy] kernel-root must be one printable word, not '${kernelRoot}'`);
  return {
    boot,
    bootDir,
    grubEnv: d['grub-env'] ? path('grub-env', d['grub-env']) : join(bootDir, 'grub', 'grubenv'),
    kernelRoot,
    kernelArgs: (d['kernel-args'] ?? '').split(' ').filter((a) => a !== ''),
    bootAttempts: intIn(where, '[deploy] boot-attempts', d['boot-attempts'], 3, 1, 9),
  };
}

/** A path inside an image: absolute, no `..`, printable. */
function imagePath(where: string, key: string, v: string): string {
  if (!v.startsWith('/') || v.split('/').includes('..') || !/^[!-~]+$/.test(v))
    throw invalid(
      where,
      `${key} must be an absolute path inside the image without '..', not '${v}'`,
    );
  return v;
}

function normaliseKexec(raw: RawConfig, where: string): KexecConfig {
  const k = raw.kexec;
  const cmdline = k.cmdline ?? 'root={device} ro ferry.slot={bootname}';
  const problem = kexecCmdlineProblem(cmdline);
  if (problem) throw invalid(where, `[kexec] cmdline ${problem}`);
  return {
    kernel: imagePath(where, '[kexec] kernel', k.kernel ?? '/boot/vmlinuz'),
    initrd:
      k.initrd === '' ? '' : imagePath(where, '[kexec] initrd', k.initrd ?? '/boot/initrd.img'),
    cmdline,
    fallback: k.fallback ?? true,
  };
}

function normaliseDaemon(raw: RawConfig, root: string, where: string): DaemonConfig {
  const d = raw.daemon;
  const reboot = oneOf(where, '[daemon] reboot', d.reboot ?? 'now', DAEMON_REBOOT_POLICIES);
  if (reboot === 'window' && d.window === undefined)
    throw invalid(where, '[daemon] reboot = "window" needs [daemon] window');
  return {
    socket: rootPath(where, '[daemon] socket', d.socket ?? '/run/ferry/ferry.sock', root),
    intervalSeconds: intIn(where, '[daemon] interval', d.interval, 21600, 10, 31 * 86400),
    jitterSeconds: intIn(where, '[daemon] jitter', d.jitter, 1800, 0, 31 * 86400),
    install: oneOf(where, '[daemon] install', d.install ?? 'auto', DAEMON_INSTALL_POLICIES),
    reboot,
    ...(d.window !== undefined ? { window: parseWindow(where, d.window) } : {}),
  };
}

function checkParents(c: SystemConfig, where: string): void {
  const byName = new Map(c.slots.map((s) => [s.name, s]));
  for (const s of c.slots) {
    if (s.parent === undefined) continue;
    const key = `[slot.${s.name}] parent`;
    const parent = byName.get(s.parent);
    if (parent === undefined) throw invalid(where, `${key} '${s.parent}' is not a configured slot`);
    if (parent.bootname === undefined)
      throw invalid(where, `${key} '${s.parent}' is not bootable (has no bootname)`);
    if (s.bootname !== undefined)
      throw invalid(
        where,
        `[slot.${s.name}] has both bootname and parent: a child slot is booted with its parent`,
      );
  }
  for (const boot of bootableSlots(c)) {
    const classes = new Set<string>();
    for (const s of slotGroup(c, boot)) {
      if (classes.has(s.class))
        throw invalid(
          where,
          `[slot.${s.name}] parent: group of ${boot.name} already has a '${s.class}' slot`,
        );
      classes.add(s.class);
    }
  }
}

function checkOverlaps(c: SystemConfig, where: string): void {
  c.slots.forEach((a, i) => {
    for (const b of c.slots.slice(i + 1)) {
      if (a.device !== b.device) continue;
      const aEnd = a.offset + (a.size ?? Infinity);
      const bEnd = b.offset + (b.size ?? Infinity);
      if (a.offset < bEnd && b.offset < aEnd)
        throw invalid(
          where,
          `[slot.${b.name}] device/offset/size overlaps slot ${a.name} on ${a.device}`,
        );
    }
  });
}

function checkRules(c: SystemConfig, where: string): void {
  const bootable = bootableSlots(c);
  // A device that boots deployments only needs no slots: its versions live in the store.
  const deploymentsOnly = c.slots.length === 0 && c.deploy.boot !== 'none';
  // A/B needs somewhere to install that is not the running system.
  if (bootable.length < 2 && !deploymentsOnly)
    throw invalid(
      where,
      `[slot.*] bootname: at least 2 bootable slots are needed, found ${bootable.length}`,
    );
  const seen = new Set<string>();
  for (const s of bootable) {
    if (seen.has(s.bootname!))
      throw invalid(where, `[slot.${s.name}] bootname '${s.bootname}' is not unique`);
    seen.add(s.bootname!);
  }
  checkParents(c, where);
  checkOverlaps(c, where);
}

/**
 * Parses and checks system.toml text. Throws CONFIG_INVALID naming the key at fault; a TOML
 * syntax error carries the smol-toml TomlError (with `line` and `column`) as its cause.
 * @example
 * const c = parseConfig(await readFile(p, 'utf8'), { root: '/' });
 */
export function parseConfig(text: string, opts: { root: string; path?: string }): SystemConfig {
  const path = opts.path ?? join(opts.root, 'etc/ferry/system.toml');
  const where = `${path}: `;
  if (!isAbsolute(opts.root))
    throw invalid(where, `system root must be absolute, not '${opts.root}'`);
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES)
    throw invalid(where, `larger than ${MAX_CONFIG_BYTES} bytes`);
  let doc: Record<string, unknown>;
  try {
    doc = parse(text, { unsafeKeyBehaviour: 'throw' });
  } catch (e) {
    if (!(e instanceof TomlError)) throw withContext(path, e);
    const first = e.message.split('\n')[0] ?? 'invalid TOML';
    throw new FerryError('CONFIG_INVALID', `${path}:${e.line}:${e.column}: ${first}`, { cause: e });
  }
  const c = normalise(checkSchema(doc, where), opts.root, path, where);
  checkRules(c, where);
  return c;
}

/**
 * Reads the device configuration. `root` defaults to $FERRY_ROOT or '/'; `path` to
 * `<root>/etc/ferry/system.toml`. A missing or unreadable file is IO.
 * @example
 * const c = await loadConfig();                       // production
 * const t = await loadConfig({ root: '/tmp/fake' });  // tests
 */
export async function loadConfig(
  opts: { path?: string; root?: string } = {},
): Promise<SystemConfig> {
  const root = opts.root ?? process.env.FERRY_ROOT ?? '/';
  const path = opts.path ?? join(root, 'etc/ferry/system.toml');
  const { bytes } = await readBoundedFile(path, MAX_CONFIG_BYTES, 'CONFIG_INVALID');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new FerryError('CONFIG_INVALID', `${path}: not valid UTF-8`, { cause: e });
  }
  return parseConfig(text, { root, path });
}

/** The slots the bootloader selects (those with a bootname), in file order. */
export function bootableSlots(c: Pick<SystemConfig, 'slots'>): SlotConfig[] {
  return c.slots.filter((s) => s.bootname !== undefined);
}

/** A bootable slot plus every slot whose parent it is: what one release is installed into. */
export function slotGroup(c: Pick<SystemConfig, 'slots'>, bootSlot: SlotConfig): SlotConfig[] {
  return c.slots.filter((s) => s.name === bootSlot.name || s.parent === bootSlot.name);
}
