/// <reference lib="dom" />
/**
 * The device list: search (id or hardware id) and filters by status, channel, release and tag,
 * 50 devices a page, approve/reject for pending devices (operators).
 */
import type { DeviceSummary, FleetOverview, Page as ApiPage } from '@ferry/protocol';
import { can, get, post, query } from '../api.ts';
import { h, replace } from '../dom.ts';
import { ago, short } from '../format.ts';
import { actionButton, badge, link, table, type Page } from '../ui.ts';

const PAGE_SIZE = 50;

function select(id: string, label: string, options: string[]): HTMLSelectElement {
  return h(
    'select',
    { id, name: id, 'aria-label': label },
    h('option', { value: '' }, `any ${label}`),
    options.map((o) => h('option', { value: o }, o)),
  );
}

/** The device list page. */
export function devicesPage(root: HTMLElement): Page {
  const search = h('input', {
    id: 'dev-search',
    type: 'search',
    placeholder: 'id or hardware id',
    'aria-label': 'Search devices',
    maxlength: 64,
  });
  const status = select('dev-status', 'status', ['accepted', 'pending', 'rejected']);
  const channel = select('dev-channel', 'channel', []);
  const release = select('dev-release', 'release', []);
  const tag = h('input', { id: 'dev-tag', placeholder: 'tag', 'aria-label': 'Tag', maxlength: 64 });
  const total = h('p', { class: 'muted', 'data-testid': 'device-total', role: 'status' });
  const body = h('div');
  const pager = h('div', { class: 'pager' });
  let offset = 0;
  let optionsLoaded = false;
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Device filters' },
    search,
    status,
    channel,
    release,
    tag,
  );
  replace(root, h('h1', {}, 'Devices'), filters, total, body, pager);

  const page: Page = {
    async refresh() {
      if (!optionsLoaded) await loadOptions();
      const q = query({
        search: search.value.trim(),
        status: status.value,
        channel: channel.value,
        release: release.value,
        tag: tag.value.trim(),
        limit: PAGE_SIZE,
        offset,
      });
      const res = await get<ApiPage<DeviceSummary>>(`/devices${q}`);
      total.textContent = `${res.total} device${res.total === 1 ? '' : 's'} match`;
      replace(
        body,
        deviceTable(res.items, () => page.refresh()),
      );
      replace(pager, pagerButtons(res.total));
    },
  };

  async function loadOptions(): Promise<void> {
    const [o, channels] = await Promise.all([
      get<FleetOverview>('/overview'),
      get<Array<{ channel: string }>>('/channels'),
    ]);
    for (const c of channels) channel.append(h('option', { value: c.channel }, c.channel));
    for (const r of o.byRelease)
      if (r.release) release.append(h('option', { value: r.release }, r.release));
    optionsLoaded = true;
  }

  function pagerButtons(n: number): HTMLElement[] {
    const go = (to: number) => () => {
      offset = to;
      void page.refresh();
    };
    const prev = h(
      'button',
      { type: 'button', class: 'secondary', onclick: go(offset - PAGE_SIZE) },
      'Previous',
    );
    const next = h(
      'button',
      { type: 'button', class: 'secondary', onclick: go(offset + PAGE_SIZE) },
      'Next',
    );
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE_SIZE >= n;
    const last = Math.min(n, offset + PAGE_SIZE);
    return [prev, h('span', {}, n ? `${offset + 1}-${last} of ${n}` : ''), next];
  }

  let timer: ReturnType<typeof setTimeout> | undefined;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      offset = 0;
      void page.refresh();
    }, 250);
  };
  filters.addEventListener('input', changed);
  filters.addEventListener('submit', (e) => e.preventDefault());
  return page;
}

function deviceTable(items: DeviceSummary[], done: () => Promise<void>): HTMLTableElement {
  return table(
    'Devices',
    ['device', 'status', 'compatible', 'channel', 'release', 'slot', 'tags', 'last seen', ''],
    items.map((d) => [
      link(`devices/${encodeURIComponent(d.id)}`, short(d.id)),
      badge(d.status),
      d.compatible,
      d.channel,
      d.release,
      d.bootedSlot,
      d.tags.join(', '),
      ago(d.lastSeen),
      d.status === 'pending' && can('operator') ? approval(d.id, done) : null,
    ]),
    { empty: 'No device matches.', testId: 'device-table' },
  );
}

/** Approve and reject buttons for a pending device. */
export function approval(id: string, done: () => Promise<void>): HTMLElement {
  const path = `/devices/${encodeURIComponent(id)}`;
  return h(
    'span',
    {},
    actionButton('Approve', () => post(`${path}/approve`), done, { name: `approve ${id}` }),
    actionButton('Reject', () => post(`${path}/reject`), done, {
      danger: true,
      name: `reject ${id}`,
    }),
  );
}
