/**
 * The device agent: configuration, state, bootloader and booted slot in one place, and the
 * operations the CLI and the daemon offer: status, install, mark, rollback, boot-check.
 */
import { spawn } from 'node:child_process';
import { FerryError, isFerryError, loadKeyring, openSource, type ByteSource } from '@ferry/core';
import type { Bootloader, BootState } from './bootloader.ts';
import { createBootloader } from './bootloaders.ts';
import {
  bootableSlots,
  loadConfig,
  type REBOOT_METHODS,
  type SlotConfig,
  type SystemConfig,
} from './config.ts';
import { detectBootedSlot } from './booted.ts';
import { runHealthChecks, type HealthResult } from './health.ts';
import { installBundle, installRelease, type InstallEvent, type InstallResult } from './install.ts';
import { checkUpdate, openRepoRelease, type ReleaseChoice, type UpdateCheck } from './update.ts';
import type { TufClient } from './tuf-client.ts';
import { FleetSession, type FleetCycleOptions, type FleetCycleResult } from './fleet.ts';
import { execKexec, loadKexec, type KexecPlan } from './kexec.ts';
import { StateStore, type AgentState } from './state.ts';

/** How a reboot reaches the next system: the firmware and bootloader, or kexec. */
export type RebootMethod = (typeof REBOOT_METHODS)[number];

export type AgentEvent =
  | InstallEvent
  | {
      id: 'slot.marked-good' | 'slot.marked-bad' | 'slot.marked-active';
      slot: string;
      bootname: string;
    }
  | { id: 'rollback.detected'; from: string; to: string; reason: string }
  | { id: 'rollback.triggered'; from: string; to: string; reason: string }
  | { id: 'health.result'; check: string; ok: boolean; detail: string; seconds: number }
  | { id: 'update.checked'; check: UpdateCheck }
  | ({ id: 'reboot.started'; method: 'kexec' } & KexecPlan)
  | { id: 'reboot.started'; method: 'firmware' }
  | { id: 'reboot.kexec-failed'; code: string; message: string; fallback: boolean };

/** What `Agent.update` did. */
export interface UpdateResult {
  check: UpdateCheck;
  /** Set when a release was written (committed, or staged when `staged`). */
  installed?: InstallResult;
  staged: boolean;
}

export interface SlotStatus {
  name: string;
  class: string;
  device: string;
  offset: number;
  bootname?: string;
  booted: boolean;
  primary: boolean;
  boot?: BootState;
  record: AgentState['slots'][string] | undefined;
}

export interface StatusReport {
  compatible: string;
  bootloader: string;
  booted?: { slot: string; bootname?: string; source: string };
  /**
   * The bootname the bootloader itself says it started this time, where the backend can tell
   * (`getCurrent`: systemd-boot's LoaderEntrySelected, barebox, efi, custom).
   */
  bootloaderBooted?: string;
  primary?: string;
  highWaterCounter: number;
  installCount: number;
  pendingSlot?: string;
  stagedSlot?: string;
  /** The channel followed: the rebased one, else [update] channel. */
  channel: string;
  repository?: string;
  lastInstall?: AgentState['lastInstall'];
  lastRollback?: AgentState['lastRollback'];
  slots: SlotStatus[];
}

export interface BootCheckResult {
  slot: string;
  result: 'good' | 'bad' | 'degraded';
  checks: HealthResult[];
  fellBackFrom?: string;
}

export class Agent {
  readonly config: SystemConfig;
  readonly state: StateStore;
  readonly bootloader: Bootloader;
  readonly booted: { slot: SlotConfig; source: string } | undefined;

  private constructor(config: SystemConfig, bootloader: Bootloader, booted: Agent['booted']) {
    this.config = config;
    this.state = new StateStore(config.dataDir);
    this.bootloader = bootloader;
    this.booted = booted;
  }

  /** Loads system.toml (under `root`), the bootloader backend and the booted slot. */
  static async open(opts: { configPath?: string; root?: string } = {}): Promise<Agent> {
    const config = await loadConfig({
      ...(opts.configPath ? { path: opts.configPath } : {}),
      ...(opts.root ? { root: opts.root } : {}),
    });
    const booted = await detectBootedSlot(config);
    return new Agent(config, createBootloader(config), booted);
  }

  requireBooted(): SlotConfig {
    if (!this.booted)
      throw new FerryError(
        'BOOTED_SLOT_UNKNOWN',
        'cannot tell which slot is booted: set ferry.slot= on the kernel command line',
      );
    return this.booted.slot;
  }

