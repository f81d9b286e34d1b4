/**
 * Prometheus metrics in the text exposition format (no client library: counters, gauges and
 * one latency histogram are a few lines). Gauges are read from the database when scraped.
 */

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

function labels(l: Record<string, string>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** The server's metrics registry. */
export class Metrics {
  readonly #counters = new Map<string, { help: string; values: Map<string, number> }>();
  readonly #hist = new Map<string, { counts: number[]; sum: number; n: number }>();

  /** Adds `by` to counter `name` with `labelSet`. */
  inc(name: string, help: string, labelSet: Record<string, string> = {}, by = 1): void {
    let c = this.#counters.get(name);
    if (!c) this.#counters.set(name, (c = { help, values: new Map() }));
    const key = labels(labelSet);
    c.values.set(key, (c.values.get(key) ?? 0) + by);
  }

  /** Records one request duration (seconds) for `route`. */
  observe(route: string, seconds: number): void {
    let h = this.#hist.get(route);
    if (!h) this.#hist.set(route, (h = { counts: BUCKETS.map(() => 0), sum: 0, n: 0 }));
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) h.counts[i]!++;
    h.sum += seconds;
    h.n++;
  }

  /** The exposition text, with `gauges` (name -> [help, value]) appended. */
  render(
    gauges: Record<string, [string, number | Array<[Record<string, string>, number]>]>,
  ): string {
    const out: string[] = [];
    for (const [name, c] of this.#counters) {
      out.push(`# HELP ${name} ${c.help}`, `# TYPE ${name} counter`);
      for (const [l, v] of c.values) out.push(`${name}${l} ${v}`);
    }
    out.push('# HELP ferry_http_request_duration_seconds HTTP request latency by route');
    out.push('# TYPE ferry_http_request_duration_seconds histogram');
    for (const [route, h] of this.#hist) {
      BUCKETS.forEach((b, i) =>
        out.push(
          `ferry_http_request_duration_seconds_bucket${labels({ route, le: String(b) })} ${h.counts[i]}`,
        ),
      );
      out.push(`ferry_http_request_duration_seconds_bucket${labels({ route, le: '+Inf' })} ${h.n}`);
      out.push(`ferry_http_request_duration_seconds_sum${labels({ route })} ${h.sum}`);
      out.push(`ferry_http_request_duration_seconds_count${labels({ route })} ${h.n}`);
    }
    for (const [name, [help, v]] of Object.entries(gauges)) {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
      if (typeof v === 'number') out.push(`${name} ${v}`);
      else for (const [l, n] of v) out.push(`${name}${labels(l)} ${n}`);
    }
    return out.join('\n') + '\n';
  }
}
