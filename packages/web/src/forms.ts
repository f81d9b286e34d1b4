/// <reference lib="dom" />
/**
 * Form pieces shared by the pages that create things (rollouts, tokens, groups, users): a
 * labelled field, comma lists, and a submit handler that reports progress and errors in a
 * status line.
 */
import { h } from './dom.ts';
import { errorText } from './ui.ts';

/** A label above its control, with an optional hint the control is described by. */
export function field(id: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  if (hint) control.setAttribute('aria-describedby', `${id}-hint`);
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('small', { id: `${id}-hint` }, hint) : null,
  );
}

/** An input whose id is also its name. */
export function input(
  id: string,
  attrs: Record<string, string | number | boolean> = {},
): HTMLInputElement {
  return h('input', { id, name: id, ...attrs });
}

/** A select of `options` (value, label); `value` is selected. */
export function choice(
  id: string,
  options: Array<[string, string]>,
  value = '',
  attrs: Record<string, string> = {},
): HTMLSelectElement {
  const el = h(
    'select',
    { id, name: id, ...attrs },
    options.map(([v, label]) => h('option', { value: v }, label)),
  );
  el.value = value;
  return el;
}

/** `"a, b  c"` → `['a', 'b', 'c']` (empty items dropped). */
export function commaList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The status line under a form (`role=status`; errors get the error class). */
export function formStatus(): HTMLElement {
  return h('p', { role: 'status', class: 'form-status' });
}

/**
 * Runs `send` on submit (never a page load): the status line says `busy`, then the text
 * `send` resolves to, or the error with its code; the submit button is disabled meanwhile.
 */
export function onSubmit(
  form: HTMLFormElement,
  msg: HTMLElement,
  busy: string,
  send: () => Promise<string>,
): void {
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const button = form.querySelector<HTMLButtonElement>('button[type=submit]');
    if (button) button.disabled = true;
    msg.className = 'form-status';
    msg.textContent = busy;
    send()
      .then((text) => (msg.textContent = text))
      .catch((e: unknown) => {
        msg.className = 'form-status error';
        msg.textContent = errorText(e);
      })
      .finally(() => {
        if (button) button.disabled = false;
      });
  });
}

/**
 * Re-renders only when the data changed since the last call, so a poll does not reset a
 * control the user is using (a role select, an inline error).
 */
export function whenChanged<T>(render: (v: T) => void): (v: T) => void {
  let last = '';
  return (v) => {
    const key = JSON.stringify(v);
    if (key === last) return;
    last = key;
    render(v);
  };
}