  /** Resolves `booted`, `other`, a slot name or a bootname to a bootable slot. */
  resolveSlot(which: string): SlotConfig {
    const bootable = bootableSlots(this.config);
    if (which === 'booted') return this.requireBooted();
    if (which === 'other') {
      const others = bootable.filter((s) => s.name !== this.requireBooted().name);
      if (others.length !== 1)
        throw new FerryError(
          'USAGE',
          `'other' is ambiguous with ${bootable.length} bootable slots: name the slot`,
        );
      return others[0]!;
    }
    const s = bootable.find((x) => x.name === which || x.bootname === which);
    if (!s)
      throw new FerryError(
        'BOOTLOADER_SLOT_UNKNOWN',
        `no bootable slot '${which}' (have ${bootable.map((x) => `${x.name}/${x.bootname}`).join(', ')})`,
      );
    return s;
  }

  async status(): Promise<StatusReport> {
    const s = await this.state.load();
    const primary = await this.bootloader.getPrimary();
    // A cross-check for the reader: an unreadable answer leaves the field out, not the report.
    const current = await this.bootloader.getCurrent?.().catch(() => undefined);
    const slots: SlotStatus[] = [];
    for (const c of this.config.slots)
      slots.push({
        name: c.name,
        class: c.class,
        device: c.device,
        offset: c.offset,
        ...(c.bootname
          ? { bootname: c.bootname, boot: await this.bootloader.getState(c.bootname) }
          : {}),
        booted: this.booted?.slot.name === c.name,
        primary: c.bootname !== undefined && c.bootname === primary,
        record: s.slots[c.name],
      });
    return {
      compatible: this.config.compatible,
      bootloader: this.bootloader.name,
      ...(this.booted
        ? {
            booted: {
              slot: this.booted.slot.name,
              ...(this.booted.slot.bootname ? { bootname: this.booted.slot.bootname } : {}),
              source: this.booted.source,
            },
          }
        : {}),
      ...(current ? { bootloaderBooted: current } : {}),
      ...(primary ? { primary } : {}),
      highWaterCounter: s.highWaterCounter,
      installCount: s.installCount,
      ...(s.pendingSlot ? { pendingSlot: s.pendingSlot } : {}),
      ...(s.stagedSlot ? { stagedSlot: s.stagedSlot } : {}),
      channel: s.channel ?? this.config.update.channel,
      ...(this.config.update.repository ? { repository: this.config.update.repository } : {}),
      ...(s.lastInstall ? { lastInstall: s.lastInstall } : {}),
      ...(s.lastRollback ? { lastRollback: s.lastRollback } : {}),
      slots,
    };
  }

  /** Installs from a source, or from a path or URL (opened and closed here). */
  async install(
    from: ByteSource | string,
    onEvent?: (e: AgentEvent) => void,
  ): Promise<InstallResult> {
    const keyring = await loadKeyring(this.config.keyring);
    const source = typeof from === 'string' ? openSource(from) : from;
    try {
      return await installBundle({
        config: this.config,
        source,
        keyring,
        bootloader: this.bootloader,
        booted: this.requireBooted(),
        state: this.state,
        ...(onEvent ? { onEvent } : {}),
      });
    } finally {
      if (typeof from === 'string') await source.close();
    }
  }

  /**
   * Asks the repository for the newest release of the followed channel (TUF refresh, channel
   * index, signed manifest). Nothing is written but trusted metadata.
   */
  async check(onEvent?: (e: AgentEvent) => void): Promise<UpdateCheck> {
    const { check } = await checkUpdate({
      config: this.config,
      keyring: await loadKeyring(this.config.keyring),
      state: await this.state.load(),
      booted: this.booted?.slot,
    });
    onEvent?.({ id: 'update.checked', check });
    return check;
  }

  /**
   * Checks, then installs the newest release if there is one, fetching only the chunks no local
   * slot holds. With `stage`, the slot is written and verified but not made primary.
   */
  async update(
    opts: {
      onEvent?: (e: AgentEvent) => void;
      stage?: boolean;
      signal?: AbortSignal;
      /** Install this release rather than the newest (the fleet server's assignment). */
      choice?: { release: ReleaseChoice; tuf: TufClient; config: SystemConfig };
    } = {},
  ): Promise<UpdateResult> {
    const keyring = await loadKeyring(this.config.keyring);
    const booted = this.requireBooted();
    const state = await this.state.load();
    const config = opts.choice?.config ?? this.config;
    const { check, found, tuf } = await checkUpdate(
      { config, keyring, state, booted },
      opts.choice ? { choice: opts.choice.release, tuf: opts.choice.tuf } : {},
    );
    opts.onEvent?.({ id: 'update.checked', check });
    if (!check.available) return { check, staged: false };
    const release = await openRepoRelease({ config, state, booted }, tuf, found, opts.signal);
    try {
      const installed = await installRelease({
        config: this.config,
        release,
        keyring,
        bootloader: this.bootloader,
        booted,
        state: this.state,
        ...(opts.stage ? { stage: true } : {}),
        ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
      });
      return { check, installed, staged: installed.staged };
    } finally {
      await release.close();
    }
  }

