/// <reference lib="dom" />
/** The audit log (admin role): every admin action, newest first, 50 a page. */
import type { AuditEntry, Page as ApiPage } from '@ferry/protocol';
import { get, query } from '../api.ts';
import { h, replace } from '../dom.ts';
import { time } from '../format.ts';
import { table, type Page } from '../ui.ts';

const PAGE_SIZE = 50;

/** The audit page. */
export function auditPage(root: HTMLElement): Page {
  let offset = 0;
  const body = h('div');
  const pager = h('div', { class: 'pager' });
  const total = h('p', { class: 'muted', 'data-testid': 'audit-total' });
  replace(root, h('h1', {}, 'Audit log'), total, body, pager);
  const page: Page = {
    async refresh() {
      const res = await get<ApiPage<AuditEntry>>(`/audit${query({ limit: PAGE_SIZE, offset })}`);
      total.textContent = `${res.total} entries`;
      replace(
        body,
        table(
          'Audit log',
          ['time', 'user', 'action', 'target', 'detail'],
          res.items.map((e) => [
            time(e.at),
            e.username,
            h('code', {}, e.action),
            e.target,
            e.detail === null ? null : h('code', { class: 'detail' }, JSON.stringify(e.detail)),
          ]),
          { empty: 'No entries.', testId: 'audit' },
        ),
      );
      const go = (to: number) => () => {
        offset = Math.max(0, to);
        void page.refresh();
      };
      const prev = h(
        'button',
        { type: 'button', class: 'secondary', onclick: go(offset - PAGE_SIZE) },
        'Newer',
      );
      const next = h(
        'button',
        { type: 'button', class: 'secondary', onclick: go(offset + PAGE_SIZE) },
        'Older',
      );
      prev.disabled = offset === 0;
      next.disabled = offset + PAGE_SIZE >= res.total;
      replace(pager, prev, next);
    },
  };
  return page;
}
