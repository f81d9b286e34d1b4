/**
 * The key table of system.toml and the schema step of reading it: which tables and keys exist
 * and what type each holds. Unknown keys anywhere outside [bootloader.<name>] are errors (as
 * RAUC refuses leftover keys), so a typo never silently falls back to a default. Defaults,
 * paths and cross-key rules are config.ts's job.
 */
import { FerryError } from '@ferry/core';

/** Bootloader backend names [system] bootloader accepts (backends are chosen by this name). */
export const BOOTLOADER_NAMES = [
  'grub',
  'uboot',
  'systemd-boot',
  'barebox',
  'efi',
  'custom',
  'file',
] as const;

export type BootloaderName = (typeof BOOTLOADER_NAMES)[number];

export type KeyType = 'string' | 'integer' | 'boolean';

/** Every fixed table of system.toml with its keys and their types; the docs follow this table. */
export const CONFIG_KEYS = {
  system: {
    compatible: 'string',
    bootloader: 'string',
    'boot-attempts': 'integer',
    'data-directory': 'string',
    'reboot-method': 'string',
  },
  keyring: { path: 'string' },
  policy: { 'allow-downgrade': 'boolean', 'allow-reinstall': 'boolean' },
  health: { directory: 'string', timeout: 'integer' },
  update: {
    repository: 'string',
    channel: 'string',
    'trusted-root': 'string',
    parallel: 'integer',
    bandwidth: 'integer',
    timeout: 'integer',
    'min-rate': 'integer',
  },
  server: {
    url: 'string',
    key: 'string',
    token: 'string',
    'director-keyring': 'string',
    'hardware-id': 'string',
  },
  daemon: {
    socket: 'string',
    interval: 'integer',
    jitter: 'integer',
    install: 'string',
    reboot: 'string',
    window: 'string',
  },
  deploy: {
    store: 'string',
    keep: 'integer',
    checkout: 'string',
    'etc-conflicts': 'string',
    boot: 'string',
    'boot-dir': 'string',
    'grub-env': 'string',
    'kernel-root': 'string',
    'kernel-args': 'string',
    'boot-attempts': 'integer',
  },
  kexec: { kernel: 'string', initrd: 'string', cmdline: 'string', fallback: 'boolean' },
  slot: {
    device: 'string',
    offset: 'integer',
    size: 'integer',
    bootname: 'string',
    parent: 'string',
    readonly: 'boolean',
  },
} as const satisfies Record<string, Record<string, KeyType>>;

/** A slot class: a manifest image name. */
export const SLOT_CLASS_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** A slot index: a decimal number without leading zeros. */
export const SLOT_INDEX_RE = /^(0|[1-9][0-9]{0,3})$/;
/** A slot name, `<class>.<index>`. */
export const SLOT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(0|[1-9][0-9]{0,3})$/;

type Values<T extends Record<string, KeyType>> = {
  [K in keyof T]?: T[K] extends 'string' ? string : T[K] extends 'integer' ? number : boolean;
};

/** system.toml after the schema step: every key has its type, nothing is defaulted yet. */
export interface RawConfig {
  system: Values<typeof CONFIG_KEYS.system>;
  keyring: Values<typeof CONFIG_KEYS.keyring>;
  policy: Values<typeof CONFIG_KEYS.policy>;
  health: Values<typeof CONFIG_KEYS.health>;
  update: Values<typeof CONFIG_KEYS.update>;
  server: Values<typeof CONFIG_KEYS.server>;
  daemon: Values<typeof CONFIG_KEYS.daemon>;
  deploy: Values<typeof CONFIG_KEYS.deploy>;
  kexec: Values<typeof CONFIG_KEYS.kexec>;
  bootloader: Record<string, Record<string, unknown>>;
  slots: (Values<typeof CONFIG_KEYS.slot> & { class: string; index: string })[];
}

const invalid = (where: string, msg: string) => new FerryError('CONFIG_INVALID', `${where}${msg}`);

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a float';
  return `a ${typeof v}`;
}

