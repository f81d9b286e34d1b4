/**
 * One fleet cycle (docs/fleet.md): enrol on first contact, report how the last assignment
 * ended (committed once the new slot was marked good, rolled back when the device runs the old
 * one again), check in, and install what the director assigns, but only after the assignment
 * passes Uptane's full verification against this device's own TUF view: a server can pick
 * among genuine releases, never invent one or go back to an older one.
 */
import { FerryError, withContext, type ErrorCode } from '@ferry/core';
import {
  ProtocolError,
  verifyAssignment,
  type Assignment,
  type DeviceUpdateState,
  type DirectorKey,
  type ReportRequest,
} from '@ferry/protocol';
import type { Agent, AgentEvent, StatusReport } from './agent.ts';
import type { ServerConfig, SystemConfig } from './config.ts';
import { FleetClient } from './fleet-client.ts';
import { directorKeys } from './fleet-keys.ts';
import {
  inventoryOf,
  loadFleetState,
  saveFleetState,
  type FleetState,
  type ReportedState,
} from './fleet-state.ts';
import type { InstallResult } from './install.ts';
import { openTuf } from './update.ts';
import {
  channelOf,
  holderOf,
  inFlight,
  outcome,
  ProgressReporter,
  verifiedTarget,
  withRepository,
} from './fleet-decide.ts';
import type { TufClient } from './tuf-client.ts';

/** What a cycle did. */
export interface FleetCycleResult {
  deviceId: string;
  enrolment: 'accepted' | 'pending';
  /** The outcome of an earlier assignment reported in this cycle. */
  settled?: { rolloutId: string; version: string; state: DeviceUpdateState };
  /** The verified assignment of this check-in. */
  assignment?: { rolloutId: string; version: string; releaseCounter: number };
  action: 'none' | 'installed' | 'staged' | 'waiting' | 'pending-approval';
  /** The rollout asks the device's user to confirm: the release is staged until then. */
  confirm?: boolean;
  installed?: InstallResult;
  /** Seconds the server asks the device to wait before the next check-in. */
  pollSeconds?: number;
}

/** Events of a cycle, beside the agent's install events. */
export type FleetEvent =
  | { id: 'fleet.enrolled'; deviceId: string; status: 'accepted' | 'pending' }
  | { id: 'fleet.assignment'; rolloutId: string; version: string; releaseCounter: number }
  | { id: 'fleet.reported'; rolloutId: string; state: DeviceUpdateState; applied: boolean };

export interface FleetCycleOptions {
  onEvent?: (e: AgentEvent | FleetEvent) => void;
  signal?: AbortSignal;
  /** Write and verify the slot but do not make it primary (install policy ask/download-only). */
  stage?: boolean;
}

/** Errors after which the same assignment is tried again next cycle instead of reported failed. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'FETCH_FAILED',
  'FETCH_TIMEOUT',
  'FLEET_UNREACHABLE',
  'TUF_DOWNLOAD_FAILED',
  'DAEMON_STOPPING',
  'IO',
]);

export function requireServer(config: SystemConfig): ServerConfig {
  if (!config.server)
    throw new FerryError('FLEET_NOT_CONFIGURED', `no [server] url in ${config.path}`);
  return config.server;
}

/**
 * A device's session with its fleet server for one cycle.
 * @example
 * const r = await new FleetSession(agent).cycle({ onEvent: print });
 * if (r.action === 'installed') await agent.rebootNow();
 */
export class FleetSession {
  readonly agent: Agent;
  readonly server: ServerConfig;
  #client: FleetClient | undefined;

  constructor(agent: Agent) {
    this.agent = agent;
    this.server = requireServer(agent.config);
  }

