/**
 * Ed25519 signing keys in PEM form (PKCS#8 private, SPKI public) and their key ids.
 * Key handling is described in docs/keys.md, key ids in docs/formats/signatures.md.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { link, lstat, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FerryError, withContext, type ErrorCode } from './errors.ts';

/** A private signing key with the id of its public half. */
export interface PrivateKey {
  keyId: string;
  key: KeyObject;
}

/** A trusted public key. */
export interface PublicKey {
  keyId: string;
  key: KeyObject;
}

/** Largest key file read: a PEM ed25519 key is about 120 bytes. */
export const KEY_FILE_MAX_BYTES = 16 * 1024;

// One PEM block and nothing else: no explanatory text, no second block. Stops a private key
// passed as a public one (Node would derive the public half) and certificates.
const pemRe = (label: string): RegExp =>
  new RegExp(`^-----BEGIN ${label}-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END ${label}-----$`);
const PRIVATE_PEM_RE = pemRe('PRIVATE KEY');
const PUBLIC_PEM_RE = pemRe('PUBLIC KEY');

/**
 * Key id: lowercase hex SHA-256 of the raw 32-byte ed25519 public key (a private key gives the
 * id of its public half). KEY_INVALID for any other kind of key.
 *
 * @example
 * keyIdOf(createPublicKey(pem)); // '3b6a27bc...' (64 hex digits)
 */
export function keyIdOf(publicKey: KeyObject): string {
  if (publicKey.asymmetricKeyType !== 'ed25519')
    throw new FerryError('KEY_INVALID', `not an ed25519 key: ${publicKey.asymmetricKeyType}`);
  const pub = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  const { x } = pub.export({ format: 'jwk' });
  const raw = Buffer.from(x ?? '', 'base64url');
  if (raw.length !== 32) throw new FerryError('KEY_INVALID', 'ed25519 public key is not 32 bytes');
  return createHash('sha256').update(raw).digest('hex');
}

/**
 * Generates an ed25519 key pair as PEM text.
 *
 * @example
 * const { keyId, privateKeyPem, publicKeyPem } = generateKeyPair();
 */
export function generateKeyPair(): { keyId: string; privateKeyPem: string; publicKeyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    keyId: keyIdOf(publicKey),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

function pemText(pem: string | Buffer, re: RegExp, what: string): string {
  const text = (typeof pem === 'string' ? pem : pem.toString('utf8')).trim();
  if (text.length > KEY_FILE_MAX_BYTES || !re.test(text))
    throw new FerryError('KEY_INVALID', `not a single ${what} PEM block`);
  return text;
}

function requireEd25519(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'ed25519')
    throw new FerryError('KEY_INVALID', `key type ${key.asymmetricKeyType} is not ed25519`);
}

/**
 * Parses an unencrypted ed25519 PKCS#8 PEM private key; KEY_INVALID for anything else.
 *
 * @example
 * const key = parsePrivateKey(await readFile('release.key'));
 */
export function parsePrivateKey(pem: string | Buffer): PrivateKey {
  const text = pemText(pem, PRIVATE_PEM_RE, 'PRIVATE KEY');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch (e) {
    throw new FerryError('KEY_INVALID', 'unreadable PKCS#8 private key', { cause: e });
  }
  requireEd25519(key);
  return { keyId: keyIdOf(key), key };
}

/**
 * Parses an ed25519 SPKI PEM public key; KEY_INVALID for anything else (including a private key).
 *
 * @example
 * const { keyId } = parsePublicKey(await readFile('release.pub'));
 */
export function parsePublicKey(pem: string | Buffer): PublicKey {
  const text = pemText(pem, PUBLIC_PEM_RE, 'PUBLIC KEY');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: 'pem', type: 'spki' });
  } catch (e) {
    throw new FerryError('KEY_INVALID', 'unreadable SPKI public key', { cause: e });
  }
  requireEd25519(key);
  return { keyId: keyIdOf(key), key };
}

/**
 * Reads a regular file of at most `maxBytes`; `code` for a non-file or an oversized one, IO
 * for system errors. Returns the bytes and the file mode.
 */
export async function readBoundedFile(
  path: string,
  maxBytes: number,
  code: ErrorCode,
): Promise<{ bytes: Buffer; mode: number }> {
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new FerryError(code, 'not a regular file');
      if (st.size > maxBytes) throw new FerryError(code, `larger than ${maxBytes} bytes`);
      const buf = Buffer.alloc(maxBytes + 1);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead > maxBytes) throw new FerryError(code, `larger than ${maxBytes} bytes`);
      return { bytes: buf.subarray(0, bytesRead), mode: st.mode };
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw withContext(`reading ${path}`, e);
  }
}

/**
 * Loads a private key file. Like OpenSSH, refuses (KEY_PERMISSIONS) a file that group or others
 * may read or write, unless `allowInsecurePermissions` is set; KEY_INVALID if it is not an
 * ed25519 PKCS#8 PEM key; IO if it cannot be read.
 *
 * @example
 * const key = await loadPrivateKey('/etc/ferry/release.key');
 */
export async function loadPrivateKey(
  path: string,
  options: { allowInsecurePermissions?: boolean } = {},
): Promise<PrivateKey> {
  const { bytes, mode } = await readBoundedFile(path, KEY_FILE_MAX_BYTES, 'KEY_INVALID');
  if ((mode & 0o077) !== 0 && !options.allowInsecurePermissions)
    throw new FerryError(
      'KEY_PERMISSIONS',
      `${path}: mode ${(mode & 0o777).toString(8)} lets group or others access the key (chmod 600)`,
    );
  try {
    return parsePrivateKey(bytes);
  } catch (e) {
    throw withContext(path, e);
  }
}

/** Creates `path` with `data`, all or nothing, and never replaces an existing file. */
async function writeNewFile(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path); // link(2) fails with EEXIST instead of replacing: no clobbering race
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST')
      throw new FerryError('KEY_EXISTS', `${path} exists: refusing to overwrite it`, { cause: e });
    throw e;
  } finally {
    await rm(tmp, { force: true });
  }
  const dir = await open(dirname(path), 'r');
  await dir.sync().finally(() => dir.close());
}

async function refuseExisting(path: string): Promise<void> {
  const exists = await lstat(path).then(
    () => true,
    () => false,
  );
  if (exists) throw new FerryError('KEY_EXISTS', `${path} exists: refusing to overwrite it`);
}

/**
 * Generates a key pair and writes PREFIX.key (PKCS#8, mode 0600) and PREFIX.pub (SPKI). Each is
 * written atomically; KEY_EXISTS if either exists already (nothing is overwritten), IO on write errors.
 *
 * @example
 * const { keyId, privatePath } = await writeKeyPair('keys/release-2026');
 */
export async function writeKeyPair(
  prefix: string,
): Promise<{ keyId: string; privatePath: string; publicPath: string }> {
  const privatePath = `${prefix}.key`;
  const publicPath = `${prefix}.pub`;
  await refuseExisting(privatePath);
  await refuseExisting(publicPath);
  const { keyId, privateKeyPem, publicKeyPem } = generateKeyPair();
  try {
    await writeNewFile(privatePath, privateKeyPem, 0o600);
  } catch (e) {
    throw withContext(`writing ${privatePath}`, e);
  }
  try {
    await writeNewFile(publicPath, publicKeyPem, 0o644);
  } catch (e) {
    await rm(privatePath, { force: true }); // a private key without its public half is useless
    throw withContext(`writing ${publicPath}`, e);
  }
  return { keyId, privatePath, publicPath };
}
