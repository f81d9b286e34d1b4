/**
 * The update daemon: checks the repository on an interval with jitter, downloads and installs
 * per policy (auto, download-only, ask), reboots per policy (now, window, never), and runs the
 * operations the local API asks for, one at a time.
 */
import { FerryError, isFerryError, withContext } from '@ferry/core';
import type { AgentEvent, StatusReport } from './agent.ts';
import type { DaemonConfig, SlotConfig } from './config.ts';
import {
  firstCheckDelay,
  formatWindow,
  inWindow,
  msUntilWindow,
  nextCheckDelay,
  systemClock,
  type DaemonClock,
} from './daemon-schedule.ts';
import type { InstallResult } from './install.ts';

/** What `Agent.check()` answers (the subset the daemon reads). */
export interface DaemonCheck {
  channel: string;
  current?: { version: string; releaseCounter: number };
  latest?: { version: string; releaseCounter: number; manifestSha256: string };
  available: boolean;
}

/** What `Agent.update()` answers (the subset the daemon reads). */
export interface DaemonUpdateResult {
  check: DaemonCheck;
  installed?: InstallResult;
  staged: boolean;
}

/** Any event the agent emits; the daemon forwards them unchanged. */
export type ForwardedEvent = { id: string };

/** What `Agent.fleetCycle()` answers (the subset the daemon reads). */
export interface DaemonFleetCycle {
  action: string;
  assignment?: { rolloutId: string; version: string; releaseCounter: number };
  installed?: InstallResult;
  /** The rollout asks for the user's confirmation before the staged release is activated. */
  confirm?: boolean;
}

/** The part of `Agent` the daemon drives: the real Agent satisfies it. */
export interface DaemonAgent {
  readonly config: { daemon: DaemonConfig; server?: unknown };
  status(): Promise<StatusReport>;
  install(source: string, onEvent?: (e: AgentEvent) => void): Promise<InstallResult>;
  mark(
    which: string,
    action: 'good' | 'bad' | 'active',
    onEvent?: (e: AgentEvent) => void,
  ): Promise<SlotConfig>;
  rollback(onEvent?: (e: AgentEvent) => void): Promise<{ from: string; to: string }>;
  rebootNow(): Promise<void>;
  check(): Promise<DaemonCheck>;
  update(opts?: {
    onEvent?: (e: ForwardedEvent) => void;
    stage?: boolean;
    signal?: AbortSignal;
  }): Promise<DaemonUpdateResult>;
  activateStaged(): Promise<{ slot: string; bootname: string }>;
  rebase(channel: string): Promise<void>;
  /** One cycle with the fleet server ([server] set): what the director assigns, verified. */
  fleetCycle?(opts: {
    onEvent?: (e: ForwardedEvent) => void;
    stage?: boolean;
    signal?: AbortSignal;
  }): Promise<DaemonFleetCycle>;
}

export type DaemonOperation =
  'cycle' | 'check' | 'install' | 'mark' | 'rollback' | 'rebase' | 'reboot';

/** What the daemon holds: nothing, a staged release, or a committed one waiting for a reboot. */
export type DaemonState =
  | 'idle'
  | 'staged'
  | 'awaiting-approval'
  | 'reboot-scheduled'
  | 'reboot-required'
  | 'rebooting'
  | 'stopped';

/** A release the daemon staged or committed. */
export interface DaemonRelease {
  version: string;
  releaseCounter: number;
  slot: string;
  bootname: string;
  manifestSha256?: string;
}

/** Daemon lifecycle events (stable ids); agent events are forwarded beside them. */
export type DaemonEvent =
  | { id: 'daemon.started'; policy: DaemonStatus['policy'] }
  | { id: 'daemon.state'; state: DaemonState; release?: DaemonRelease }
  | { id: 'daemon.check-scheduled'; at: string; inSeconds: number; failures: number }
  | { id: 'daemon.operation-started'; operation: DaemonOperation }
  | { id: 'daemon.operation-finished'; operation: DaemonOperation }
  | { id: 'daemon.operation-failed'; operation: DaemonOperation; code: string; message: string }
  | { id: 'daemon.reboot-scheduled'; at: string }
  | { id: 'daemon.rebooting'; reason: string }
  | { id: 'daemon.stopped' }
  | { id: 'update.checked'; check: DaemonCheck };

