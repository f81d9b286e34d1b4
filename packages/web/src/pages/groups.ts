/// <reference lib="dom" />
/**
 * Saved groups: named device filters a rollout can target. Operators create one from the
 * fields of a device filter (with a live count of the devices it selects now) and delete
 * them; a rollout made from a group keeps its own copy of the filter.
 */
import type { DeviceFilter, GroupView, Page as ApiPage, DeviceSummary } from '@ferry/protocol';
import { can, get, post } from '../api.ts';
import { h, replace } from '../dom.ts';
import { time } from '../format.ts';
import { choice, commaList, field, formStatus, input, onSubmit, whenChanged } from '../forms.ts';
import { actionButton, section, table, type Page } from '../ui.ts';

/** `site=lab, rack=3` → `{ site: 'lab', rack: '3' }`; entries without `=` are ignored. */
function attributes(text: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return Object.keys(out).length ? out : undefined;
}

/** The query string GET /devices takes for `f` (it has no attribute filter). */
function deviceQuery(f: DeviceFilter): string {
  const q = new URLSearchParams({ limit: '1' });
  for (const k of ['compatible', 'channel', 'status', 'release', 'search'] as const)
    if (f[k]) q.set(k, f[k]);
  for (const t of f.tags ?? []) q.append('tag', t);
  return q.toString();
}

function groupForm(created: () => Promise<void>): HTMLFormElement {
  const name = input('grp-name', { required: true, maxlength: 64 });
  const compatible = input('grp-compatible', { maxlength: 128, placeholder: 'any' });
  const channel = input('grp-channel', { maxlength: 64, placeholder: 'any' });
  const tags = input('grp-tags', { maxlength: 512, placeholder: 'e.g. lab, eu' });
  const status = choice('grp-status', [
    ['', 'any status'],
    ['accepted', 'accepted'],
    ['pending', 'pending'],
    ['rejected', 'rejected'],
  ]);
  const release = input('grp-release', { maxlength: 64, placeholder: 'any' });
  const attrs = input('grp-attributes', { maxlength: 1024, placeholder: 'e.g. site=lab' });
  const search = input('grp-search', { maxlength: 64, placeholder: 'id or hardware id' });
  const preview = h('p', { class: 'muted', role: 'status', 'data-testid': 'group-preview' });
  const msg = formStatus();
  const filter = (): DeviceFilter => {
    const f: DeviceFilter = {};
    const set = (k: 'compatible' | 'channel' | 'release' | 'search', el: HTMLInputElement) => {
      if (el.value.trim()) f[k] = el.value.trim();
    };
    set('compatible', compatible);
    set('channel', channel);
    set('release', release);
    set('search', search);
    if (status.value) f.status = status.value as DeviceFilter['status'];
    if (commaList(tags.value).length) f.tags = commaList(tags.value);
    const a = attributes(attrs.value);
    if (a) f.attributes = a;
    return f;
  };
  const form = h(
    'form',
    { class: 'group-form', 'aria-label': 'Save a group' },
    h(
      'div',
      { class: 'fields' },
      field('grp-name', 'Name', name),
      field('grp-compatible', 'Compatible', compatible),
      field('grp-channel', 'Channel', channel),
      field('grp-tags', 'Tags (all of)', tags, 'comma-separated'),
      field('grp-status', 'Status', status),
      field('grp-release', 'Release', release),
      field('grp-attributes', 'Attributes', attrs, 'key=value, comma-separated'),
      field('grp-search', 'Id or hardware id contains', search),
    ),
    preview,
    h('button', { type: 'submit' }, 'Save group'),
    msg,
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  form.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const f = filter();
      get<ApiPage<DeviceSummary>>(`/devices?${deviceQuery(f)}`)
        .then((r) => {
          preview.textContent =
            `${r.total} device${r.total === 1 ? '' : 's'} match now` +
            (f.attributes ? ' (not counting attributes)' : '');
        })
        .catch(() => (preview.textContent = ''));
    }, 250);
  });
  onSubmit(form, msg, 'Saving…', async () => {
    const g = await post<GroupView>('/groups', { name: name.value.trim(), filter: filter() });
    form.reset();
    preview.textContent = '';
    await created();
    return `Group ${g.name} saved.`;
  });
  return form;
}

function groupTable(gs: GroupView[], done: () => Promise<void>): HTMLTableElement {
  const head = ['group', 'filter', 'created'];
  return table(
    'Saved groups',
    can('operator') ? [...head, ''] : head,
    gs.map((g) => [
      g.name,
      h('code', {}, JSON.stringify(g.filter)),
      time(g.createdAt),
      ...(can('operator')
        ? [
            actionButton(
              'Delete',
              () => post(`/groups/${encodeURIComponent(g.name)}/delete`),
              done,
              {
                danger: true,
                name: `delete group ${g.name}`,
                confirm: `Delete group ${g.name}? Rollouts made from it keep their filter.`,
              },
            ),
          ]
        : []),
    ]),
    { empty: 'No saved group.', testId: 'groups' },
  );
}

/** The groups page (`#/groups`). */
export function groupsPage(root: HTMLElement): Page {
  const list = h('div');
  const show = whenChanged<GroupView[]>((gs) =>
    replace(
      list,
      groupTable(gs, () => page.refresh()),
    ),
  );
  const page: Page = {
    async refresh() {
      show(await get<GroupView[]>('/groups'));
    },
  };
  replace(
    root,
    h('h1', {}, 'Groups'),
    can('operator')
      ? section(
          'New group',
          groupForm(() => page.refresh()),
        )
      : null,
    section('Saved groups', list),
  );
  return page;
}
