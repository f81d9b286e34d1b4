/// <reference lib="dom" />
/**
 * One rollout as a card: state, phase progress (devices by update state out of the devices
 * targeted in the opened phases), failure rate against the threshold, the pause reason, and
 * the pause/resume/cancel buttons for operators.
 */
import type { RolloutView } from '@ferry/protocol';
import { can, post } from '../api.ts';
import { stackedBar } from '../charts.ts';
import { h } from '../dom.ts';
import { percent } from '../format.ts';
import { actionButton, badge, link } from '../ui.ts';

const IN_FLIGHT = ['assigned', 'downloading', 'installing', 'rebooting'] as const;

/** Devices of a rollout that have started but not finished. */
export function inFlight(r: RolloutView): number {
  return IN_FLIGHT.reduce((a, s) => a + r.counts[s], 0);
}

function phaseLine(r: RolloutView): string {
  const open = r.phases[r.phase] ?? 100;
  return `phase ${r.phase + 1} of ${r.phases.length} (${open} %): ${r.phases.map((p) => `${p} %`).join(' → ')}`;
}

function counts(r: RolloutView): HTMLElement {
  const item = (label: string, n: number, key: string) =>
    h('li', {}, h('span', { class: 'count', 'data-count': key }, n), ` ${label}`);
  return h(
    'ul',
    { class: 'counts' },
    item('committed', r.counts.committed, 'committed'),
    item('in flight', inFlight(r), 'in-flight'),
    item('failed', r.counts.failed, 'failed'),
    item('rolled back', r.counts['rolled-back'], 'rolled-back'),
    item('targeted in phase', r.targetedInPhase, 'targeted-in-phase'),
    item('targeted', r.targeted, 'targeted'),
  );
}

function actions(r: RolloutView, done: () => Promise<void>): HTMLElement | null {
  if (!can('operator')) return null;
  const act = (verb: 'pause' | 'resume' | 'cancel', danger = false) =>
    actionButton(
      verb[0]!.toUpperCase() + verb.slice(1),
      () => post(`/rollouts/${encodeURIComponent(r.id)}/${verb}`),
      done,
      {
        danger,
        name: `${verb} ${r.name}`,
        ...(verb === 'cancel' ? { confirm: `Cancel rollout ${r.name}?` } : {}),
      },
    );
  const buttons = [
    r.state === 'running' ? act('pause') : null,
    r.state === 'paused' ? act('resume') : null,
    r.state !== 'cancelled' ? act('cancel', true) : null,
  ];
  return h('div', { class: 'actions' }, buttons);
}

/** The card; with `done`, operators get action buttons that call it after each action. */
export function rolloutSummary(r: RolloutView, done?: () => Promise<void>): HTMLElement {
  const bad = r.failureRate > r.failureThreshold;
  return h(
    'article',
    { class: 'rollout', 'data-rollout': r.name, 'data-rollout-id': r.id, 'data-state': r.state },
    h(
      'header',
      {},
      h('h3', {}, link(`rollouts/${encodeURIComponent(r.id)}`, r.name)),
      badge(r.state),
      h('span', { class: 'muted' }, `${r.compatible} ${r.version} · channel ${r.channel}`),
    ),
    h('p', { class: 'phase' }, phaseLine(r)),
    stackedBar(
      `Devices of ${r.name}`,
      [
        { label: 'committed', value: r.counts.committed, tone: 'ok' },
        { label: 'in flight', value: inFlight(r), tone: 'info' },
        { label: 'failed', value: r.counts.failed, tone: 'bad' },
        { label: 'rolled back', value: r.counts['rolled-back'], tone: 'warn' },
      ],
      r.targetedInPhase,
    ),
    counts(r),
    h(
      'p',
      { class: bad ? 'rate rate-bad' : 'rate' },
      'Failure rate ',
      h('strong', { 'data-testid': 'failure-rate' }, percent(r.failureRate)),
      ` (pauses above ${percent(r.failureThreshold)} after ${r.minReports} reports)`,
    ),
    r.pauseReason
      ? h('p', { class: 'pause-reason', role: 'note' }, `Paused: ${r.pauseReason}`)
      : null,
    done ? actions(r, done) : null,
  );
}
