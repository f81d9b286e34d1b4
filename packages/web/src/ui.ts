/// <reference lib="dom" />
/**
 * Shared page pieces: the page contract the router drives, tables, state badges, stat cards
 * and action buttons that report API errors in place.
 */
import { ApiError } from './api.ts';
import { h } from './dom.ts';

/** A mounted page: the router calls `refresh` every poll while the page is shown. */
export interface Page {
  refresh(): Promise<void>;
}

/** Builds a page into `root` for the route parameters after its name. */
export type PageFactory = (root: HTMLElement, params: string[]) => Page;

type Cell = Node | string | number | null | undefined;

/** A table with a caption (visually hidden when `hideCaption`), header row and body rows. */
export function table(
  caption: string,
  head: string[],
  rows: Cell[][],
  opts: { empty?: string; testId?: string } = {},
): HTMLTableElement {
  return h(
    'table',
    { 'data-testid': opts.testId },
    h('caption', { class: 'sr-only' }, caption),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        head.map((t) => h('th', { scope: 'col' }, t)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td', { colspan: head.length, class: 'empty' }, opts.empty ?? 'None.'))
        : rows.map((r) =>
            h(
              'tr',
              {},
              r.map((c) => h('td', {}, c ?? '—')),
            ),
          ),
    ),
  );
}

/** A coloured label for a status or state, e.g. `running`, `failed`, `pending`. */
export function badge(state: string): HTMLElement {
  return h('span', { class: `badge badge-${state}`, 'data-state': state }, state);
}

/** A large number with a label. */
export function stat(label: string, value: number | string, testId?: string): HTMLElement {
  return h(
    'div',
    { class: 'stat' },
    h('span', { class: 'stat-value', 'data-testid': testId }, value),
    h('span', { class: 'stat-label' }, label),
  );
}

/** The message to show for a failed call. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  return e instanceof Error ? e.message : String(e);
}

/** An alert box for an error. */
export function errorBox(e: unknown): HTMLElement {
  return h('p', { class: 'error', role: 'alert' }, errorText(e));
}

/**
 * A button that runs `action`, disables itself meanwhile, and shows an error next to itself
 * if the action fails; `done` runs after success (typically a refresh).
 */
export function actionButton(
  label: string,
  action: () => Promise<unknown>,
  done: () => Promise<void>,
  opts: { danger?: boolean; confirm?: string; name?: string } = {},
): HTMLElement {
  const msg = h('span', { class: 'inline-error', role: 'alert' });
  const btn = h('button', {
    type: 'button',
    class: opts.danger ? 'danger' : 'secondary',
    'aria-label': opts.name ?? label,
  });
  btn.textContent = label;
  btn.addEventListener('click', () => {
    if (opts.confirm && !window.confirm(opts.confirm)) return;
    btn.disabled = true;
    msg.textContent = '';
    action()
      .then(done)
      .catch((e: unknown) => (msg.textContent = errorText(e)))
      .finally(() => (btn.disabled = false));
  });
  return h('span', { class: 'action' }, btn, msg);
}

/** A section with a heading. */
export function section(title: string, ...body: Array<Node | null>): HTMLElement {
  return h('section', { class: 'card' }, h('h2', {}, title), ...body);
}

/** A link into the dashboard's hash routes. */
export function link(route: string, text: string): HTMLAnchorElement {
  return h('a', { href: `#/${route}` }, text);
}
