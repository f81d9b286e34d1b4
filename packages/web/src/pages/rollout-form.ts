/// <reference lib="dom" />
/**
 * The form that starts a rollout: a release of one of its channels, the devices (all of the
 * channel or a saved group, optionally narrowed by a tag), phases and thresholds.
 * POST /rollouts; a group is sent by name and resolved by the server.
 */
import type { DeviceFilter, GroupView, ReleaseView, RolloutView } from '@ferry/protocol';
import { post } from '../api.ts';
import { h } from '../dom.ts';
import { field } from '../forms.ts';
import { errorText } from '../ui.ts';

function parsePhases(text: string): number[] {
  return text
    .split(/[\s,→>]+/)
    .filter(Boolean)
    .map((p) => Number(p.replace('%', '')));
}

/** Builds the form; `created` runs with the new rollout. */
export function rolloutForm(
  releases: ReleaseView[],
  groups: GroupView[],
  created: (r: RolloutView) => Promise<void>,
): HTMLFormElement {
  const input = (id: string, attrs: Record<string, string | number | boolean> = {}) =>
    h('input', { id, name: id, ...attrs });
  const name = input('ro-name', { required: true, maxlength: 128 });
  const release = h(
    'select',
    { id: 'ro-release', name: 'ro-release', required: true },
    releases.map((r, i) =>
      h('option', { value: i }, `${r.compatible} ${r.version} (counter ${r.releaseCounter})`),
    ),
  );
  const channel = h('select', { id: 'ro-channel', name: 'ro-channel', required: true });
  const fillChannels = () => {
    const r = releases[Number(release.value)];
    channel.replaceChildren(
      ...(r?.channels ?? []).map((c) => h('option', { value: c.channel }, c.channel)),
    );
  };
  release.addEventListener('change', fillChannels);
  fillChannels();
  const group = h(
    'select',
    { id: 'ro-group', name: 'ro-group' },
    h('option', { value: '' }, 'every device of the channel'),
    groups.map((g) => h('option', { value: g.name }, `group ${g.name}`)),
  );
  const tag = input('ro-tag', { placeholder: 'e.g. lab' });
  const phases = input('ro-phases', { value: '1, 10, 50, 100', required: true });
  const success = input('ro-success', { type: 'number', min: 0, max: 100, value: 90 });
  const failure = input('ro-failure', { type: 'number', min: 0, max: 100, value: 10 });
  const minReports = input('ro-min-reports', { type: 'number', min: 1, value: 3 });
  const confirm = input('ro-confirm', { type: 'checkbox' });
  const msg = h('p', { role: 'status', class: 'form-status' });
  const form = h(
    'form',
    { class: 'rollout-form', 'aria-label': 'Start a rollout' },
    h(
      'div',
      { class: 'fields' },
      field('ro-name', 'Name', name),
      field('ro-release', 'Release', release),
      field('ro-channel', 'Channel', channel),
      field('ro-group', 'Devices', group),
      field('ro-tag', 'Only with tag', tag, 'optional, narrows the devices'),
      field('ro-phases', 'Phases (cumulative %)', phases),
      field('ro-success', 'Advance at committed %', success),
      field('ro-failure', 'Pause above failure %', failure),
      field('ro-min-reports', 'Judge failures after N reports', minReports),
      field(
        'ro-confirm',
        'Ask on each device',
        confirm,
        "install, then wait for the device's user to confirm",
      ),
    ),
    h('button', { type: 'submit' }, 'Start rollout'),
    msg,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const r = releases[Number(release.value)];
    if (!r) return;
    const filter: DeviceFilter = tag.value.trim() ? { tags: [tag.value.trim()] } : {};
    msg.className = 'form-status';
    msg.textContent = 'Starting…';
    post<RolloutView>('/rollouts', {
      name: name.value.trim(),
      release: { compatible: r.compatible, version: r.version },
      channel: channel.value,
      ...(group.value ? { group: group.value } : {}),
      filter,
      phases: parsePhases(phases.value),
      successThreshold: Number(success.value) / 100,
      failureThreshold: Number(failure.value) / 100,
      minReports: Number(minReports.value),
      ...(confirm.checked ? { confirm: true } : {}),
    })
      .then(async (ro) => {
        msg.textContent = `Rollout ${ro.name} started.`;
        name.value = '';
        await created(ro);
      })
      .catch((e: unknown) => {
        msg.className = 'form-status error';
        msg.textContent = errorText(e);
      });
  });
  return form;
}
