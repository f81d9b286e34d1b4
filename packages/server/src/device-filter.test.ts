import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { DeviceFilter } from '@ferry/protocol';
import { openDatabase } from './database.ts';
import type { DeviceTable } from './db-schema.ts';
import { matchesFilter, whereFilter } from './device-filter.ts';

const WORDS = ['a', 'b', 'a_b', 'a%b', "o'r", 'x"y', 'A', 'lab', 'lab2', '\\'];

function device(i: number, tags: string[], attrs: Record<string, string>, hw: string): DeviceTable {
  return {
    id: i.toString(16).padStart(32, '0'),
    public_key: i.toString(16).padStart(64, '0'),
    status: i % 3 === 0 ? 'pending' : 'accepted',
    compatible: WORDS[i % WORDS.length]!,
    hardware_id: hw,
    agent_version: null,
    booted_slot: null,
    release: i % 2 ? '1.0.0' : null,
    release_counter: null,
    slots: '[]',
    attributes: JSON.stringify(Object.fromEntries(Object.entries(attrs).sort())),
    tags: JSON.stringify([...new Set(tags)].sort()),
    channel: i % 2 ? 'stable' : 'beta',
    bucket: i,
    last_seen: null,
    created_at: i,
  };
}

const word = fc.constantFrom(...WORDS);
const fullFilter = fc.record({
  compatible: word,
  channel: fc.constantFrom('stable', 'beta'),
  tags: fc.array(fc.constantFrom('a', 'b', 'lab', 'a_b'), { minLength: 1, maxLength: 2 }),
  status: fc.constantFrom('pending', 'accepted'),
  release: fc.constantFrom('1.0.0', '2.0.0'),
  attributes: fc.dictionary(fc.constantFrom('site', 'rack'), word, { minKeys: 1, maxKeys: 2 }),
  search: word,
});
// One or two fields at a time, so most filters select some devices but not all.
const filterArb: fc.Arbitrary<DeviceFilter> = fc
  .tuple(
    fc.subarray(
      ['compatible', 'channel', 'tags', 'status', 'release', 'attributes', 'search'] as const,
      { minLength: 1, maxLength: 2 },
    ),
    fullFilter,
  )
  .map(([keys, full]) => Object.fromEntries(keys.map((k) => [k, full[k]])) as DeviceFilter);

describe('whereFilter and matchesFilter', () => {
  describe('when both judge the same devices', () => {
    it('select exactly the same set (SQL in SQLite vs in memory)', async () => {
      const database = await openDatabase(
        join(mkdtempSync(join(tmpdir(), 'ferry-filter-')), 'f.db'),
      );
      try {
        const rows = Array.from({ length: 60 }, (_, i) =>
          device(
            i,
            [WORDS[i % 4]!, WORDS[(i * 7) % WORDS.length]!].filter((t) => /^[A-Za-z0-9]/.test(t)),
            { site: WORDS[i % WORDS.length]!, rack: WORDS[(i * 3) % WORDS.length]! },
            `hw-${WORDS[(i * 5) % WORDS.length]!}`,
          ),
        );
        await database.db.insertInto('devices').values(rows).execute();
        let nonEmpty = 0;
        await fc.assert(
          fc.asyncProperty(filterArb, async (f) => {
            const sqlIds = (
              await database.db
                .selectFrom('devices')
                .select('id')
                .where((eb) => whereFilter(eb, f))
                .execute()
            )
              .map((r) => r.id)
              .sort();
            const jsIds = rows
              .filter((d) => matchesFilter(d, f))
              .map((d) => d.id)
              .sort();
            assert.deepEqual(sqlIds, jsIds, JSON.stringify(f));
            if (jsIds.length > 0 && jsIds.length < rows.length) nonEmpty++;
          }),
          { numRuns: 300 },
        );
        // The property must also have compared selections that are neither empty nor everything.
        assert.ok(nonEmpty > 30, `only ${nonEmpty} informative filters`);
      } finally {
        await database.close();
      }
    });
  });
});