function checkType(v: unknown, type: KeyType): boolean {
  if (type === 'integer') return typeof v === 'number' && Number.isSafeInteger(v);
  return typeof v === type;
}

function checkTable<T extends Record<string, KeyType>>(
  where: string,
  table: string,
  value: unknown,
  keys: T,
): Values<T> {
  if (value === undefined) return {};
  if (!isTable(value)) throw invalid(where, `[${table}] must be a table, not ${typeName(value)}`);
  for (const [k, v] of Object.entries(value)) {
    const type = (keys as Record<string, KeyType>)[k];
    if (type === undefined) throw invalid(where, `[${table}]: unknown key '${k}'`);
    if (!checkType(v, type))
      throw invalid(
        where,
        `[${table}] ${k} must be ${type === 'integer' ? 'an' : 'a'} ${type}, not ${typeName(v)}`,
      );
  }
  return value as Values<T>;
}

function checkSlots(where: string, value: unknown): RawConfig['slots'] {
  if (value === undefined) return [];
  if (!isTable(value)) throw invalid(where, `[slot] must be a table, not ${typeName(value)}`);
  const slots: RawConfig['slots'] = [];
  for (const [cls, indexes] of Object.entries(value)) {
    if (!SLOT_CLASS_RE.test(cls))
      throw invalid(where, `[slot.${cls}]: slot class must match ${SLOT_CLASS_RE.source}`);
    if (!isTable(indexes))
      throw invalid(where, `[slot] ${cls} must be a table of slots like [slot.${cls}.0]`);
    for (const [index, slot] of Object.entries(indexes)) {
      if (!SLOT_INDEX_RE.test(index))
        throw invalid(where, `[slot.${cls}.${index}]: slot index must be a number 0..9999`);
      const name = `slot.${cls}.${index}`;
      if (!isTable(slot)) throw invalid(where, `[slot.${cls}] ${index} must be a table`);
      slots.push({ ...checkTable(where, name, slot, CONFIG_KEYS.slot), class: cls, index });
    }
  }
  return slots;
}

function checkBootloaders(where: string, value: unknown): RawConfig['bootloader'] {
  if (value === undefined) return {};
  if (!isTable(value)) throw invalid(where, `[bootloader] must be a table, not ${typeName(value)}`);
  for (const [name, options] of Object.entries(value))
    if (!isTable(options)) throw invalid(where, `[bootloader] ${name} must be a table`);
  return value as RawConfig['bootloader'];
}

/**
 * The schema step: checks tables, keys and types of a parsed TOML document.
 * `where` prefixes every message (the file path and ': ').
 */
export function checkSchema(doc: Record<string, unknown>, where = ''): RawConfig {
  const known = new Set([...Object.keys(CONFIG_KEYS), 'bootloader']);
  for (const k of Object.keys(doc))
    if (!known.has(k)) throw invalid(where, `unknown top-level key or table '${k}'`);
  return {
    system: checkTable(where, 'system', doc.system, CONFIG_KEYS.system),
    keyring: checkTable(where, 'keyring', doc.keyring, CONFIG_KEYS.keyring),
    policy: checkTable(where, 'policy', doc.policy, CONFIG_KEYS.policy),
    health: checkTable(where, 'health', doc.health, CONFIG_KEYS.health),
    update: checkTable(where, 'update', doc.update, CONFIG_KEYS.update),
    server: checkTable(where, 'server', doc.server, CONFIG_KEYS.server),
    daemon: checkTable(where, 'daemon', doc.daemon, CONFIG_KEYS.daemon),
    deploy: checkTable(where, 'deploy', doc.deploy, CONFIG_KEYS.deploy),
    kexec: checkTable(where, 'kexec', doc.kexec, CONFIG_KEYS.kexec),
    bootloader: checkBootloaders(where, doc.bootloader),
    slots: checkSlots(where, doc.slot),
  };
}
