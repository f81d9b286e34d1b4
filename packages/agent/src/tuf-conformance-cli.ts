/**
 * The client-under-test entry point of the public TUF conformance suite
 * (github.com/theupdateframework/tuf-conformance, CLIENT-CLI.md), on the device's own code path
 * (tuf-client.ts). Options come before the command, in any order; exit 0 on success, 1 on any
 * failure. See docs/tuf-conformance.md.
 *
 * @example
 * ferry-tuf-client --metadata-dir /tmp/md init ./root.json
 * ferry-tuf-client --metadata-url http://127.0.0.1:8080/metadata --metadata-dir /tmp/md refresh
 */
import { parseArgs } from 'node:util';
import { FerryError } from '@ferry/core';
import { createTufClient, initTrustedRootFromFile } from './tuf-client.ts';

const USAGE = `usage:
  ferry-tuf-client --metadata-dir DIR init TRUSTED_ROOT
  ferry-tuf-client --metadata-url URL --metadata-dir DIR refresh
  ferry-tuf-client --metadata-url URL --metadata-dir DIR --target-name NAME [--target-name NAME ...]
                   --target-dir DIR --target-base-url URL download
  extra option: --fetch-timeout-ms N (default 60000)`;

interface Args {
  metadataDir: string;
  metadataUrl?: string;
  targetNames: string[];
  targetDir?: string;
  targetBaseUrl?: string;
  fetchTimeoutMs?: number;
  command: string;
  operands: string[];
}

function parse(argv: string[]): Args {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'metadata-dir': { type: 'string' },
      'metadata-url': { type: 'string' },
      'target-name': { type: 'string', multiple: true },
      'target-dir': { type: 'string' },
      'target-base-url': { type: 'string' },
      'fetch-timeout-ms': { type: 'string' },
    },
  });
  const [command, ...operands] = positionals;
  const metadataDir = values['metadata-dir'];
  if (!command || !metadataDir)
    throw new FerryError('USAGE', 'a command and --metadata-dir are required');
  const timeout = values['fetch-timeout-ms'];
  if (timeout !== undefined && !/^[1-9][0-9]{0,8}$/.test(timeout))
    throw new FerryError('USAGE', '--fetch-timeout-ms takes a positive integer');
  return {
    metadataDir,
    metadataUrl: values['metadata-url'],
    targetNames: values['target-name'] ?? [],
    targetDir: values['target-dir'],
    targetBaseUrl: values['target-base-url'],
    fetchTimeoutMs: timeout === undefined ? undefined : Number(timeout),
    command,
    operands,
  };
}

function need<T>(value: T | undefined, option: string): T {
  if (value === undefined) throw new FerryError('USAGE', `${option} is required`);
  return value;
}

async function run(a: Args): Promise<void> {
  if (a.command === 'init') {
    if (a.operands.length !== 1) throw new FerryError('USAGE', 'init takes one TRUSTED_ROOT file');
    await initTrustedRootFromFile(a.metadataDir, a.operands[0] as string);
    return;
  }
  if (a.operands.length !== 0) throw new FerryError('USAGE', `${a.command} takes no operands`);
  if (a.command !== 'refresh' && a.command !== 'download')
    throw new FerryError('USAGE', `unknown command ${a.command}`);
  const client = createTufClient({
    metadataUrl: need(a.metadataUrl, '--metadata-url'),
    metadataDir: a.metadataDir,
    ...(a.targetBaseUrl === undefined ? {} : { targetBaseUrl: a.targetBaseUrl }),
    ...(a.fetchTimeoutMs === undefined ? {} : { fetchTimeoutMs: a.fetchTimeoutMs }),
  });
  await client.refresh();
  if (a.command === 'refresh') return;
  if (a.targetNames.length === 0) throw new FerryError('USAGE', '--target-name is required');
  need(a.targetBaseUrl, '--target-base-url');
  const dir = need(a.targetDir, '--target-dir');
  // One client for every target: one refresh, one trusted state, in the order given.
  for (const name of a.targetNames) await client.download(name, dir);
}

/** Runs the conformance CLI on `argv` (without node and script); resolves to the exit status. */
export async function conformanceCli(argv: string[], stderr = process.stderr): Promise<number> {
  try {
    await run(parse(argv));
    return 0;
  } catch (e) {
    const code = e instanceof FerryError ? e.code : 'USAGE';
    const message = e instanceof Error ? e.message : String(e);
    stderr.write(`ferry-tuf-client: error[${code}]: ${message}\n`);
    if (code === 'USAGE') stderr.write(`${USAGE}\n`);
    return 1;
  }
}

if (import.meta.main) process.exitCode = await conformanceCli(process.argv.slice(2));
