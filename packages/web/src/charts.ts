/// <reference lib="dom" />
/**
 * Inline SVG charts: a horizontal bar chart and a stacked progress bar. Each is an image with
 * a text alternative listing its values, so a screen reader gets the numbers, not the shapes.
 */
import { s } from './dom.ts';

/** One bar or segment. */
export interface Datum {
  label: string;
  value: number;
  /** CSS class for the fill colour (see style.css `.fill-*`). */
  tone?: string;
}

/** Horizontal bars, one per datum, scaled to the largest value. */
export function barChart(title: string, data: Datum[]): SVGElement {
  const row = 26;
  const labelW = 130;
  const width = 420;
  const max = Math.max(1, ...data.map((d) => d.value));
  const alt = `${title}: ${data.map((d) => `${d.label} ${d.value}`).join(', ') || 'no data'}`;
  const height = Math.max(row, data.length * row);
  return s(
    'svg',
    {
      class: 'chart',
      role: 'img',
      'aria-label': alt,
      viewBox: `0 0 ${width} ${height}`,
      width: '100%',
      height,
      preserveAspectRatio: 'xMinYMin meet',
    },
    s('title', {}, alt),
    data.length === 0 ? s('text', { x: 0, y: 18, class: 'chart-label' }, 'no data') : null,
    data.map((d, i) => {
      const w = ((width - labelW - 50) * d.value) / max;
      const y = i * row;
      return s(
        'g',
        {},
        s('text', { x: 0, y: y + 17, class: 'chart-label' }, clip(d.label, 18)),
        s('rect', {
          x: labelW,
          y: y + 4,
          width: Math.max(w, d.value > 0 ? 2 : 0),
          height: row - 8,
          rx: 3,
          class: `fill-${d.tone ?? 'default'}`,
        }),
        s('text', { x: labelW + w + 6, y: y + 17, class: 'chart-value' }, d.value),
      );
    }),
  );
}

/** One bar split into segments out of `total` (e.g. a rollout phase's devices by state). */
export function stackedBar(title: string, data: Datum[], total: number): SVGElement {
  const width = 400;
  const sum = data.reduce((a, d) => a + d.value, 0);
  const scale = width / Math.max(1, total, sum);
  const alt = `${title}: ${data.map((d) => `${d.label} ${d.value}`).join(', ')} of ${total}`;
  let x = 0;
  return s(
    'svg',
    {
      class: 'bar',
      role: 'img',
      'aria-label': alt,
      viewBox: `0 0 ${width} 14`,
      width: '100%',
      height: 14,
      preserveAspectRatio: 'none',
    },
    s('title', {}, alt),
    s('rect', { x: 0, y: 0, width, height: 14, rx: 4, class: 'fill-track' }),
    data.map((d) => {
      const w = d.value * scale;
      const r = s('rect', { x, y: 0, width: w, height: 14, class: `fill-${d.tone ?? 'default'}` });
      x += w;
      return r;
    }),
  );
}

function clip(t: string, n: number): string {
  return t.length > n ? t.slice(0, n - 1) + '…' : t;
}
