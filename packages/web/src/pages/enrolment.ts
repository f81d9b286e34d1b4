/// <reference lib="dom" />
/**
 * Enrolment: the enrolment tokens (operators create them, the token shown once with a copy
 * button, and revoke them) and the devices that enrolled without a token and wait for an
 * operator to approve or reject them.
 */
import type {
  DeviceSummary,
  EnrolmentTokenCreated,
  EnrolmentTokenView,
  Page as ApiPage,
} from '@ferry/protocol';
import { can, get, post } from '../api.ts';
import { h, replace } from '../dom.ts';
import { ago, short, time } from '../format.ts';
import { commaList, field, formStatus, input, onSubmit, whenChanged } from '../forms.ts';
import { approval } from './devices.ts';
import { actionButton, badge, link, section, table, type Page } from '../ui.ts';

/** Shows a new token once, with a copy button; `Done` removes it from the page. */
function secretBox(box: HTMLElement, t: EnrolmentTokenCreated): void {
  const value = h('input', {
    id: 'new-token',
    readonly: true,
    value: t.token,
    size: 40,
    'data-testid': 'new-token',
    'aria-describedby': 'new-token-hint',
  });
  const copied = h('span', { role: 'status', class: 'muted' });
  const copy = h('button', { type: 'button' }, 'Copy');
  copy.addEventListener('click', () => {
    value.select();
    navigator.clipboard
      .writeText(t.token)
      .then(() => (copied.textContent = 'Copied.'))
      .catch(() => (copied.textContent = 'Copy failed: press Ctrl+C, the token is selected.'));
  });
  const done = h('button', { type: 'button', class: 'secondary' }, 'Done');
  done.addEventListener('click', () => box.replaceChildren());
  replace(
    box,
    h(
      'div',
      { class: 'secret', role: 'group', 'aria-label': 'New enrolment token' },
      h('label', { for: 'new-token' }, `Token ${t.id}`),
      h(
        'p',
        { id: 'new-token-hint', class: 'muted' },
        `Copy it now: it is not shown again. ${t.uses} use(s), channel ${t.channel}` +
          `${t.tags.length ? `, tags ${t.tags.join(', ')}` : ''}, valid until ${time(t.expiresAt)}.`,
      ),
      h('div', { class: 'actions' }, value, copy, done, copied),
    ),
  );
  value.focus();
  value.select();
}

function tokenForm(secret: HTMLElement, created: () => Promise<void>): HTMLFormElement {
  const uses = input('tok-uses', {
    type: 'number',
    min: 1,
    max: 1000000,
    value: 10,
    required: true,
  });
  const hours = input('tok-hours', {
    type: 'number',
    min: 1,
    max: 8760,
    value: 24,
    required: true,
  });
  const channel = input('tok-channel', { value: 'stable', required: true, maxlength: 64 });
  const tags = input('tok-tags', { placeholder: 'e.g. lab, eu', maxlength: 512 });
  const msg = formStatus();
  const form = h(
    'form',
    { class: 'token-form', 'aria-label': 'Create an enrolment token' },
    h(
      'div',
      { class: 'fields' },
      field('tok-uses', 'Uses', uses),
      field('tok-hours', 'Valid for (hours)', hours),
      field('tok-channel', 'Channel', channel),
      field('tok-tags', 'Tags', tags, 'comma-separated; devices enrolled with it get them'),
    ),
    h('button', { type: 'submit' }, 'Create token'),
    msg,
  );
  onSubmit(form, msg, 'Creating…', async () => {
    const t = await post<EnrolmentTokenCreated>('/enrolment-tokens', {
      uses: Number(uses.value),
      expiresInHours: Number(hours.value),
      channel: channel.value.trim(),
      tags: commaList(tags.value),
    });
    secretBox(secret, t);
    await created();
    return `Token ${t.id} created.`;
  });
  return form;
}

function tokenTable(ts: EnrolmentTokenView[], done: () => Promise<void>): HTMLTableElement {
  const head = [
    'token',
    'channel',
    'tags',
    'uses left',
    'expires',
    'state',
    'created by',
    'created',
  ];
  return table(
    'Enrolment tokens',
    can('operator') ? [...head, ''] : head,
    ts.map((t) => [
      h('code', {}, t.id),
      t.channel,
      t.tags.join(', '),
      t.usesLeft,
      time(t.expiresAt),
      badge(t.state),
      t.createdBy,
      time(t.createdAt),
      ...(can('operator')
        ? [
            actionButton('Revoke', () => post(`/enrolment-tokens/${t.id}/revoke`), done, {
              danger: true,
              name: `revoke token ${t.id}`,
              confirm: `Revoke token ${t.id}? Devices can no longer enrol with it.`,
            }),
          ]
        : []),
    ]),
    { empty: 'No enrolment token.', testId: 'tokens' },
  );
}

function pendingTable(ds: DeviceSummary[], done: () => Promise<void>): HTMLTableElement {
  return table(
    'Devices awaiting approval',
    [
      'device',
      'compatible',
      'hardware id',
      'enrolled',
      'last seen',
      ...(can('operator') ? [''] : []),
    ],
    ds.map((d) => [
      link(`devices/${encodeURIComponent(d.id)}`, short(d.id)),
      d.compatible,
      d.hardwareId,
      time(d.createdAt),
      ago(d.lastSeen),
      ...(can('operator') ? [approval(d.id, done)] : []),
    ]),
    { empty: 'No device is waiting.', testId: 'pending-devices' },
  );
}

/** The enrolment page (`#/enrolment`). */
export function enrolmentPage(root: HTMLElement): Page {
  const tokens = h('div');
  const pending = h('div');
  const pendingTotal = h('p', { class: 'muted', 'data-testid': 'pending-total' });
  const secret = h('div', { 'aria-live': 'polite' });
  const showTokens = whenChanged<EnrolmentTokenView[]>((ts) =>
    replace(
      tokens,
      tokenTable(ts, () => page.refresh()),
    ),
  );
  const showPending = whenChanged<ApiPage<DeviceSummary>>((p) => {
    pendingTotal.textContent = `${p.total} device${p.total === 1 ? '' : 's'} waiting`;
    replace(
      pending,
      pendingTable(p.items, () => page.refresh()),
    );
  });
  const page: Page = {
    async refresh() {
      const [ts, ps] = await Promise.all([
        get<EnrolmentTokenView[]>('/enrolment-tokens'),
        get<ApiPage<DeviceSummary>>('/devices?status=pending&limit=100'),
      ]);
      showTokens(ts);
      showPending(ps);
    },
  };
  replace(
    root,
    h('h1', {}, 'Enrolment'),
    can('operator')
      ? section(
          'New enrolment token',
          tokenForm(secret, () => page.refresh()),
          secret,
        )
      : null,
    section('Enrolment tokens', tokens),
    section('Devices awaiting approval', pendingTotal, pending),
  );
  return page;
}
