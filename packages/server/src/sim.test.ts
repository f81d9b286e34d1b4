import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RolloutView } from '@ferry/protocol';
import { simulate } from './sim.ts';
import { startHarness } from './test-harness.ts';

describe('simulate', () => {
  describe('when simulated devices run a phased rollout with failures', () => {
    it('ends with exactly one final state per assigned device and counts that add up', async () => {
      const h = await startHarness(join(mkdtempSync(join(tmpdir(), 'ferry-sim-')), 'fleet.db'));
      try {
        const ro = await h.admin.post<RolloutView>('/api/v1/rollouts', {
          name: 'sim',
          release: { compatible: 'acme-widget', version: '1.3.0' },
          channel: 'stable',
          phases: [50, 100],
          successThreshold: 0.5,
          failureThreshold: 1,
        });
        const s = await simulate({
          server: h.url,
          devices: 40,
          token: h.token,
          compatible: 'acme-widget',
          rounds: 3,
          intervalMs: 0,
          failRate: 0.1,
          rollbackRate: 0.1,
          concurrency: 8,
        });
        await h.server.evaluate();
        const v = await h.admin.get<RolloutView>(`/api/v1/rollouts/${ro.id}`);
        assert.equal(s.errors, 0);
        assert.equal(s.enrolled, 40);
        assert.equal(v.counts.committed, s.committed);
        assert.equal(v.counts.failed, s.failed);
        assert.equal(v.counts['rolled-back'], s.rolledBack);
        const finals = s.committed + s.failed + s.rolledBack;
        assert.ok(finals > 0);
        const rows = await h.database.db
          .selectFrom('rollout_devices')
          .select(['device_id', 'final'])
          .execute();
        assert.equal(new Set(rows.map((r) => r.device_id)).size, rows.length);
        assert.equal(rows.filter((r) => r.final === 1).length, finals);
      } finally {
        await h.close();
      }
    });
  });
});