  /** One cycle with the fleet server of [server] (fleet.ts): enrol, report, check in, install. */
  async fleetCycle(opts: FleetCycleOptions = {}): Promise<FleetCycleResult> {
    return new FleetSession(this).cycle(opts);
  }

  /** Makes the staged slot primary (the commit point a staged update waited for). */
  async activateStaged(): Promise<{ slot: string; bootname: string }> {
    const s = await this.state.load();
    const slot = s.stagedSlot ? this.config.slots.find((x) => x.name === s.stagedSlot) : undefined;
    if (!slot?.bootname || s.slots[slot.name]?.status !== 'installed')
      throw new FerryError('UPDATE_NOTHING_STAGED', 'no staged update to activate');
    await this.bootloader.setPrimary(slot.bootname, this.config.bootAttempts);
    await this.state.update((st) => {
      st.pendingSlot = slot.name;
      delete st.stagedSlot;
    });
    return { slot: slot.name, bootname: slot.bootname };
  }

  /** Follows `channel` from now on (kept in the state; [update] channel stays the default). */
  async rebase(channel: string): Promise<void> {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(channel))
      throw new FerryError('USAGE', `not a channel name: ${JSON.stringify(channel)}`);
    await this.state.update((s) => {
      s.channel = channel;
    });
  }

  /** mark-good / mark-bad / mark-active on a bootable slot. Marking the booted slot good commits it. */
  async mark(
    which: string,
    action: 'good' | 'bad' | 'active',
    onEvent?: (e: AgentEvent) => void,
  ): Promise<SlotConfig> {
    const slot = this.resolveSlot(which);
    const bootname = slot.bootname!;
    const at = new Date().toISOString();
    if (action === 'active') await this.bootloader.setPrimary(bootname, this.config.bootAttempts);
    else await this.bootloader.setState(bootname, action);
    await this.state.update((s) => {
      const rec = (s.slots[slot.name] ??= { status: 'unknown' });
      if (action === 'good') rec.markedGoodAt = at;
      if (action === 'bad') rec.markedBadAt = at;
      if (action === 'good' && s.pendingSlot === slot.name && this.booted?.slot.name === slot.name)
        delete s.pendingSlot;
    });
    // Committing the running release raises the floor for downgrades.
    const counter = (await this.state.load()).slots[slot.name]?.release?.releaseCounter;
    if (action === 'good' && this.booted?.slot.name === slot.name && counter !== undefined)
      await this.state.raiseHighWater(counter);
    onEvent?.({ id: `slot.marked-${action}`, slot: slot.name, bootname });
    return slot;
  }

  /** Makes the newest other good slot primary (committed, no trial). */
  async rollback(onEvent?: (e: AgentEvent) => void): Promise<{ from: string; to: string }> {
    const booted = this.requireBooted();
    const s = await this.state.load();
    const candidates: SlotConfig[] = [];
    for (const c of bootableSlots(this.config))
      if (
        c.name !== booted.name &&
        s.slots[c.name]?.status === 'installed' &&
        (await this.bootloader.getState(c.bootname!)).state === 'good'
      )
        candidates.push(c);
    candidates.sort((a, b) =>
      (s.slots[b.name]?.installedAt ?? '') < (s.slots[a.name]?.installedAt ?? '') ? -1 : 1,
    );
    const to = candidates[0];
    if (!to)
      throw new FerryError(
        'ROLLBACK_NO_TARGET',
        `no other good, installed slot to roll back to from ${booted.name}`,
      );
    await this.bootloader.setPrimary(to.bootname!, this.config.bootAttempts);
    await this.bootloader.setState(to.bootname!, 'good');
    const reason = 'manual rollback';
    await this.state.update((st) => {
      st.lastRollback = { at: new Date().toISOString(), from: booted.name, to: to.name, reason };
    });
    onEvent?.({ id: 'rollback.triggered', from: booted.name, to: to.name, reason });
    return { from: booted.name, to: to.name };
  }

  /**
   * After boot: notice a fallback, run the health checks, then mark the booted slot good, or mark it
   * bad and reboot into the fallback. A failing slot with no good fallback is kept (degraded):
   * marking the only bootable system bad would brick the device.
   */
  async bootCheck(opts: {
    reboot: boolean;
    onEvent?: (e: AgentEvent) => void;
  }): Promise<BootCheckResult> {
    const emit = opts.onEvent ?? (() => undefined);
    const booted = this.requireBooted();
    const fellBackFrom = await this.#noticeFallback(booted, emit);
    const checks = await runHealthChecks(
      this.config.health.dir,
      this.config.health.timeoutSeconds,
      { FERRY_SLOT: booted.name, FERRY_BOOTNAME: booted.bootname ?? '' },
    );
    for (const c of checks)
      emit({ id: 'health.result', check: c.name, ok: c.ok, detail: c.detail, seconds: c.seconds });
    const base = { slot: booted.name, checks, ...(fellBackFrom ? { fellBackFrom } : {}) };
    if (checks.every((c) => c.ok)) {
      await this.mark('booted', 'good', emit);
      await this.state.update((s) => {
        (s.slots[booted.name] ??= { status: 'unknown' }).bootedAt = new Date().toISOString();
      });
      return { ...base, result: 'good' };
    }
    const fallback = await this.#goodFallback(booted);
    if (!fallback) return { ...base, result: 'degraded' };
    await this.mark('booted', 'bad', emit);
    const failed = checks.find((c) => !c.ok)!;
    const reason = `health check ${failed.name} failed: ${failed.detail}`;
    await this.state.update((s) => {
      // The trial is decided here; the next boot must not report it again as a fallback.
      if (s.pendingSlot === booted.name) delete s.pendingSlot;
      s.lastRollback = {
        at: new Date().toISOString(),
        from: booted.name,
        to: fallback.name,
        reason,
      };
    });
    emit({ id: 'rollback.triggered', from: booted.name, to: fallback.name, reason });
    if (opts.reboot) await reboot();
    return { ...base, result: 'bad' };
  }

  /** Reboots now, by [system] reboot-method (see `reboot`). */
  async rebootNow(): Promise<void> {
    await this.reboot();
  }

  /**
   * Reboots into the slot the bootloader boots next. `firmware`: FERRY_REBOOT_COMMAND (default
   * `systemctl reboot`). `kexec`: the next slot's kernel is loaded from its image and started
   * without firmware and bootloader, its boot attempt counted by the backend (kexec.ts). Without
   * `method`, [system] reboot-method decides, and a kexec that fails before it starts falls back
   * to the firmware when [kexec] fallback is true; an explicit `kexec` never falls back.
   */
  async reboot(opts: { method?: RebootMethod; onEvent?: (e: AgentEvent) => void } = {}) {
    const emit = opts.onEvent ?? (() => undefined);
    const method = opts.method ?? this.config.rebootMethod;
    if (method === 'kexec') {
      const fallback = opts.method === undefined && this.config.kexec.fallback;
      try {
        const dev = {
          config: this.config,
          bootloader: this.bootloader,
          state: await this.state.load(),
        };
        const plan = await loadKexec(dev);
        emit({ id: 'reboot.started', method: 'kexec', ...plan });
        await execKexec(dev, plan);
      } catch (e) {
        const known = isFerryError(e) && e.code !== 'INTERNAL';
        if (!fallback || !known) throw e;
        emit({ id: 'reboot.kexec-failed', code: e.code, message: e.message, fallback: true });
      }
    }
    emit({ id: 'reboot.started', method: 'firmware' });
    await reboot();
  }

  async #goodFallback(booted: SlotConfig): Promise<SlotConfig | undefined> {
    for (const c of bootableSlots(this.config))
      if (c.name !== booted.name && (await this.bootloader.getState(c.bootname!)).state === 'good')
        return c;
    return undefined;
  }

  /** The slot installed last was pending its first good boot, but another one is running: it fell back. */
  async #noticeFallback(
    booted: SlotConfig,
    emit: (e: AgentEvent) => void,
  ): Promise<string | undefined> {
    const s = await this.state.load();
    const pending = s.pendingSlot;
    if (!pending || pending === booted.name) return undefined;
    const slot = this.config.slots.find((c) => c.name === pending);
    const reason = `${pending} did not boot to a good state (boot attempts ran out or it was marked bad)`;
    if (slot?.bootname) await this.bootloader.setState(slot.bootname, 'bad');
    await this.state.update((st) => {
      delete st.pendingSlot;
      st.lastRollback = { at: new Date().toISOString(), from: pending, to: booted.name, reason };
      if (st.slots[pending]) st.slots[pending].markedBadAt = new Date().toISOString();
    });
    emit({ id: 'rollback.detected', from: pending, to: booted.name, reason });
    return pending;
  }
}

/** Reboots through FERRY_REBOOT_COMMAND (space-separated) or `systemctl reboot`. */
async function reboot(): Promise<void> {
  const [cmd, ...args] = (process.env.FERRY_REBOOT_COMMAND ?? 'systemctl reboot')
    .split(' ')
    .filter(Boolean);
  await new Promise<void>((resolve, reject) => {
    const p = spawn(cmd!, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0 ? resolve() : reject(new FerryError('IO', `${cmd} exited with ${code}`)),
    );
  });
}
