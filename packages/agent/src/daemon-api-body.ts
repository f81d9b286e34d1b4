/**
 * Request bodies of the daemon API: size-bounded while read, then checked field by field.
 * Unknown keys are refused, as in system.toml.
 */
import { isAbsolute } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { FerryError } from '@ferry/core';

const invalid = (msg: string) => new FerryError('DAEMON_REQUEST_INVALID', msg);

/** Reads a JSON object body of at most `max` bytes; an empty body is `{}`. */
export async function readJsonBody(req: IncomingMessage, max: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const parts: Buffer[] = [];
  let size = declared;
  if (declared <= max)
    size = await new Promise<number>((resolve, reject) => {
      let n = 0;
      const onData = (chunk: Buffer) => {
        n += chunk.length;
        // Counted while streaming: a chunked body has no length to check up front.
        if (n > max) return void (req.off('data', onData), resolve(n));
        parts.push(chunk);
      };
      req.on('data', onData);
      req.once('end', () => resolve(n));
      req.once('error', reject);
    });
  if (size > max) {
    // Discard the rest (bounded by the server's request timeout) so the error reply arrives.
    req.resume();
    throw invalid(`request body is over ${max} bytes`);
  }
  if (size === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    throw invalid('request body is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid('request body must be a JSON object');
  return v;
}

function fields(body: unknown, allowed: string[]): Record<string, unknown> {
  const o = (body ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw invalid(`unknown field '${k.slice(0, 64)}' (allowed: ${allowed.join(', ') || 'none'})`);
  return o;
}

function optString(o: Record<string, unknown>, key: string, re: RegExp, max: number) {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > max || !re.test(v))
    throw invalid(`${key} must be a string matching ${re.source} of at most ${max} characters`);
  return v;
}

/** POST /v1/install: `{source?: absolute path or http(s) URL, reboot?: boolean}`. */
export function parseInstallBody(body: unknown): { source?: string; reboot?: boolean } {
  const o = fields(body, ['source', 'reboot']);
  const source = optString(o, 'source', /^[^\0]+$/, 4096);
  // The daemon's working directory is not the caller's: relative paths would mean another file.
  if (source !== undefined && !isAbsolute(source) && !/^https?:\/\/\S+$/.test(source))
    throw invalid('source must be an absolute path or an http(s) URL');
  if (o.reboot !== undefined && typeof o.reboot !== 'boolean')
    throw invalid('reboot must be true or false');
  return {
    ...(source !== undefined ? { source } : {}),
    ...(typeof o.reboot === 'boolean' ? { reboot: o.reboot } : {}),
  };
}

const MARK_STATES = ['good', 'bad', 'active'] as const;

/** POST /v1/mark: `{state: good|bad|active, slot?: booted|other|slot name|bootname}`. */
export function parseMarkBody(body: unknown): {
  state: (typeof MARK_STATES)[number];
  slot?: string;
} {
  const o = fields(body, ['state', 'slot']);
  if (!(MARK_STATES as readonly unknown[]).includes(o.state))
    throw invalid(`state must be one of ${MARK_STATES.join(', ')}`);
  const slot = optString(o, 'slot', /^[A-Za-z0-9][A-Za-z0-9._-]*$/, 64);
  return { state: o.state as (typeof MARK_STATES)[number], ...(slot ? { slot } : {}) };
}

/** POST /v1/rebase: `{channel}`, spelled as in system.toml. */
export function parseRebaseBody(body: unknown): { channel: string } {
  const o = fields(body, ['channel']);
  const channel = optString(o, 'channel', /^[a-z][a-z0-9-]{0,31}$/, 32);
  if (channel === undefined) throw invalid('channel is required');
  return { channel };
}
