/**
 * Typed errors with stable codes. Codes are API: documented in docs/errors.md,
 * never renamed; tests assert on `code`, never on message text.
 *
 * @example
 * try { await verifyBundle(path, keyring); }
 * catch (e) { if (isFerryError(e, 'BUNDLE_TRUNCATED')) retryDownload(); else throw e; }
 */

/** Every stable error code with a one-line description, the single list the docs are checked against. */
export const ERROR_CODES = {
  // Usage and environment
  USAGE: 'a command was called with wrong or missing arguments',
  INTERNAL: 'a bug in Ferry: please report it',
  IO: 'a file could not be read or written',
  TOOL_MISSING: 'a required external tool (mksquashfs, mkfs.erofs, ...) is not installed',
  TOOL_FAILED: 'an external tool exited with an error',
  // Canonical JSON and manifests
  JSON_MALFORMED: 'input is not valid JSON',
  JSON_NOT_CANONICAL: 'JSON that must be canonical (RFC 8785) is not',
  MANIFEST_TOO_LARGE: 'a manifest is larger than the size limit',
  MANIFEST_TOO_DEEP: 'a manifest nests deeper than the depth limit',
  MANIFEST_SCHEMA: 'a manifest does not match its schema',
  MANIFEST_FORMAT_VERSION: 'a manifest has a format version this Ferry does not know',
  // Keys and signatures
  KEY_INVALID: 'a key file is not an ed25519 key in PEM form',
  KEY_EXISTS: 'a key file already exists; Ferry never overwrites keys',
  KEY_PERMISSIONS: 'a private key file is accessible to group or others',
  KEYRING_INVALID: 'a keyring file or directory is malformed',
  BUNDLE_UNSIGNED: 'a bundle carries no signature',
  BUNDLE_UNKNOWN_SIGNER: 'no signature is from a key in the keyring',
  BUNDLE_SIGNATURE_INVALID: 'a signature from a trusted key does not verify',
  BUNDLE_SIGNATURE_THRESHOLD:
    'fewer valid signatures from distinct trusted keys than the threshold',
  // Bundle container
  BUNDLE_MAGIC: 'the file is not a Ferry bundle',
  BUNDLE_FORMAT_VERSION: 'the bundle has a format version this Ferry does not know',
  BUNDLE_HEADER_INVALID: 'the bundle header has invalid or inconsistent fields',
  BUNDLE_TRUNCATED: 'the bundle is shorter than its header declares',
  BUNDLE_TRAILING_DATA: 'the bundle has bytes after its declared end',
  BUNDLE_LAYOUT:
    'the bundle payload table is inconsistent (overlap, gap, pointer past the payload)',
  // Chunks and images
  CHUNK_INDEX_INVALID: 'a chunk index is malformed',
  CHUNK_INDEX_FORMAT_VERSION: 'a chunk index has a format version this Ferry does not know',
  CHUNK_INDEX_MISMATCH: 'a chunk index does not match the digest the manifest signs',
  CHUNK_HASH_MISMATCH: 'a chunk does not hash to its id',
  CHUNK_MISSING: 'a chunk is not in the store or bundle',
  CHUNK_CORRUPT: 'a stored chunk cannot be decompressed',
  IMAGE_HASH_MISMATCH: 'an image does not hash to the SHA-256 the manifest signs',
  IMAGE_SIZE_MISMATCH: 'an image does not have the size the manifest signs',
  VERITY_MISMATCH: 'the dm-verity root hash of an image differs from the signed one',
  VERITY_PARAMS_INVALID: 'dm-verity input is out of range (empty image, salt over 256 bytes)',
  DELTA_INVALID: 'a chunk delta or delta pack is malformed, oversized or does not decode',
  DELTA_BASE_MISSING: 'a delta names a base chunk the device does not hold',
  DELTA_UNEXPECTED_CHUNK: 'a delta produces a chunk the signed target index does not list',
  // Tree listings (packages/core/src/tree.ts)
  TREE_INVALID:
    'a tree listing is malformed, or a scanned tree holds an entry no listing can describe',
  TREE_NOT_CANONICAL: 'a tree listing is not the one canonical encoding of its tree',
  TREE_TOO_LARGE: 'a tree listing or scanned tree exceeds the entry, line or size limit',
  // Deployment store (packages/agent/src/deploy-*.ts)
  DEPLOY_STATE_INVALID: 'the deployment store state (deployments.json) is unreadable or malformed',
  DEPLOY_NOT_FOUND: 'no deployment with that id is in the store',
  DEPLOY_IN_USE: 'the deployment is the default or the booted one and cannot be removed',
  DEPLOY_OBJECT_MISMATCH: 'a fetched file object does not hash to its id or has the wrong size',
  DEPLOY_OBJECT_MISSING: 'a file object a tree needs is not in the deployment store',
  DEPLOY_TREE_MISMATCH: 'a checked-out deployment differs from the tree digest recorded for it',
  DEPLOY_NO_SPACE: 'the deployment store filesystem lacks the space or inodes a new tree needs',
  DEPLOY_REFLINK_UNSUPPORTED: 'reflink checkout was asked for on a filesystem without reflinks',
  DEPLOY_TREE_UNSIGNED:
    'the release manifest signs no tree for the image to deploy (no tree field)',
  DEPLOY_ETC_MISSING:
    'a deployment tree has no etc directory, or a deployment has no /etc of its own',
  DEPLOY_NO_KERNEL:
    'a deployment holds no kernel with an initramfs (boot/vmlinuz-*, usr/lib/modules/*/vmlinuz)',
  DEPLOY_BOOT_ENTRY_MISSING:
    'no boot entry (loader/entries/ferry-<id>*.conf) exists for the deployment',
  DEPLOY_BOOT_ENTRY_INVALID: 'a deployment boot entry or kernel argument is malformed or ambiguous',
  // Device configuration, state and bootloaders
  CONFIG_INVALID:
    'the device configuration (system.toml) is malformed, has unknown keys or breaks a rule',
  STATE_INVALID: 'the device state file is unreadable or malformed',
  BOOTLOADER_SLOT_UNKNOWN: 'a bootname is not one of the configured bootable slots',
  BOOTLOADER_STATE_INVALID: 'the bootloader environment or state is corrupt or inconsistent',
  BOOTLOADER_FAILED:
    'a bootloader tool (grub-editenv, fw_setenv, efibootmgr, custom backend, ...) failed',
  // Installing
  BUNDLE_INCOMPATIBLE: "the bundle's compatible string is not this device's",
  BUNDLE_DOWNGRADE:
    'the bundle has a lower release counter than this device has installed (rollback attack)',
  BUNDLE_REINSTALL: 'the bundle is the release already installed and the policy refuses reinstalls',
  BOOTED_SLOT_UNKNOWN: 'the booted slot cannot be determined (kernel command line, root device)',
  INSTALL_NO_TARGET: 'no inactive slot can take an image of the bundle',
  INSTALL_TARGET_BOOTED:
    'the install target is the booted slot (refused whatever the configuration says)',
  INSTALL_SLOT_MISSING: 'a target slot device does not exist',
  INSTALL_SLOT_TOO_SMALL: 'an image (with its verity tree) does not fit its target slot',
  INSTALL_VERIFY_FAILED: 'the slot read back after writing does not match the signed image',
  INSTALL_BOOT_FILES:
    'the kernel or initramfs the bootloader needs outside the slot cannot be read from the new image',
  HEALTH_CHECK_FAILED: 'a health check failed or timed out',
  ROLLBACK_NO_TARGET: 'there is no other good, installed slot to roll back to',
  // TUF client (packages/agent/src/tuf-client.ts maps tuf-js errors to these)
  TUF_ROOT_MISSING: 'the TUF metadata directory holds no readable trusted root.json',
  TUF_METADATA_INVALID: 'TUF metadata is malformed, of the wrong type or inconsistent',
  TUF_UNSIGNED: 'TUF metadata lacks a threshold of valid signatures from trusted keys',
  TUF_ROLLBACK: 'TUF metadata has a lower or unexpected version (rollback attack)',
  TUF_EXPIRED: 'TUF metadata has expired (freeze attack)',
  TUF_HASH_MISMATCH: 'a TUF file does not match its signed length and hashes (mix-and-match)',
  TUF_TOO_LARGE: 'a TUF download ran past its signed length or size limit (endless data)',
  TUF_TIMEOUT: 'a TUF download did not finish within the fetch timeout (slow retrieval)',
  TUF_DOWNLOAD_FAILED: 'a TUF repository file could not be fetched (HTTP error, network)',
  TUF_TARGET_NOT_FOUND: 'no trusted TUF targets metadata lists the requested target',
  // Fetching chunks (packages/agent/src/http-fetch.ts)
  FETCH_FAILED: 'a chunk could not be fetched (network error or HTTP status other than 200/206)',
  FETCH_TOO_LARGE: 'a server sent more bytes than the chunk can hold (endless data)',
  FETCH_TIMEOUT: 'a fetch did not finish within the per-request timeout (slow retrieval)',
  FETCH_TOO_SLOW: 'a fetch fell below the minimum transfer rate (slow retrieval)',
  // Updating from a repository (packages/agent/src/update.ts)
  UPDATE_NOT_CONFIGURED: 'no update repository is configured ([update] repository)',
  UPDATE_INDEX_INVALID: 'the channel index of the repository is malformed',
  UPDATE_NO_RELEASE: "the channel has no release for this device's compatible",
  UPDATE_NOTHING_STAGED: 'there is no staged update to activate',
  // Update repository (packages/repo)
  REPO_INVALID: 'a repository is malformed, or its metadata fails a signature or version check',
  REPO_EXISTS: 'a repository already exists in the directory',
  REPO_LOCKED: 'another process holds the repository lock (or a stale lock file is left)',
  REPO_SIGNING_KEYS: 'the keys given do not reach the signature threshold of a role to sign',
  REPO_METADATA_EXPIRED: 'repository metadata has expired (freeze attack, or a missed refresh)',
  REPO_METADATA_TOO_LARGE: 'a metadata file would exceed the size limit TUF clients apply',
  REPO_TARGET_MISMATCH: 'a target file is missing or differs from the length and hashes signed',
  REPO_RELEASE_EXISTS: 'another release is already published under this compatible and version',
  REPO_RELEASE_COUNTER: 'a release counter is not above those of the compatible in the channel',
  REPO_RELEASE_NOT_FOUND: 'the channel has no release of that compatible and version',
  REPO_TREE_MISMATCH: 'a tree source directory does not scan to the tree digest the manifest signs',
  REPO_OBJECT_MISSING:
    'a file object or tree listing a published release needs is not in the repository',
  REPO_OBJECT_CORRUPT:
    'a stored file object or tree listing does not decompress or hash to its name',
  // Update daemon (packages/agent/src/daemon*.ts)
  DAEMON_BUSY: 'the update daemon is already running an operation; retry when it has finished',
  DAEMON_STOPPING: 'the update daemon is shutting down and takes no new operations',
  DAEMON_UNAVAILABLE: 'the update daemon socket exists but does not answer or refuses access',
  DAEMON_ALREADY_RUNNING: 'another update daemon already listens on the configured socket',
  DAEMON_REQUEST_INVALID: 'a daemon API request body is malformed, oversized or has invalid fields',
  DAEMON_ROUTE_UNKNOWN: 'no daemon API route matches the request method and path',
  DAEMON_RESPONSE_INVALID: 'the daemon API answered with a malformed or oversized response',
  // Image building
  IMAGE_INPUT_INVALID:
    'the input to an image build is not a directory, tarball or OCI image Ferry can read',
  IMAGE_PATH_TRAVERSAL:
    'an input archive holds a path that escapes the root (../, absolute, or through a symlink)',
  // /etc merge for deployments (packages/agent/src/etc-merge.ts, passwd-merge.ts)
  ETC_INPUT_INVALID: 'an /etc tree to merge is not a directory or holds a name that is not UTF-8',
  ETC_TOO_LARGE: 'an /etc tree has more entries, depth or bytes than the merge accepts',
  ETC_OUT_NOT_EMPTY: 'the output or conflict directory of an /etc merge exists and is not empty',
  ETC_TREE_CHANGED: 'a file of an /etc tree changed or was swapped while it was being merged',
  ETC_PASSWD_INVALID:
    'a passwd, group, shadow or gshadow file is oversized or has a malformed line',
  // Fleet server (packages/server) and the device protocol (packages/protocol)
  SERVER_CONFIG: 'the fleet server configuration (database URL, keys, repository) is invalid',
  SERVER_NOT_INSTALLED:
    'this ferry is a device build, without the fleet server that `ferry server`, `sim` and `demo fleet` run',
  SERVER_DATABASE: 'the fleet server database cannot be opened or migrated',
  SERVER_BAD_REQUEST: 'a request body, parameter or filter does not match its schema',
  SERVER_BODY_TOO_LARGE: 'a request body is larger than the route accepts',
  SERVER_NOT_FOUND: 'no such route or resource',
  SERVER_CONFLICT: 'the request conflicts with the current state (exists already, wrong state)',
  SERVER_UNAUTHENTICATED: 'no valid admin session (missing, expired or wrong credentials)',
  SERVER_FORBIDDEN: "the admin user's role does not allow this action",
  SERVER_CSRF: 'a state-changing admin request lacks the session CSRF token',
  SERVER_RATE_LIMITED: 'too many requests from one client; retry later',
  SERVER_REPOSITORY: 'the release repository cannot be read or fails a check',
  DEVICE_AUTH_FAILED: 'a device request is not signed by the key of an enrolled device',
  DEVICE_REPLAY: 'a device request reuses a nonce or its timestamp is too old or new (replay)',
  DEVICE_SESSION_EXPIRED:
    'a device request was made under a session that has expired (the device opens a new one)',
  DEVICE_NOT_APPROVED: 'the device is enrolled but not (yet) approved, or was rejected',
  DEVICE_ENROLMENT_REFUSED: 'an enrolment token is unknown, expired or used up',
  DEVICE_ASSIGNMENT_INVALID: 'a director assignment is malformed or not signed by a trusted key',
  DEVICE_ASSIGNMENT_STALE: 'a director assignment is for another device or request, or expired',
  DEVICE_ASSIGNMENT_MISMATCH: 'a director assignment disagrees with the TUF targets metadata',
  DEVICE_ASSIGNMENT_DOWNGRADE:
    'a director assignment names a lower release counter (rollback attack)',
  // Reboots (packages/agent/src/kexec.ts)
  KEXEC_UNSUPPORTED:
    'kexec is refused: the bootloader backend cannot count a boot attempt outside the bootloader, or the device boots deployments',
  KEXEC_NO_TARGET:
    'kexec has nothing to start: the bootloader would boot no slot, or that slot holds no installed image',
  KEXEC_FAILED:
    'the next kernel could not be loaded from the slot image (kexec -l, mount, kernel path) or kexec -e returned; the device is unchanged',
  FLEET_NOT_CONFIGURED: 'the device has no [server] url in system.toml',
  FLEET_UNREACHABLE:
    'the fleet server cannot be reached, or answers with something other than the device protocol',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The base of every error Ferry throws on purpose. */
export class FerryError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FerryError';
    this.code = code;
  }

  /** Adds context at a boundary ("reading bundle x.fbd: ..."), keeping the code. */
  withContext(context: string): FerryError {
    return new FerryError(this.code, `${context}: ${this.message}`, { cause: this });
  }
}

