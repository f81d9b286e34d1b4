/**
 * Test support for the daemon's tests (not exported): a real Agent behind the DaemonAgent
 * interface, with a stand-in repository (one bundle file as "the newest release") for
 * check/update/activateStaged/rebase until the repository client lands in Agent. Installs,
 * status, mark, rollback and reboot are the real Agent's.
 */
import { FerryError } from '@ferry/core';
import type { Agent, AgentEvent } from './agent.ts';
import type { DaemonAgent, DaemonCheck, DaemonUpdateResult, ForwardedEvent } from './daemon.ts';
import type { InstallResult } from './install.ts';

export interface FeedRelease {
  bundle: string;
  version: string;
  counter: number;
}

/** A latch a test opens by hand, to hold an operation in flight. */
export function latch(): { wait: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

export class FeedAgent implements DaemonAgent {
  readonly real: Agent;
  feed: FeedRelease | undefined;
  channel = 'stable';
  checkError: FerryError | undefined;
  /** update() and install() wait for this before they do anything. */
  gate: Promise<void> | undefined;
  readonly calls: string[] = [];
  #staged: FeedRelease | undefined;

  constructor(real: Agent, feed?: FeedRelease) {
    this.real = real;
    this.feed = feed;
  }

  get config(): Agent['config'] {
    return this.real.config;
  }

  status() {
    return this.real.status();
  }

  async install(source: string, onEvent?: (e: AgentEvent) => void): Promise<InstallResult> {
    this.calls.push('install');
    await this.gate;
    return this.real.install(source, onEvent);
  }

  mark(which: string, action: 'good' | 'bad' | 'active', onEvent?: (e: AgentEvent) => void) {
    return this.real.mark(which, action, onEvent);
  }

  rollback(onEvent?: (e: AgentEvent) => void) {
    return this.real.rollback(onEvent);
  }

  rebootNow() {
    return this.real.rebootNow();
  }

  async check(): Promise<DaemonCheck> {
    this.calls.push('check');
    if (this.checkError) throw this.checkError;
    const s = await this.real.status();
    const have = Math.max(0, ...s.slots.map((x) => x.record?.release?.releaseCounter ?? 0));
    const f = this.feed;
    return {
      channel: this.channel,
      ...(f
        ? {
            latest: {
              version: f.version,
              releaseCounter: f.counter,
              manifestSha256: `sha-${f.version}`,
            },
          }
        : {}),
      available: f !== undefined && f.counter > have,
    };
  }

  async update(
    o: { onEvent?: (e: ForwardedEvent) => void; stage?: boolean; signal?: AbortSignal } = {},
  ): Promise<DaemonUpdateResult> {
    this.calls.push(o.stage ? 'update:stage' : 'update');
    if (this.gate) await Promise.race([this.gate, aborted(o.signal)]);
    if (o.signal?.aborted) throw new Error('download aborted');
    const check = await this.check();
    if (!check.available || !this.feed) return { check, staged: false };
    if (o.stage) {
      // Stands in for "written and verified, bootloader not switched": nothing to read back here.
      this.#staged = this.feed;
      return { check, staged: true, installed: stagedResult(this.feed) };
    }
    const installed = await this.real.install(this.feed.bundle, o.onEvent);
    return { check, staged: false, installed };
  }

  async activateStaged(): Promise<{ slot: string; bootname: string }> {
    this.calls.push('activate');
    if (!this.#staged) throw new FerryError('USAGE', 'nothing staged');
    const r = await this.real.install(this.#staged.bundle);
    this.#staged = undefined;
    return { slot: r.target, bootname: r.bootname };
  }

  rebase(channel: string): Promise<void> {
    this.calls.push(`rebase:${channel}`);
    this.channel = channel;
    return Promise.resolve();
  }
}

function aborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((r) => {
    if (signal?.aborted) r();
    signal?.addEventListener('abort', () => r(), { once: true });
  });
}

function stagedResult(f: FeedRelease): InstallResult {
  return {
    target: 'rootfs.1',
    bootname: 'B',
    version: f.version,
    releaseCounter: f.counter,
    manifestSha256: `sha-${f.version}`,
    seededBytes: 0,
    presentBytes: 0,
    fetchedBytes: 0,
    bundleBytesRead: 0,
    staged: true,
  };
}
