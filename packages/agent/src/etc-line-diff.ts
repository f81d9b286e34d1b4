/**
 * A small unified line diff (Myers' O(ND) algorithm) for showing local /etc changes. Inputs
 * are bounded: at most DIFF_MAX_LINES lines a side, and an edit distance over
 * DIFF_MAX_EDITS is shown as a whole-file replacement rather than searched for.
 */

/** Files with more lines than this are reported as "large file differs", not diffed. */
export const DIFF_MAX_LINES = 10_000;
/** Beyond this many edits Myers' trace would cost O(D²) memory; we replace the file whole. */
export const DIFF_MAX_EDITS = 2_000;
const CONTEXT = 3;

type Op = ' ' | '-' | '+';

interface Lines {
  keys: string[];
  text: string[];
  /** The last line has no newline. */
  noEol: boolean;
}

/** Splits text into lines; a last line without newline is a different line than with one. */
export function splitLines(text: string): Lines {
  const text_ = text.split('\n');
  const noEol = text_.at(-1) !== '';
  if (!noEol) text_.pop();
  const keys = text_.map((l, i) => (noEol && i === text_.length - 1 ? `${l}\n\\noeol` : l));
  return { keys, text: text_, noEol };
}

function backtrack(trace: Int32Array[], n: number, m: number): Op[] {
  const out: Op[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d > 0; d--) {
    const t = trace[d] as Int32Array;
    const at = (k: number) => t[k + d] as number;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    for (; x > prevX && y > prevY; x--, y--) out.push(' ');
    out.push(x === prevX ? '+' : '-');
    x = prevX;
    y = prevY;
  }
  for (; x > 0 && y > 0; x--, y--) out.push(' ');
  return out.reverse();
}

/** Myers' greedy shortest edit script, or undefined when it needs more than maxD edits. */
function myers(a: string[], b: string[], maxD: number): Op[] | undefined {
  const n = a.length;
  const m = b.length;
  const off = n + m + 1;
  const v = new Int32Array(2 * off + 1);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= Math.min(n + m, maxD); d++) {
    // trace[d] holds the furthest x per diagonal after d-1 edits, indexed k + d.
    trace.push(v.slice(off - d, off + d + 1));
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && (v[off + k - 1] as number) < (v[off + k + 1] as number));
      let x = down ? (v[off + k + 1] as number) : (v[off + k - 1] as number) + 1;
      let y = x - k;
      for (; x < n && y < m && a[x] === b[y]; x++, y++);
      v[off + k] = x;
      if (x >= n && y >= m) return backtrack(trace, n, m);
    }
  }
  return undefined;
}

/** The edit script from `a` to `b`: common ends trimmed, the middle by Myers. */
export function editScript(a: string[], b: string[], maxD = DIFF_MAX_EDITS): Op[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a.at(-1 - suf) === b.at(-1 - suf)) suf++;
  const mid = a.slice(pre, a.length - suf);
  const bmid = b.slice(pre, b.length - suf);
  const ops = myers(mid, bmid, maxD) ?? [...mid.map((): Op => '-'), ...bmid.map((): Op => '+')];
  return [...Array<Op>(pre).fill(' '), ...ops, ...Array<Op>(suf).fill(' ')];
}

const range = (start: number, len: number) =>
  len === 1 ? `${start}` : `${len === 0 ? start - 1 : start},${len}`;

/**
 * A unified diff (3 lines of context) from `before` to `after`, or '' if they are equal.
 *
 * @example
 * unifiedDiff('a\nb\n', 'a\nc\n', 'a/hostname', 'b/hostname');
 * // '--- a/hostname\n+++ b/hostname\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n'
 */
export function unifiedDiff(before: string, after: string, labelA: string, labelB: string): string {
  const a = splitLines(before);
  const b = splitLines(after);
  const ops = editScript(a.keys, b.keys);
  const changes = ops.flatMap((op, i) => (op === ' ' ? [] : [i]));
  if (changes.length === 0) return '';
  // Line numbers (0-based) in a and b at each op index.
  const ai: number[] = [];
  const bi: number[] = [];
  let x = 0;
  let y = 0;
  for (const op of ops) {
    ai.push(x);
    bi.push(y);
    if (op !== '+') x++;
    if (op !== '-') y++;
  }
  ai.push(x);
  bi.push(y);
  const out = [`--- ${labelA}`, `+++ ${labelB}`];
  for (let c = 0; c < changes.length;) {
    const start = Math.max(0, (changes[c] as number) - CONTEXT);
    let last = changes[c] as number;
    while (c + 1 < changes.length && (changes[c + 1] as number) - last - 1 <= 2 * CONTEXT)
      last = changes[++c] as number;
    c++;
    const end = Math.min(ops.length, last + 1 + CONTEXT);
    const [a0, a1, b0, b1] = [ai[start], ai[end], bi[start], bi[end]] as number[] as [
      number,
      number,
      number,
      number,
    ];
    out.push(`@@ -${range(a0 + 1, a1 - a0)} +${range(b0 + 1, b1 - b0)} @@`);
    for (let i = start; i < end; i++) {
      const op = ops[i] as Op;
      const src = op === '+' ? b : a;
      const n = op === '+' ? (bi[i] as number) : (ai[i] as number);
      out.push(`${op}${src.text[n]}`);
      if (src.noEol && n === src.text.length - 1) out.push('\\ No newline at end of file');
    }
  }
  return `${out.join('\n')}\n`;
}