  async client(): Promise<FleetClient> {
    this.#client ??= await FleetClient.open(
      this.server,
      this.agent.config.update.timeoutSeconds * 1000,
    );
    return this.#client;
  }

  /** Enrols when the state has no accepted enrolment; returns the enrolment. */
  async enrol(state: FleetState, status: StatusReport, emit: FleetCycleOptions['onEvent']) {
    const client = await this.client();
    if (state.enrolment === 'accepted' && state.deviceId === client.deviceId) return 'accepted';
    const r = await client.enrol(inventoryOf(status, this.agent.config), this.server.token);
    state.deviceId = client.deviceId;
    state.enrolment = r;
    await saveFleetState(this.agent.config, state);
    emit?.({ id: 'fleet.enrolled', deviceId: client.deviceId, status: r });
    return r;
  }

  /** Reports `state` for the current assignment and records it as reported. */
  async report(
    fs: FleetState,
    state: ReportedState,
    extra: Omit<ReportRequest, 'rolloutId' | 'state'> = {},
    emit?: FleetCycleOptions['onEvent'],
  ): Promise<void> {
    const a = fs.assignment;
    if (!a) return;
    a.state = state;
    const final = state === 'committed' || state === 'failed' || state === 'rolled-back';
    if (final) {
      fs.lastOutcome = {
        rolloutId: a.rolloutId,
        version: a.version,
        state,
        at: new Date().toISOString(),
      };
    }
    // Recorded first: a report lost to a power cut is sent again by the next cycle.
    await saveFleetState(this.agent.config, fs);
    const r = await (await this.client()).report({ rolloutId: a.rolloutId, state, ...extra });
    emit?.({ id: 'fleet.reported', rolloutId: a.rolloutId, state, applied: r.applied });
    if (final) {
      delete fs.assignment;
      await saveFleetState(this.agent.config, fs);
    }
  }

  /** Reports how the assignment in progress ended, if the device has decided it. */
  async settle(fs: FleetState, status: StatusReport, emit?: FleetCycleOptions['onEvent']) {
    const a = fs.assignment;
    if (!a) return undefined;
    // A final state recorded but not delivered (power cut, network): deliver it now.
    const decided =
      a.state === 'committed' || a.state === 'failed' || a.state === 'rolled-back'
        ? a.state
        : outcome(a, status);
    if (!decided) return undefined;
    const detail =
      decided === 'rolled-back' && status.lastRollback ? status.lastRollback.reason : undefined;
    await this.report(fs, decided, detail ? { detail: detail.slice(0, 1024) } : {}, emit);
    return { rolloutId: a.rolloutId, version: a.version, state: decided };
  }

  /**
   * Reports how the assignment in progress ended, without checking in (`ferry boot-check` calls
   * it right after marking the slot). Undefined when nothing was decided or reported.
   */
  async reportOutcome(
    emit?: FleetCycleOptions['onEvent'],
  ): Promise<FleetCycleResult['settled'] | undefined> {
    const fs = await loadFleetState(this.agent.config);
    if (fs.enrolment !== 'accepted' || !fs.assignment) return undefined;
    return this.settle(fs, await this.agent.status(), emit);
  }

  /** One cycle: enrol, settle, check in, verify and install the assignment. */
  async cycle(opts: FleetCycleOptions = {}): Promise<FleetCycleResult> {
    const emit = opts.onEvent;
    const config = this.agent.config;
    const fs = await loadFleetState(config);
    const status = await this.agent.status();
    const enrolment = await this.enrol(fs, status, emit);
    const client = await this.client();
    const base = { deviceId: client.deviceId, enrolment };
    if (enrolment === 'pending') return { ...base, action: 'pending-approval' };
    const settled = await this.settle(fs, status, emit);
    const now = settled ? await this.agent.status() : status;
    const answer = await client.checkin(inventoryOf(now, config));
    fs.lastCheckin = new Date().toISOString();
    await saveFleetState(config, fs);
    const result: FleetCycleResult = {
      ...base,
      ...(settled ? { settled } : {}),
      action: 'none',
      pollSeconds: answer.pollSeconds,
    };
    if (answer.assignment === null) return result;
    const cfg = withRepository(config, client.url, answer.repositoryUrl);
    const tuf = await openTuf(cfg);
    await tuf.refresh();
    const a = await this.#verify(answer.assignment, answer.nonce, client.deviceId, now, tuf).catch(
      (e: unknown) => this.#refused(fs, answer.assignment, e, emit),
    );
    result.assignment = {
      rolloutId: a.rolloutId,
      version: a.version,
      releaseCounter: a.releaseCounter,
    };
    emit?.({ id: 'fleet.assignment', ...result.assignment });
    // The same assignment again while its install waits for a reboot, a check or confirmation.
    if (fs.assignment?.rolloutId === a.rolloutId && inFlight(fs.assignment, now))
      return { ...result, action: 'waiting' };
    fs.assignment = {
      rolloutId: a.rolloutId,
      version: a.version,
      releaseCounter: a.releaseCounter,
      manifestSha256: a.manifestSha256,
      state: 'downloading',
    };
    return this.#install(fs, a, cfg, tuf, result, opts);
  }

  /** The assigned release is already in a slot (a cycle cut short after its install). */
  async #alreadyThere(
    fs: FleetState,
    a: Assignment,
    result: FleetCycleResult,
    emit: FleetCycleOptions['onEvent'],
  ): Promise<FleetCycleResult> {
    const { s, holder } = await holderOf(this.agent, a);
    if (!holder) {
      const detail = `the device runs release counter ${a.releaseCounter} with other contents`;
      await this.report(fs, 'failed', { errorCode: 'UPDATE_NO_RELEASE', detail }, emit);
      return result;
    }
    const fa = fs.assignment!;
    fa.slot = holder.name;
    fa.state = holder.name === s.stagedSlot ? 'installing' : 'rebooting';
    const decided = outcome(fa, s);
    await this.report(fs, decided ?? fa.state, {}, emit);
    return { ...result, action: decided ? 'none' : 'waiting' };
  }

  /**
   * Tells the server an assignment was refused (failed, with the code), then throws. The
   * rollout id is unverified here, which is harmless: a device can only report about itself.
   * While another assignment is in progress nothing is reported, only thrown.
   */
  async #refused(
    fs: FleetState,
    raw: unknown,
    e: unknown,
    emit: FleetCycleOptions['onEvent'],
  ): Promise<never> {
    const fe = withContext('checking the assignment', e);
    const signed = (raw as { signed?: { rolloutId?: unknown; version?: unknown } } | null)?.signed;
    const id = signed?.rolloutId;
    // Never over an assignment in progress: a forged one must not end a genuine one.
    const report = !fs.assignment && typeof id === 'string' && id.length > 0 && id.length <= 64;
    if (report && !TRANSIENT.has(fe.code)) {
      const v = signed?.version;
      fs.assignment = {
        rolloutId: id,
        version: typeof v === 'string' && v.length <= 64 ? v : 'unknown',
        releaseCounter: 0,
        manifestSha256: '',
        state: 'downloading',
      };
      await this.report(
        fs,
        'failed',
        { errorCode: fe.code, detail: fe.message.slice(0, 1024) },
        emit,
      ).catch(() => undefined);
    }
    throw fe;
  }

  async #verify(
    raw: unknown,
    nonce: string,
    deviceId: string,
    status: StatusReport,
    tuf: TufClient,
  ): Promise<Assignment> {
    const keys: DirectorKey[] = await directorKeys(this.server.directorKeyring);
    const signed = (raw as { signed?: { manifestPath?: unknown } } | null)?.signed;
    const path = typeof signed?.manifestPath === 'string' ? signed.manifestPath : '';
    const booted = status.slots.find((x) => x.booted)?.record?.release;
    try {
      return await verifyAssignment(raw, {
        directorKeys: keys,
        deviceId,
        compatible: this.agent.config.compatible,
        nonce,
        installedCounter: booted?.releaseCounter ?? 0,
        target: path ? await verifiedTarget(tuf, path) : undefined,
      });
    } catch (e) {
      if (e instanceof ProtocolError) throw new FerryError(e.code, e.message, { cause: e });
      throw e;
    }
  }

  async #install(
    fs: FleetState,
    a: Assignment,
    config: SystemConfig,
    tuf: TufClient,
    result: FleetCycleResult,
    opts: FleetCycleOptions,
  ): Promise<FleetCycleResult> {
    const emit = opts.onEvent;
    await this.report(fs, 'downloading', { progress: 0 }, emit);
    const progress = new ProgressReporter((p) =>
      this.report(fs, 'downloading', { progress: p }).catch(() => undefined),
    );
    try {
      const r = await this.agent.update({
        onEvent: (e) => {
          if (e.id === 'install.progress' && e.phase !== 'verify') progress.update(e.done, e.total);
          if (e.id === 'install.planned') fs.assignment!.slot = e.target;
          emit?.(e);
        },
        // The rollout wants the device's user to confirm: staged whatever the install policy.
        ...(opts.stage || a.confirm ? { stage: true } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        choice: { release: { channel: channelOf(a), manifestPath: a.manifestPath }, tuf, config },
      });
      await progress.flush();
      if (!r.installed) return await this.#alreadyThere(fs, a, result, emit);
      fs.assignment!.slot = r.installed.target;
      fs.assignment!.installedAt = new Date().toISOString();
      const next = r.staged ? 'installing' : 'rebooting';
      await this.report(
        fs,
        next,
        r.staged ? { detail: 'staged: waiting for confirmation on the device' } : {},
        emit,
      );
      return {
        ...result,
        action: r.staged ? 'staged' : 'installed',
        installed: r.installed,
        ...(a.confirm ? { confirm: true } : {}),
      };
    } catch (e) {
      await progress.flush();
      const fe = withContext(`installing ${a.version}`, e);
      if (!TRANSIENT.has(fe.code))
        await this.report(
          fs,
          'failed',
          { errorCode: fe.code, detail: fe.message.slice(0, 1024) },
          emit,
        ).catch(() => undefined);
      throw fe;
    }
  }
}
