/**
 * SemVer 2.0.0 parsing and precedence (https://semver.org/spec/v2.0.0.html), used for release
 * versions in manifests.
 */
import { FerryError } from './errors.ts';

/** Longest version string accepted: keeps untrusted input bounded. */
export const SEMVER_MAX_LENGTH = 256;

// The regular expression published with the SemVer 2.0.0 specification.
const SEMVER_RE =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** A parsed SemVer version. Numeric parts stay strings: they may exceed 2^53. */
export interface SemVer {
  major: string;
  minor: string;
  patch: string;
  prerelease: string[];
  build: string[];
}

/** True if `s` is a SemVer 2.0.0 version of at most {@link SEMVER_MAX_LENGTH} characters. */
export function isSemver(s: unknown): s is string {
  return typeof s === 'string' && s.length <= SEMVER_MAX_LENGTH && SEMVER_RE.test(s);
}

/**
 * Parses a SemVer 2.0.0 version; MANIFEST_SCHEMA if it is not one.
 *
 * @example
 * parseSemver('1.2.3-rc.1+build.5').prerelease; // ['rc', '1']
 */
export function parseSemver(s: string): SemVer {
  const m = typeof s === 'string' && s.length <= SEMVER_MAX_LENGTH ? SEMVER_RE.exec(s) : null;
  if (!m) throw new FerryError('MANIFEST_SCHEMA', `not a SemVer 2.0.0 version: ${String(s)}`);
  return {
    major: m[1]!,
    minor: m[2]!,
    patch: m[3]!,
    prerelease: m[4] === undefined ? [] : m[4].split('.'),
    build: m[5] === undefined ? [] : m[5].split('.'),
  };
}

/** Compares decimal strings without leading zeros numerically, at any length. */
function compareNumeric(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

const isNumeric = (id: string): boolean => /^\d+$/.test(id);

function compareIdentifier(a: string, b: string): number {
  const an = isNumeric(a);
  const bn = isNumeric(b);
  if (an && bn) return compareNumeric(a, b);
  if (an !== bn) return an ? -1 : 1; // numeric identifiers have lower precedence
  return a < b ? -1 : a > b ? 1 : 0; // ASCII order
}

function comparePrerelease(a: string[], b: string[]): number {
  // A version without pre-release fields ranks above one with them.
  if (a.length === 0 || b.length === 0) return Math.sign(b.length) - Math.sign(a.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareIdentifier(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return Math.sign(a.length - b.length);
}

/**
 * SemVer 2.0.0 precedence: negative if `a` < `b`, 0 if equal (build metadata is ignored),
 * positive if `a` > `b`. MANIFEST_SCHEMA if either is not a version.
 *
 * @example
 * compareSemver('1.0.0-alpha', '1.0.0') < 0; // true
 */
export function compareSemver(a: string, b: string): number {
  const x = parseSemver(a);
  const y = parseSemver(b);
  return (
    compareNumeric(x.major, y.major) ||
    compareNumeric(x.minor, y.minor) ||
    compareNumeric(x.patch, y.patch) ||
    comparePrerelease(x.prerelease, y.prerelease)
  );
}
