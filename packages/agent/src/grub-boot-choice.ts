/**
 * The boot script's decision, as a pure function over the GRUB environment: which slot GRUB
 * boots next and which variables it saves before booting it. contrib/grub/ferry-ab.cfg (scheme
 * "left") and RAUC's contrib/grub.conf (scheme "rauc") step for step. The `grub` backend uses it
 * to play GRUB's part when a boot bypasses GRUB (kexec), and its test checks it against the
 * script models of the conformance fixture.
 */
import type { GrubScheme } from './bootloader-grub.ts';

/** What the boot script does at one boot. */
export interface GrubBootChoice {
  /** The bootname the script boots; undefined when only its last resort is left. */
  bootname?: string;
  /** Variables `save_env` writes before the kernel starts (name -> new value). */
  saves: Record<string, string>;
  /** Attempts left for the chosen slot after this boot (scheme "left", slot on trial). */
  attemptsLeft?: number;
}

const words = (s: string) => s.split(/[ \t\n]+/).filter((w) => w !== '');

/**
 * One boot of the script over `vars` (the block's variables; the script's own defaults apply to
 * unset ones: ORDER = the configured bootnames, `<X>_OK` 1 for "left" and 0 for "rauc").
 *
 * @example
 * grubBootChoice({ ORDER: 'B A', B_OK: '1', B_LEFT: '3' }, ['A', 'B'], 'left');
 * // { bootname: 'B', saves: { B_LEFT: '2' }, attemptsLeft: 2 }
 */
export function grubBootChoice(
  vars: Readonly<Record<string, string>>,
  bootnames: readonly string[],
  scheme: GrubScheme,
): GrubBootChoice {
  const order = words(vars.ORDER ?? bootnames.join(' '));
  return scheme === 'left'
    ? chooseLeft(vars, bootnames, order)
    : chooseRauc(vars, bootnames, order);
}

/** ferry-ab.cfg: the first slot with X_OK=1 and X_LEFT unset (committed) or 1..9 (decremented). */
function chooseLeft(
  vars: Readonly<Record<string, string>>,
  bootnames: readonly string[],
  order: string[],
): GrubBootChoice {
  for (const b of order) {
    if (!bootnames.includes(b) || (vars[`${b}_OK`] ?? '1') !== '1') continue;
    const left = vars[`${b}_LEFT`] ?? '';
    if (left === '') return { bootname: b, saves: {} };
    if (/^[1-9]$/.test(left)) {
      const n = Number(left) - 1;
      return { bootname: b, saves: { [`${b}_LEFT`]: String(n) }, attemptsLeft: n };
    }
  }
  return { saves: {} };
}

/** RAUC's grub.conf: every slot it walks past gets X_TRY=1; the first with X_OK=1, X_TRY=0 boots. */
function chooseRauc(
  vars: Readonly<Record<string, string>>,
  bootnames: readonly string[],
  order: string[],
): GrubBootChoice {
  const saves: Record<string, string> = {};
  const num = (v: string | undefined) => Number.parseInt(v ?? '', 10) || 0;
  for (const b of order) {
    if (!bootnames.includes(b)) continue;
    const ok = num(vars[`${b}_OK`]);
    const tried = num(vars[`${b}_TRY`]);
    saves[`${b}_TRY`] = '1';
    if (ok === 1 && tried === 0) return { bootname: b, saves };
  }
  return { saves: {} };
}
