/// <reference lib="dom" />
/**
 * Releases and channels: every release imported from the signed repository with its channels,
 * the channels with their release and device counts, the saved groups, and (operators) the
 * button that imports new releases from the repository.
 */
import type { GroupView, ReleaseView } from '@ferry/protocol';
import { can, get, post } from '../api.ts';
import { h, replace } from '../dom.ts';
import { short, time } from '../format.ts';
import { actionButton, section, table, type Page } from '../ui.ts';

/** The releases page. */
export function releasesPage(root: HTMLElement): Page {
  const releases = h('div');
  const channels = h('div');
  const groups = h('div');
  const note = h('p', { role: 'status', class: 'muted' });
  const page: Page = {
    async refresh() {
      const [rs, cs, gs] = await Promise.all([
        get<ReleaseView[]>('/releases'),
        get<Array<{ channel: string; releases: number; devices: number }>>('/channels'),
        get<GroupView[]>('/groups'),
      ]);
      replace(
        releases,
        table(
          'Releases',
          ['compatible', 'version', 'counter', 'channels', 'manifest SHA-256', 'imported'],
          rs.map((r) => [
            r.compatible,
            r.version,
            r.releaseCounter,
            r.channels.map((c) => c.channel).join(', '),
            h('code', { title: r.manifestSha256 }, short(r.manifestSha256)),
            time(r.importedAt),
          ]),
          { empty: 'No release imported yet.', testId: 'releases' },
        ),
      );
      replace(
        channels,
        table(
          'Channels',
          ['channel', 'releases', 'devices'],
          cs.map((c) => [c.channel, c.releases, c.devices]),
          {
            testId: 'channels',
          },
        ),
      );
      replace(
        groups,
        table(
          'Groups',
          ['group', 'filter'],
          gs.map((g) => [g.name, h('code', {}, JSON.stringify(g.filter))]),
          {
            empty: 'No saved group.',
          },
        ),
      );
    },
  };
  const importButton = can('operator')
    ? actionButton(
        'Import from repository',
        async () => {
          const r = await post<{ added: number; total: number }>('/releases/import');
          note.textContent = `${r.added} new of ${r.total} release entries in the repository.`;
        },
        () => page.refresh(),
      )
    : null;
  replace(
    root,
    h('h1', {}, 'Releases and channels'),
    h('div', { class: 'toolbar' }, importButton, note),
    section('Releases', releases),
    h('div', { class: 'grid' }, section('Channels', channels), section('Groups', groups)),
  );
  return page;
}
