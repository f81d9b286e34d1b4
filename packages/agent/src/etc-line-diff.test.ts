import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { editScript, unifiedDiff } from './etc-line-diff.ts';

/** Applies an edit script to `a`, taking inserted lines from `b` in order. */
function apply(ops: string[], a: string[], b: string[]): string[] {
  const out: string[] = [];
  let x = 0;
  let y = 0;
  for (const op of ops) {
    if (op === ' ') {
      assert.equal(a[x], b[y]);
      out.push(a[x++] as string);
      y++;
    } else if (op === '-') x++;
    else out.push(b[y++] as string);
  }
  assert.equal(x, a.length);
  return out;
}

function lcs(a: string[], b: string[]): number {
  const t = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      t[i]![j] =
        a[i - 1] === b[j - 1] ? t[i - 1]![j - 1]! + 1 : Math.max(t[i - 1]![j]!, t[i]![j - 1]!);
  return t[a.length]![b.length]!;
}

describe('editScript', () => {
  describe('when given any two line lists', () => {
    it('turns a into b with the fewest edits', () => {
      const lines = fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { maxLength: 30 });
      fc.assert(
        fc.property(lines, lines, (a, b) => {
          const ops = editScript(a, b);
          assert.deepEqual(apply(ops, a, b), b);
          const edits = ops.filter((o) => o !== ' ').length;
          assert.equal(edits, a.length + b.length - 2 * lcs(a, b));
        }),
        { numRuns: 300 },
      );
    });
  });

  describe('when the edit distance is over the limit', () => {
    it('still returns a correct script (a whole replacement)', () => {
      const a = ['1', '2', '3', '4'];
      const b = ['5', '6', '7'];
      const ops = editScript(a, b, 2);
      assert.deepEqual(apply(ops, a, b), b);
    });
  });
});

describe('unifiedDiff', () => {
  describe('when changes are far apart', () => {
    it('writes separate hunks with 3 lines of context', () => {
      const a = Array.from({ length: 20 }, (_, i) => `l${i + 1}`);
      const b = a.map((l) => (l === 'l2' ? 'L2' : l === 'l18' ? 'L18' : l));
      const diff = unifiedDiff(`${a.join('\n')}\n`, `${b.join('\n')}\n`, 'a/f', 'b/f');
      assert.deepEqual(
        diff.split('\n').filter((l) => l.startsWith('@@')),
        ['@@ -1,5 +1,5 @@', '@@ -15,6 +15,6 @@'],
      );
    });
  });

  describe('when a file lacks a final newline', () => {
    it('marks the line and treats it as changed', () => {
      assert.equal(
        unifiedDiff('a\nb\n', 'a\nb', 'a/f', 'b/f'),
        '--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n',
      );
    });

    it('returns nothing for equal texts', () => {
      assert.equal(unifiedDiff('x\n', 'x\n', 'a', 'b'), '');
    });
  });
});
