/// <reference lib="dom" />
/**
 * One device: inventory, slots (the booted one marked), attributes, install history (one row
 * per rollout: its last state and when it started and ended) and the event timeline.
 */
import type { DeviceDetail, DeviceEvent, RolloutView } from '@ferry/protocol';
import { can, get } from '../api.ts';
import { h, replace } from '../dom.ts';
import { time } from '../format.ts';
import { FINAL_STATES } from '../states.ts';
import { approval } from './devices.ts';
import { badge, link, section, table, type Page } from '../ui.ts';

function facts(d: DeviceDetail): HTMLElement {
  const row = (k: string, v: Node | string | number | null) => [
    h('dt', {}, k),
    h('dd', {}, v ?? '—'),
  ];
  return h(
    'dl',
    { class: 'facts' },
    row('id', h('code', {}, d.id)),
    row('status', badge(d.status)),
    row('compatible', d.compatible),
    row('hardware id', d.hardwareId),
    row('channel', d.channel),
    row('tags', d.tags.join(', ') || '—'),
    row('release', d.release ? `${d.release} (counter ${d.releaseCounter ?? '?'})` : null),
    row('booted slot', d.bootedSlot),
    row('agent', d.agentVersion),
    row('last seen', time(d.lastSeen)),
    row('enrolled', time(d.createdAt)),
  );
}

/** Per rollout: the first and last event and the state it reached, newest first. */
export function installHistory(events: DeviceEvent[]): Array<{
  rolloutId: string;
  state: string;
  started: number;
  ended: number | null;
}> {
  const by = new Map<string, DeviceEvent[]>();
  for (const e of events) if (e.rolloutId) by.set(e.rolloutId, [...(by.get(e.rolloutId) ?? []), e]);
  return [...by.entries()]
    .map(([rolloutId, es]) => {
      const sorted = es.sort((a, b) => a.at - b.at);
      const last = sorted.at(-1)!;
      return {
        rolloutId,
        state: last.state,
        started: sorted[0]!.at,
        ended: FINAL_STATES.includes(last.state) ? last.at : null,
      };
    })
    .sort((a, b) => b.started - a.started);
}

function timeline(events: DeviceEvent[], names: Map<string, string>): HTMLElement {
  if (events.length === 0) return h('p', {}, 'No events.');
  return h(
    'ol',
    { class: 'timeline', 'data-testid': 'timeline' },
    events.map((e) =>
      h(
        'li',
        { 'data-state': e.state },
        h('time', { datetime: new Date(e.at).toISOString() }, time(e.at)),
        badge(e.state),
        e.progress !== null ? h('span', {}, ` ${e.progress} %`) : null,
        e.rolloutId
          ? h(
              'span',
              { class: 'muted' },
              ' rollout ',
              link(`rollouts/${e.rolloutId}`, names.get(e.rolloutId) ?? e.rolloutId),
            )
          : null,
        e.detail ? h('span', { class: 'muted' }, ` ${e.detail}`) : null,
      ),
    ),
  );
}

/** The device detail page for `#/devices/:id`. */
export function devicePage(root: HTMLElement, params: string[]): Page {
  const id = params[0] ?? '';
  const body = h('div');
  replace(root, h('p', {}, link('devices', '← all devices')), body);
  const page: Page = {
    async refresh() {
      const [d, rollouts] = await Promise.all([
        get<DeviceDetail>(`/devices/${encodeURIComponent(id)}`),
        get<RolloutView[]>('/rollouts'),
      ]);
      // Events carry rollout ids only; the newest 100 rollouts give most of them a name.
      const names = new Map(rollouts.map((r) => [r.id, r.name]));
      const slots = table(
        'Slots',
        ['slot', 'version', 'release counter', 'health', ''],
        d.slots.map((s) => [
          s.name,
          s.version,
          s.releaseCounter,
          badge(s.health),
          s.name === d.bootedSlot ? h('strong', {}, 'booted') : null,
        ]),
        { empty: 'No slots reported.', testId: 'slots' },
      );
      const history = table(
        'Install history',
        ['rollout', 'result', 'started', 'ended'],
        installHistory(d.events).map((r) => [
          link(`rollouts/${r.rolloutId}`, names.get(r.rolloutId) ?? r.rolloutId),
          badge(r.state),
          time(r.started),
          time(r.ended),
        ]),
        { empty: 'No installs yet.', testId: 'install-history' },
      );
      const attrs = Object.entries(d.attributes);
      replace(
        body,
        h('h1', {}, `Device ${d.id.slice(0, 12)}`),
        d.status === 'pending' && can('operator') ? approval(d.id, () => page.refresh()) : null,
        h(
          'div',
          { class: 'grid' },
          section('Inventory', facts(d)),
          section(
            'Slots',
            slots,
            h(
              'p',
              { class: 'muted' },
              `Booted from slot ${d.bootedSlot ?? 'unknown'} at the last check-in.`,
            ),
          ),
        ),
        section('Install history', history),
        section(
          'Attributes',
          table('Attributes', ['name', 'value'], attrs, { empty: 'No attributes.' }),
        ),
        section('Events', timeline(d.events, names)),
      );
    },
  };
  return page;
}