/** True if `e` is a FerryError, optionally with the given code. */
export function isFerryError(e: unknown, code?: ErrorCode): e is FerryError {
  return e instanceof FerryError && (code === undefined || e.code === code);
}

/** Rethrows a FerryError with context; wraps anything else as IO or INTERNAL. */
export function withContext(context: string, e: unknown): FerryError {
  if (e instanceof FerryError) return e.withContext(context);
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string')
    return new FerryError('IO', `${context}: ${err.message}`, { cause: e });
  return new FerryError('INTERNAL', `${context}: ${String(err?.message ?? e)}`, { cause: e });
}

/** docs/errors.md, generated from ERROR_CODES by `npm run docs:errors`. */
export function errorsReference(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, text]) => `| \`${code}\` | ${text} |`);
  return [
    '# Error codes',
    '',
    '<!-- Generated from packages/core/src/errors.ts by `npm run docs:errors`; do not edit by hand. -->',
    '',
    'Every error Ferry reports on purpose carries one of these codes. Codes are API: they are never renamed or reused, so scripts and fleet tooling can key on them. The CLI prints `ferry: error[CODE]: message` on one line (with `--json`, `{"ok": false, "error": {"code", "message"}}` on stdout) and exits 1 for refused input, 2 for usage errors, 3 for I/O and external-tool failures, 70 for internal errors.',
    '',
    '| code | meaning |',
    '| --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
