/**
 * Everything the CLI prints goes through here: results (human text or one JSON document),
 * the one-line error, and progress bars on a terminal.
 */
import { FerryError, type ErrorCode } from '@ferry/core';

/** Exit status by error code: 1 refused input, 2 usage, 3 environment/I/O, 70 internal bug. */
export function exitCodeFor(code: ErrorCode): number {
  if (code === 'USAGE') return 2;
  if (code === 'IO' || code === 'TOOL_MISSING' || code === 'TOOL_FAILED') return 3;
  if (code === 'INTERNAL') return 70;
  return 1;
}

export class Output {
  readonly json: boolean;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WriteStream | NodeJS.WritableStream;

  constructor(
    json: boolean,
    stdout: NodeJS.WritableStream = process.stdout,
    stderr: NodeJS.WritableStream = process.stderr,
  ) {
    this.json = json;
    this.stdout = stdout;
    this.stderr = stderr;
  }

  /** Prints a human line (suppressed under --json, where only the result document is printed). */
  line(text = ''): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** The command's result: JSON under --json, else the human rendering. */
  result(value: unknown, human: () => string): void {
    if (this.json) this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    else this.stdout.write(`${human()}\n`);
  }

  /** One clear line for an error; returns the exit status. */
  error(e: unknown): number {
    const fe =
      e instanceof FerryError
        ? e
        : new FerryError('INTERNAL', (e as Error)?.stack ?? String(e), { cause: e });
    if (this.json)
      this.stdout.write(
        `${JSON.stringify({ ok: false, error: { code: fe.code, message: fe.message } })}\n`,
      );
    const hint = fe.code === 'INTERNAL' ? ' (this is a bug in Ferry; please report it)' : '';
    this.stderr.write(`ferry: error[${fe.code}]: ${fe.message}${hint}\n`);
    return exitCodeFor(fe.code);
  }

  /** A progress bar on a terminal; a no-op when stderr is not a TTY or under --json. */
  progress(label: string): Progress {
    const tty = (this.stderr as NodeJS.WriteStream).isTTY === true && !this.json;
    return new Progress(label, tty ? (this.stderr as NodeJS.WriteStream) : undefined);
  }
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** phase, bytes, rate and ETA on one self-overwriting line, redrawn at most 10 times a second. */
export class Progress {
  readonly #label: string;
  readonly #tty: NodeJS.WriteStream | undefined;
  readonly #start = Date.now();
  #last = 0;

  constructor(label: string, tty: NodeJS.WriteStream | undefined) {
    this.#label = label;
    this.#tty = tty;
  }

  update(done: number, total: number, phase = this.#label): void {
    if (!this.#tty) return;
    const now = Date.now();
    if (now - this.#last < 100 && done < total) return;
    this.#last = now;
    const secs = Math.max((now - this.#start) / 1000, 0.001);
    const rate = done / secs;
    const frac = total > 0 ? Math.min(done / total, 1) : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const eta = rate > 0 && total > done ? `ETA ${Math.ceil((total - done) / rate)}s` : '';
    this.#tty.write(
      `\r\x1b[2K${phase} [${bar}] ${(frac * 100).toFixed(0)}% ${mib(done)}/${mib(total)} ${mib(rate)}/s ${eta}`,
    );
  }

  done(): void {
    if (this.#tty) this.#tty.write('\r\x1b[2K');
  }
}
