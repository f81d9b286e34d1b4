/// <reference lib="dom" />
/**
 * Rollouts: every rollout with live phase progress and failure rate, pause/resume/cancel, and
 * (operators) the form that starts one. `#/rollouts/:id` shows one rollout with its counts
 * per device state.
 */
import { DEVICE_UPDATE_STATES_VIEW } from '../states.ts';
import type { GroupView, ReleaseView, RolloutView } from '@ferry/protocol';
import { can, get } from '../api.ts';
import { h, replace } from '../dom.ts';
import { percent, time } from '../format.ts';
import { rolloutForm } from './rollout-form.ts';
import { rolloutSummary } from './rollout-card.ts';
import { errorBox, link, section, table, type Page } from '../ui.ts';

/** The rollouts list (and create form). */
export function rolloutsPage(root: HTMLElement): Page {
  const list = h('div', { class: 'rollouts', 'data-testid': 'rollout-list' });
  const formBox = h('div');
  replace(
    root,
    h('h1', {}, 'Rollouts'),
    can('operator') ? section('Start a rollout', formBox) : null,
    section('All rollouts', list),
  );
  let formLoaded = !can('operator');
  const page: Page = {
    async refresh() {
      if (!formLoaded) {
        formLoaded = true;
        try {
          const [releases, groups] = await Promise.all([
            get<ReleaseView[]>('/releases'),
            get<GroupView[]>('/groups'),
          ]);
          replace(
            formBox,
            releases.length
              ? rolloutForm(releases, groups, () => page.refresh())
              : h('p', {}, 'No release imported yet: import one on the Releases page.'),
          );
        } catch (e) {
          formLoaded = false;
          replace(formBox, errorBox(e));
        }
      }
      const rollouts = await get<RolloutView[]>('/rollouts');
      replace(
        list,
        rollouts.length
          ? rollouts.map((r) => rolloutSummary(r, () => page.refresh()))
          : h('p', {}, 'No rollout yet.'),
      );
    },
  };
  return page;
}

/** One rollout: the card, its settings, and devices per update state. */
export function rolloutPage(root: HTMLElement, params: string[]): Page {
  const id = params[0] ?? '';
  const body = h('div');
  replace(root, h('p', {}, link('rollouts', '← all rollouts')), body);
  const page: Page = {
    async refresh() {
      const r = await get<RolloutView>(`/rollouts/${encodeURIComponent(id)}`);
      replace(
        body,
        h('h1', {}, `Rollout ${r.name}`),
        rolloutSummary(r, () => page.refresh()),
        h(
          'div',
          { class: 'grid' },
          section(
            'Devices by update state',
            table(
              'Devices by update state',
              ['state', 'devices'],
              DEVICE_UPDATE_STATES_VIEW.map((s) => [s, r.counts[s]]),
            ),
          ),
          section(
            'Settings',
            table(
              'Settings',
              ['setting', 'value'],
              [
                ['phases', r.phases.map((p) => `${p} %`).join(' → ')],
                ['advance at committed', percent(r.successThreshold)],
                ['pause above failures', percent(r.failureThreshold)],
                ['judge after reports', r.minReports],
                ['device filter', JSON.stringify(r.filter)],
                [
                  'maintenance windows',
                  r.windows.length
                    ? r.windows
                        .map((w) => `days ${w.days.join(',')} ${w.start}-${w.end} UTC`)
                        .join('; ')
                    : 'always',
                ],
                ['created', `${time(r.createdAt)} by ${r.createdBy}`],
                ['last change', time(r.updatedAt)],
              ],
            ),
          ),
        ),
      );
    },
  };
  return page;
}
