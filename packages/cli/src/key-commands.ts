/** `ferry key ...`: signing keys. */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeKeyPair } from '@ferry/core';
import { type CommandSpec } from './command.ts';

export const keyGenerate: CommandSpec = {
  name: 'key generate',
  summary: 'Create an ed25519 signing key pair (PREFIX.key, PREFIX.pub)',
  description:
    'Writes PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM) and prints the key id, the SHA-256 of the raw public key. Refuses to overwrite an existing key. Put .pub files into the keyring directory that devices and `ferry bundle verify` trust; keep .key files offline.',
  positionals: [
    { name: 'PREFIX', description: 'path prefix for the two files, e.g. keys/release-1' },
  ],
  json: true,
  examples: ['ferry key generate keys/release-1'],
  async run(ctx) {
    const prefix = ctx.positionals[0]!;
    // Private keys go into a directory only the owner can enter.
    await mkdir(dirname(prefix), { recursive: true, mode: 0o700 });
    const r = await writeKeyPair(prefix);
    ctx.out.result(
      r,
      () =>
        `key id ${r.keyId}\nprivate key ${r.privatePath} (keep offline)\npublic key  ${r.publicPath}`,
    );
  },
};
