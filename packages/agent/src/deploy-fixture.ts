/**
 * Test trees for the deployment store tests (test-only code, like daemon-test-agent.ts): a small rootfs-like tree per release, where each
 * release changes a known number of files, so tests can assert exact object counts.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

/** Deterministic incompressible bytes: SHA-256 in counter mode over `seed`. */
function seededBytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i * 32 < size; i++)
    createHash('sha256')
      .update(`${seed}:${i}`)
      .digest()
      .copy(out, i * 32);
  return out;
}

/** Objects (distinct file contents+metadata) in `makeReleaseTree(dir, 1)`. */
export const RELEASE_OBJECTS = 9;

/**
 * Writes a rootfs-like tree for `release` into `dir` (created). Release n differs from
 * release 1 in etc/os-release and usr/lib/libapp.so (changed) and usr/bin/new-n (added):
 * 3 objects more per release. Holds setuid, hardlinks, an empty file, symlinks, a fifo, a
 * read-only dir, and (with `xattrs`) a user xattr.
 */
export async function makeReleaseTree(dir: string, release: number, xattrs = true): Promise<void> {
  await mkdir(join(dir, 'usr/bin'), { recursive: true });
  await mkdir(join(dir, 'usr/lib'), { recursive: true });
  await mkdir(join(dir, 'etc'), { recursive: true });
  await mkdir(join(dir, 'var/empty'), { recursive: true });
  await writeFile(join(dir, 'etc/os-release'), `VERSION_ID=${release}\n`);
  await writeFile(join(dir, 'etc/hostname'), 'ferry\n');
  await writeFile(join(dir, 'etc/empty.conf'), '');
  await writeFile(join(dir, 'usr/lib/libc.so'), seededBytes(300_000, 1));
  await writeFile(join(dir, 'usr/lib/libapp.so'), seededBytes(70_000, 100 + release));
  await writeFile(join(dir, 'usr/bin/tool'), seededBytes(5_000, 2));
  await link(join(dir, 'usr/bin/tool'), join(dir, 'usr/bin/tool-alias'));
  await writeFile(join(dir, 'usr/bin/su'), seededBytes(2_000, 3));
  await chmod(join(dir, 'usr/bin/su'), 0o4755);
  await writeFile(join(dir, 'usr/bin/owned'), 'owned by someone else\n');
  if (process.getuid?.() === 0) await chown(join(dir, 'usr/bin/owned'), 1234, 4321);
  if (release > 1) await writeFile(join(dir, `usr/bin/new-${release}`), `new in ${release}\n`);
  await symlink('usr/lib', join(dir, 'lib'));
  await symlink('/etc/hostname', join(dir, 'etc/abs-link'));
  execFileSync('mkfifo', [join(dir, 'var/fifo')]);
  await writeFile(join(dir, 'usr/lib/xattr-file'), 'labelled\n');
  if (xattrs)
    execFileSync('setfattr', ['-n', 'user.label', '-v', 'ferry', join(dir, 'usr/lib/xattr-file')]);
  await chmod(join(dir, 'var/empty'), 0o555);
}

/**
 * system.toml of a test device that deploys: compatible "board-x", the file bootloader, two
 * slots, `system` lines added to [system] and `deploy` lines under [deploy].
 */
export function deployToml(deploy: string[], system: string[] = []): string {
  return [
    '[system]',
    'compatible = "board-x"',
    'bootloader = "file"',
    ...system,
    '[deploy]',
    ...deploy,
    '[slot.rootfs.0]',
    'device = "/a.img"',
    'bootname = "A"',
    '[slot.rootfs.1]',
    'device = "/b.img"',
    'bootname = "B"',
    '',
  ].join('\n');
}
