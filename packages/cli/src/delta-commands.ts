/** `ferry repo delta`: delta packs as static files next to the chunk store. Thin over @ferry/repo. */
import { FerryError } from '@ferry/core';
import { makeDeltaPacks } from '@ferry/repo';
import { str, strs, type CommandSpec } from './command.ts';

function int(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new FerryError('USAGE', `--${name} must be an integer in ${min}..${max}`);
  return n;
}

export const repoDelta: CommandSpec = {
  name: 'repo delta',
  summary: 'Compute delta packs from earlier releases to the newest of a channel',
  description:
    'For each compatible of the channel, computes one pack per image from each base release to the target release (default: the newest) and stores it at DIR/deltas/<base chunk-index sha256>/<target chunk-index sha256>.fdp, served like the chunks. Packs are not signed: devices verify every chunk a pack yields against the signed target index, and fall back to plain chunks when a pack is missing or refused. Existing packs are kept (computed once per pair); `repo gc` deletes packs whose target is no longer published. See docs/formats/delta.md.',
  positionals: [{ name: 'DIR', description: 'repository directory (what the web server serves)' }],
  options: {
    channel: { type: 'string', placeholder: 'CHANNEL', description: 'channel of the target' },
    from: {
      type: 'string',
      multiple: true,
      placeholder: 'VERSION',
      description: 'base release version (repeat; any channel, same compatible)',
    },
    last: {
      type: 'string',
      placeholder: 'N',
      description: 'without --from: the last N releases of the channel below the target',
      default: '1',
    },
    to: {
      type: 'string',
      placeholder: 'VERSION',
      description: 'target release version (default: the newest of the channel)',
    },
    level: { type: 'string', placeholder: 'LEVEL', description: 'zstd level', default: '19' },
  },
  json: true,
  examples: [
    'ferry repo delta /srv/ferry --channel stable --last 3',
    'ferry repo delta /srv/ferry --channel stable --from 1.0.0 --from 1.1.0 --to 1.2.0',
  ],
  async run(ctx) {
    const channel = str(ctx, 'channel');
    if (!channel) throw new FerryError('USAGE', '--channel is required');
    const from = strs(ctx, 'from');
    const last = int(str(ctx, 'last'), 'last', 1, 1000);
    const level = int(str(ctx, 'level'), 'level', 1, 22);
    const to = str(ctx, 'to');
    const packs = await makeDeltaPacks(ctx.positionals[0]!, {
      channel,
      ...(from.length ? { from } : {}),
      ...(last !== undefined ? { last } : {}),
      ...(to !== undefined ? { to } : {}),
      ...(level !== undefined ? { level } : {}),
    });
    ctx.out.result({ channel, packs }, () =>
      packs.length === 0
        ? 'no delta pack to compute'
        : packs
            .map(
              (p) =>
                `${p.created ? 'made' : 'kept'} ${p.compatible} ${p.from} -> ${p.to} ${p.image}: ${p.path} (${p.bytes} bytes)`,
            )
            .join('\n'),
    );
  },
};