/** Every event a subscriber sees, stamped with the daemon's clock. */
export type StampedEvent = (DaemonEvent | ForwardedEvent) & { time: string };

export interface DaemonStatus {
  state: DaemonState;
  policy: {
    install: DaemonConfig['install'];
    reboot: DaemonConfig['reboot'];
    intervalSeconds: number;
    jitterSeconds: number;
    window?: string;
  };
  operation?: { kind: DaemonOperation; startedAt: string; progress?: ForwardedEvent };
  staged?: DaemonRelease;
  pending?: DaemonRelease;
  rebootAt?: string;
  lastCheck?: { at: string; check: DaemonCheck };
  lastError?: { at: string; operation: DaemonOperation; code: string; message: string };
  failures: number;
  nextCheckAt?: string;
}

/** What an install through the daemon did. */
export interface DaemonInstallOutcome {
  action: 'committed' | 'staged' | 'up-to-date' | 'pending-reboot';
  release?: DaemonRelease;
  check?: DaemonCheck;
  installed?: InstallResult;
  /** What the reboot policy did after the commit. */
  reboot?: 'rebooting' | 'scheduled' | 'required';
}

export interface DaemonOptions {
  clock?: DaemonClock;
  /** In [0, 1); Math.random by default. */
  random?: () => number;
}

function release(r: InstallResult, manifestSha256?: string): DaemonRelease {
  return {
    version: r.version,
    releaseCounter: r.releaseCounter,
    slot: r.target,
    bootname: r.bootname,
    manifestSha256: manifestSha256 ?? r.manifestSha256,
  };
}

/** The release a slot of the status report holds, if the state knows it. */
function slotRelease(s: StatusReport, name: string | undefined): DaemonRelease | undefined {
  const slot = s.slots.find((x) => x.name === name);
  const rel = slot?.record?.release;
  if (!slot || slot.booted || !rel || !slot.bootname) return undefined;
  return {
    version: rel.version,
    releaseCounter: rel.releaseCounter,
    slot: slot.name,
    bootname: slot.bootname,
    manifestSha256: rel.manifestSha256,
  };
}

/**
 * The update daemon over an agent. `start()` begins polling; the methods are what the local
 * API offers. Every operation that changes the device runs alone (DAEMON_BUSY otherwise).
 * @example
 * const daemon = new Daemon(await Agent.open());
 * daemon.subscribe((e) => log(e));
 * await daemon.start();
 * process.on('SIGTERM', () => void daemon.stop());
 */
export class Daemon {
  readonly agent: DaemonAgent;
  readonly #cfg: DaemonConfig;
  readonly #clock: DaemonClock;
  readonly #random: () => number;
  readonly #listeners = new Set<(e: StampedEvent) => void>();
  readonly #abort = new AbortController();
  readonly #tasks = new Set<Promise<void>>();
  #op: { kind: DaemonOperation; startedAt: string; progress?: ForwardedEvent } | undefined;
  #opDone: Promise<void> = Promise.resolve();
  #state: DaemonState = 'idle';
  #staged: DaemonRelease | undefined;
  #pending: DaemonRelease | undefined;
  #rebootAt: string | undefined;
  #lastCheck: DaemonStatus['lastCheck'];
  #lastError: DaemonStatus['lastError'];
  #failures = 0;
  #nextCheckAt: string | undefined;
  #started = false;
  #windowWaiting = false;

  constructor(agent: DaemonAgent, opts: DaemonOptions = {}) {
    this.agent = agent;
    this.#cfg = agent.config.daemon;
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? Math.random;
  }

