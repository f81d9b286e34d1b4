/// <reference lib="dom" />
/**
 * Fleet overview: device totals, devices by release and by status as bar charts, and the
 * rollouts that are running or paused with their progress.
 */
import type { FleetOverview, RolloutView } from '@ferry/protocol';
import { get } from '../api.ts';
import { barChart } from '../charts.ts';
import { h, replace } from '../dom.ts';
import { rolloutSummary } from './rollout-card.ts';
import { section, stat, type Page } from '../ui.ts';

const STATUS_TONE: Record<string, string> = {
  accepted: 'ok',
  pending: 'warn',
  rejected: 'bad',
};

/** The overview page. */
export function overviewPage(root: HTMLElement): Page {
  const stats = h('div', { class: 'stats' });
  const byRelease = h('div');
  const byStatus = h('div');
  const active = h('div');
  replace(
    root,
    h('h1', {}, 'Fleet overview'),
    stats,
    h(
      'div',
      { class: 'grid' },
      section('Devices by release', byRelease),
      section('Devices by status', byStatus),
    ),
    section('Active rollouts', active),
  );
  return {
    async refresh() {
      const [o, rollouts] = await Promise.all([
        get<FleetOverview>('/overview'),
        get<RolloutView[]>('/rollouts'),
      ]);
      replace(
        stats,
        stat('devices', o.devices.total, 'total-devices'),
        stat('accepted', o.devices.byStatus.accepted ?? 0, 'accepted-devices'),
        stat('pending approval', o.devices.byStatus.pending ?? 0, 'pending-devices'),
        stat('seen in the last hour', o.devices.onlineLastHour, 'online-devices'),
        stat('rollouts running', o.rollouts.running, 'running-rollouts'),
        stat('rollouts paused', o.rollouts.paused, 'paused-rollouts'),
      );
      replace(
        byRelease,
        barChart(
          'Devices by release',
          o.byRelease.map((r) => ({ label: r.release ?? 'unknown', value: r.count })),
        ),
      );
      replace(
        byStatus,
        barChart(
          'Devices by status',
          Object.entries(o.devices.byStatus).map(([k, v]) => ({
            label: k,
            value: v,
            ...(STATUS_TONE[k] ? { tone: STATUS_TONE[k] } : {}),
          })),
        ),
      );
      const live = rollouts.filter((r) => r.state === 'running' || r.state === 'paused');
      replace(
        active,
        live.length ? live.map((r) => rolloutSummary(r)) : h('p', {}, 'No rollout is running.'),
      );
    },
  };
}