  /** Receives every event; returns the unsubscribe function. */
  subscribe(fn: (e: StampedEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Picks up a commit waiting for a reboot, then starts polling. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#emit({ id: 'daemon.started', policy: this.#policy() });
    await this.#recover();
    this.#spawn(this.#loop());
  }

  /** Aborts in-flight work, ends polling and waits for every task to settle. */
  async stop(): Promise<void> {
    if (!this.#abort.signal.aborted)
      this.#abort.abort(new FerryError('DAEMON_STOPPING', 'stopping'));
    await Promise.allSettled([...this.#tasks]);
    await this.#opDone;
    if (this.#state !== 'stopped') {
      this.#state = 'stopped';
      this.#emit({ id: 'daemon.stopped' });
    }
  }

  /** The daemon's state beside the device's. */
  async status(): Promise<{ daemon: DaemonStatus; system: StatusReport }> {
    return { daemon: this.daemonStatus(), system: await this.agent.status() };
  }

  daemonStatus(): DaemonStatus {
    return {
      state: this.#state,
      policy: this.#policy(),
      ...(this.#op ? { operation: { ...this.#op } } : {}),
      ...(this.#staged ? { staged: this.#staged } : {}),
      ...(this.#pending ? { pending: this.#pending } : {}),
      ...(this.#rebootAt ? { rebootAt: this.#rebootAt } : {}),
      ...(this.#lastCheck ? { lastCheck: this.#lastCheck } : {}),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      failures: this.#failures,
      ...(this.#nextCheckAt ? { nextCheckAt: this.#nextCheckAt } : {}),
    };
  }

  /** Asks the repository what is new, and changes nothing. */
  check(): Promise<DaemonCheck> {
    return this.#exclusive('check', () => this.#check());
  }

  /** One scheduled cycle: check, then download and install per the install policy. */
  runCycle(): Promise<DaemonInstallOutcome> {
    return this.#exclusive('cycle', (signal) => this.#cycle(signal));
  }

  /**
   * Installs a bundle (`source`: path or URL), or else activates the staged release, or else
   * updates from the repository. `reboot` (default: true without a source, false with one)
   * applies the reboot policy after the commit; otherwise the state says a reboot is required.
   */
  install(req: { source?: string; reboot?: boolean } = {}): Promise<DaemonInstallOutcome> {
    return this.#exclusive('install', async (signal) => {
      if (req.source !== undefined) {
        const r = await this.agent.install(req.source, this.#forward);
        if (this.#staged?.slot === r.target) this.#staged = undefined;
        const rel = release(r);
        return {
          action: 'committed',
          installed: r,
          release: rel,
          ...(await this.#committed(rel, req.reboot === true)),
        };
      }
      const staged = this.#staged ?? (await this.#recover()).staged;
      if (staged) {
        const rel = staged;
        await this.agent.activateStaged();
        this.#staged = undefined;
        return {
          action: 'committed',
          release: rel,
          ...(await this.#committed(rel, req.reboot !== false)),
        };
      }
      const r = await this.agent.update({ onEvent: this.#forward, signal });
      return this.#afterUpdate(r, req.reboot !== false);
    });
  }

  mark(state: 'good' | 'bad' | 'active', slot = 'booted'): Promise<SlotConfig> {
    return this.#exclusive('mark', () => this.agent.mark(slot, state, this.#forward));
  }

  rollback(): Promise<{ from: string; to: string }> {
    return this.#exclusive('rollback', async () => {
      const r = await this.agent.rollback(this.#forward);
      // The next boot runs an older release: nothing the daemon committed is pending any more.
      this.#pending = undefined;
      this.#setState('reboot-required');
      return r;
    });
  }

  rebase(channel: string): Promise<{ channel: string }> {
    return this.#exclusive('rebase', async () => {
      await this.agent.rebase(channel);
      this.#staged = undefined;
      if (this.#state === 'staged' || this.#state === 'awaiting-approval') this.#setState('idle');
      return { channel };
    });
  }

  /** Resolves when no operation runs. */
  async idle(): Promise<void> {
    while (this.#op) await this.#opDone;
  }

  async #check(): Promise<DaemonCheck> {
    const check = await this.agent.check();
    this.#lastCheck = { at: this.#iso(), check };
    this.#emit({ id: 'update.checked', check });
    return check;
  }

  async #cycle(signal: AbortSignal): Promise<DaemonInstallOutcome> {
    if (this.agent.config.server !== undefined && this.agent.fleetCycle)
      return this.#fleetCycle(signal, this.agent.fleetCycle.bind(this.agent));
    const check = await this.#check();
    const sha = check.latest?.manifestSha256;
    if (!check.available || !sha) return { action: 'up-to-date', check };
    if (signal.aborted) throw new FerryError('DAEMON_STOPPING', 'the daemon is stopping');
    // Already done for this release: do not write the same slot again every interval.
    if (this.#pending?.manifestSha256 === sha)
      return { action: 'pending-reboot', check, release: this.#pending };
    if (this.#staged?.manifestSha256 === sha)
      return { action: 'staged', check, release: this.#staged };
    const r = await this.agent.update({
      onEvent: this.#forward,
      signal,
      stage: this.#cfg.install !== 'auto',
    });
    return this.#afterUpdate(r, true);
  }

  /** A cycle with the fleet server: the director, not the newest release, decides. */
  async #fleetCycle(
    signal: AbortSignal,
    cycle: NonNullable<DaemonAgent['fleetCycle']>,
  ): Promise<DaemonInstallOutcome> {
    const r = await cycle({ onEvent: this.#forward, signal, stage: this.#cfg.install !== 'auto' });
    const a = r.assignment;
    const check: DaemonCheck = {
      channel: 'fleet',
      ...(a
        ? {
            latest: {
              version: a.version,
              releaseCounter: a.releaseCounter,
              manifestSha256: r.installed?.manifestSha256 ?? '',
            },
          }
        : {}),
      available: r.installed !== undefined,
    };
    this.#lastCheck = { at: this.#iso(), check };
    if (!r.installed)
      return { action: r.action === 'waiting' ? 'pending-reboot' : 'up-to-date', check };
    return this.#afterUpdate(
      { check, installed: r.installed, staged: r.installed.staged },
      true,
      r.confirm === true,
    );
  }

  async #afterUpdate(
    r: DaemonUpdateResult,
    applyPolicy: boolean,
    confirm = false,
  ): Promise<DaemonInstallOutcome> {
    if (!r.installed) return { action: 'up-to-date', check: r.check };
    const rel = release(r.installed, r.check.latest?.manifestSha256);
    if (r.staged) {
      this.#staged = rel;
      const ask = confirm || this.#cfg.install === 'ask';
      this.#setState(ask ? 'awaiting-approval' : 'staged', rel);
      return { action: 'staged', check: r.check, installed: r.installed, release: rel };
    }
    this.#staged = undefined;
    const reboot = await this.#committed(rel, applyPolicy);
    return { action: 'committed', check: r.check, installed: r.installed, release: rel, ...reboot };
  }

  /** After a commit: the reboot policy, or just the note that a reboot is required. */
  async #committed(
    rel: DaemonRelease,
    applyPolicy: boolean,
  ): Promise<Pick<DaemonInstallOutcome, 'reboot'>> {
    this.#pending = rel;
    const policy = applyPolicy ? this.#cfg.reboot : 'never';
    if (policy === 'now') {
      await this.#reboot('reboot policy "now"');
      return { reboot: 'rebooting' };
    }
    if (policy === 'window') {
      this.#scheduleWindowReboot();
      return { reboot: 'scheduled' };
    }
    this.#setState('reboot-required', rel);
    return { reboot: 'required' };
  }

  async #reboot(reason: string): Promise<void> {
    this.#setState('rebooting', this.#pending);
    this.#emit({ id: 'daemon.rebooting', reason });
    try {
      await this.agent.rebootNow();
    } catch (e) {
      this.#setState('reboot-required', this.#pending);
      throw withContext('rebooting', e);
    }
  }

  #scheduleWindowReboot(): void {
    const w = this.#cfg.window!;
    const at = this.#clock.now() + msUntilWindow(new Date(this.#clock.now()), w);
    this.#rebootAt = new Date(at).toISOString();
    this.#setState('reboot-scheduled', this.#pending);
    this.#emit({ id: 'daemon.reboot-scheduled', at: this.#rebootAt });
    if (this.#windowWaiting) return;
    this.#windowWaiting = true;
    this.#spawn(this.#rebootInWindow(w).finally(() => (this.#windowWaiting = false)));
  }

  async #rebootInWindow(w: { start: number; end: number }): Promise<void> {
    const signal = this.#abort.signal;
    for (;;) {
      await this.#clock.sleep(msUntilWindow(new Date(this.#clock.now()), w), signal);
      await this.idle();
      if (signal.aborted || this.#state !== 'reboot-scheduled') return;
      // An operation may have run past the end of the window: wait for the next one.
      if (!inWindow(new Date(this.#clock.now()), w)) continue;
      try {
        await this.#exclusive('reboot', () => this.#reboot('maintenance window'));
        return;
      } catch (e) {
        // Another operation slipped in first: wait for it, then try again inside the window.
        if (!isFerryError(e, 'DAEMON_BUSY')) return;
      }
    }
  }

  async #loop(): Promise<void> {
    const signal = this.#abort.signal;
    let delay = firstCheckDelay(this.#cfg, this.#random);
    while (!signal.aborted) {
      this.#nextCheckAt = new Date(this.#clock.now() + delay).toISOString();
      this.#emit({
        id: 'daemon.check-scheduled',
        at: this.#nextCheckAt,
        inSeconds: Math.round(delay / 1000),
        failures: this.#failures,
      });
      await this.#clock.sleep(delay, signal);
      if (signal.aborted) break;
      this.#nextCheckAt = undefined;
      try {
        await this.runCycle();
        this.#failures = 0;
      } catch (e) {
        // A cycle that found another operation running is skipped, not failed.
        if (!isFerryError(e, 'DAEMON_BUSY') && !isFerryError(e, 'DAEMON_STOPPING'))
          this.#failures++;
      }
      delay = nextCheckDelay(this.#cfg, this.#failures, this.#random);
    }
    this.#nextCheckAt = undefined;
  }

  /**
   * What an earlier run (or the CLI without a daemon) left behind in the state: a staged slot,
   * or a commit waiting for its reboot.
   */
  async #recover(): Promise<{ staged?: DaemonRelease }> {
    const s = await this.agent.status().catch(() => undefined);
    if (!s) return {};
    const staged = slotRelease(s, s.stagedSlot);
    if (staged) {
      this.#staged = staged;
      this.#setState(this.#cfg.install === 'ask' ? 'awaiting-approval' : 'staged', staged);
      return { staged };
    }
    const pending = slotRelease(s, s.pendingSlot);
    // Report only: acting on it could reboot into a slot the bootloader already gave up on.
    if (pending) {
      this.#pending = pending;
      this.#setState('reboot-required', pending);
    }
    return {};
  }

  /** Runs `fn` as the only operation; DAEMON_BUSY while another runs. */
  async #exclusive<T>(kind: DaemonOperation, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#abort.signal.aborted)
      throw new FerryError('DAEMON_STOPPING', `the daemon is stopping; ${kind} was not started`);
    if (this.#op)
      throw new FerryError(
        'DAEMON_BUSY',
        `${this.#op.kind} is running since ${this.#op.startedAt}; ${kind} was not started`,
      );
    const op = { kind, startedAt: this.#iso() };
    this.#op = op;
    let done = (): void => undefined;
    this.#opDone = new Promise((r) => (done = r));
    this.#emit({ id: 'daemon.operation-started', operation: kind });
    try {
      const r = await fn(this.#abort.signal);
      this.#emit({ id: 'daemon.operation-finished', operation: kind });
      return r;
    } catch (e) {
      const fe =
        this.#abort.signal.aborted && !(e instanceof FerryError)
          ? new FerryError('DAEMON_STOPPING', `${kind} aborted: the daemon is stopping`, {
              cause: e,
            })
          : withContext(kind, e);
      this.#lastError = { at: this.#iso(), operation: kind, code: fe.code, message: fe.message };
      this.#emit({
        id: 'daemon.operation-failed',
        operation: kind,
        code: fe.code,
        message: fe.message,
      });
      throw fe;
    } finally {
      this.#op = undefined;
      done();
    }
  }

  readonly #forward = (e: ForwardedEvent): void => {
    if (this.#op && e.id === 'install.progress') this.#op.progress = e;
    this.#emit(e);
  };

  #setState(state: DaemonState, rel?: DaemonRelease): void {
    if (state !== 'reboot-scheduled') this.#rebootAt = undefined;
    if (state === this.#state) return;
    this.#state = state;
    this.#emit({ id: 'daemon.state', state, ...(rel ? { release: rel } : {}) });
  }

  #spawn(p: Promise<void>): void {
    const t = p.catch(() => undefined).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  #emit(e: DaemonEvent | ForwardedEvent): void {
    const stamped: StampedEvent = { ...e, time: this.#iso() };
    for (const fn of this.#listeners)
      try {
        fn(stamped);
      } catch {
        // A broken subscriber (a closed stream) must not break the operation it watches.
      }
  }

  #iso(): string {
    return new Date(this.#clock.now()).toISOString();
  }

  #policy(): DaemonStatus['policy'] {
    const c = this.#cfg;
    return {
      install: c.install,
      reboot: c.reboot,
      intervalSeconds: c.intervalSeconds,
      jitterSeconds: c.jitterSeconds,
      ...(c.window ? { window: formatWindow(c.window) } : {}),
    };
  }
}
