/**
 * QEMU runner for the real-boot tests: one qemu-system-x86_64 process (TCG, BIOS/SeaBIOS,
 * virtio disk and user networking) per run, its serial console on stdio, captured to a file and
 * parsed line by line. A guest `reboot -f` restarts the VM inside the same process (firmware,
 * GRUB, kernel again), so one run spans every boot of a scenario; `powerCut()` kills it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

/** Options of one VM run. */
export interface VmOptions {
  /** Disk image (raw), written by the guest. */
  disk: string;
  /** Serial console transcript, appended line by line with seconds since the start. */
  log: string;
  memoryMiB?: number;
  /**
   * vCPUs (default 1). Two scenarios run at once on a 2-core host: with one vCPU each, a boot to
   * the shell took 16-20 s and `ferry status` 1.5 s; with two, 21-22 s and 2.4-3.2 s (TCG threads
   * contending for the same cores).
   */
  cpus?: number;
  /**
   * An i6300esb watchdog whose expiry resets the machine (as a hardware reset: firmware, GRUB).
   * The initramfs arms it when it finds it; see docs/vm-tests.md for the timeouts.
   */
  watchdog?: boolean;
  /**
   * `seabios` (default) or `ovmf`: UEFI firmware (Debian's ovmf, `/usr/share/ovmf/OVMF.fd`),
   * which boots `EFI/BOOT/BOOTX64.EFI` from the disk's ESP.
   */
  firmware?: 'seabios' | 'ovmf';
}

/** Debian ovmf's combined firmware image (code and variables in one, variables not kept). */
export const OVMF_FD = '/usr/share/ovmf/OVMF.fd';

interface Waiter {
  test: (text: string) => boolean;
  from: number;
  resolve: (text: string) => void;
}

/** A console line and when it arrived, in seconds since the VM started. */
export interface ConsoleLine {
  t: number;
  text: string;
}

/**
 * What a terminal would show of one raw console line: ANSI escape sequences (GRUB clears the
 * screen) removed, and of text overwritten after a carriage return (progress bars) only the last.
 */
export function cleanLine(raw: string): string {
  // eslint-disable-next-line no-control-regex
  const text = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r+$/, '');
  return text.slice(text.lastIndexOf('\r') + 1);
}

/**
 * A running VM.
 *
 * @example
 * const vm = Vm.start({ disk, log });
 * await vm.waitFor(/FERRY-SHELL: ready/, 180_000);
 * const out = await vm.run('ferry status --json', 60_000);
 * await vm.run('poweroff -f', 30_000, { exits: true });
 */
export class Vm {
  readonly lines: ConsoleLine[] = [];
  readonly started = Date.now();
  #proc: ChildProcess;
  #log: WriteStream;
  #partial = '';
  #waiters: Waiter[] = [];
  #exited: Promise<number | null>;
  #exitCode: number | null | undefined;
  #seq = 0;

  private constructor(opts: VmOptions) {
    this.#log = createWriteStream(opts.log, { flags: 'a' });
    this.#proc = spawn('qemu-system-x86_64', qemuArgs(opts), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#proc.stdout?.on('data', (d: Buffer) => this.#onData(d.toString('latin1')));
    this.#proc.stderr?.on('data', (d: Buffer) => this.#onData(d.toString('latin1')));
    this.#proc.stdin?.on('error', () => {});
    this.#exited = new Promise((ok) =>
      this.#proc.on('exit', (code) => {
        this.#exitCode = code;
        this.#onData('\n');
        this.#log.end();
        ok(code);
      }),
    );
  }

  /** Starts qemu on `opts.disk`. */
  static start(opts: VmOptions): Vm {
    return new Vm(opts);
  }

  /** Seconds since the VM started. */
  elapsed(): number {
    return (Date.now() - this.started) / 1000;
  }

  /** The index the next console line will get (a starting point for `waitFor`). */
  mark(): number {
    return this.lines.length;
  }

  #onData(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const raw of parts) {
      const text = cleanLine(raw);
      const line = { t: this.elapsed(), text };
      this.lines.push(line);
      this.#log.write(`${line.t.toFixed(2).padStart(8)} ${text}\n`);
      this.#match(this.lines.length - 1);
    }
  }

  #match(i: number): void {
    const text = this.lines[i]?.text ?? '';
    for (const w of [...this.#waiters]) {
      if (i < w.from || !w.test(text)) continue;
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve(text);
    }
  }

  /** The last `n` console lines, for assertion messages. */
  tail(n = 40): string {
    return this.lines
      .slice(-n)
      .map((l) => `${l.t.toFixed(1).padStart(7)} | ${l.text}`)
      .join('\n');
  }

  /**
   * Waits for a console line matching `re`, at or after line `from` (default: the next line).
   * Rejects (the console tail in the message) after `timeoutMs`, or when qemu exits.
   */
  async waitFor(re: RegExp, timeoutMs: number, from = this.mark()): Promise<RegExpExecArray> {
    const text = await this.waitLine((t) => re.test(t), timeoutMs, from, String(re));
    return re.exec(text) as RegExpExecArray;
  }

  /** Waits for a console line `test` accepts (see `waitFor`); resolves with its text. */
  waitLine(
    test: (text: string) => boolean,
    timeoutMs: number,
    from = this.mark(),
    what = 'the awaited line',
  ): Promise<string> {
    for (let i = from; i < this.lines.length; i++) {
      const text = this.lines[i]?.text ?? '';
      if (test(text)) return Promise.resolve(text);
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { test, from, resolve: () => {} };
      const timer = setTimeout(
        () => fail(`no console line matching ${what} within ${timeoutMs / 1000} s`),
        timeoutMs,
      );
      const fail = (why: string) => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`${why}\n--- console tail ---\n${this.tail()}`));
      };
      w.resolve = (text) => {
        clearTimeout(timer);
        resolve(text);
      };
      this.#waiters.push(w);
      void this.#exited.then(() => {
        if (this.#waiters.includes(w)) {
          clearTimeout(timer);
          fail(`qemu exited (${this.#exitCode}) before ${what}`);
        }
      });
    });
  }

  /** Types one line into the serial console shell. */
  send(line: string): void {
    this.#proc.stdin?.write(`${line}\n`);
  }

  /**
   * Runs a shell command in the guest and waits for its exit status; returns the console lines
   * it printed (without the echoed command). The marker is split in the typed text so the
   * terminal's echo of the command cannot match it.
   */
  async run(cmd: string, timeoutMs: number): Promise<{ rc: number; output: string[] }> {
    const id = ++this.#seq;
    const from = this.mark();
    this.send(`${cmd}; echo "FERRY-RC-${id}""=$?"`);
    const m = await this.waitFor(new RegExp(`^FERRY-RC-${id}=(\\d+)$`), timeoutMs, from);
    const end = this.lines.findIndex((l, i) => i >= from && l.text === m[0]);
    const output = this.lines
      .slice(from, end)
      .map((l) => l.text)
      .filter((t) => !t.includes(`FERRY-RC-${id}""`));
    return { rc: Number(m[1]), output };
  }

  /** Power cut: SIGKILL, nothing in the guest gets to flush. Resolves once qemu is gone. */
  async powerCut(): Promise<void> {
    if (this.#exitCode === undefined) this.#proc.kill('SIGKILL');
    await this.#exited;
  }

  /** Waits for qemu to exit by itself (guest `poweroff -f`); kills it after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<number | null> {
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), timeoutMs);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Powers the guest off cleanly (sync first) and waits for qemu to end. */
  async shutdown(timeoutMs = 60_000): Promise<void> {
    if (this.#exitCode !== undefined) return;
    this.send('sync; poweroff -f');
    await this.waitExit(timeoutMs);
  }
}

/** The qemu command line: TCG (no usable KVM on the CI hosts), SeaBIOS or OVMF, serial on stdio. */
export function qemuArgs(opts: VmOptions): string[] {
  return [
    ...['-accel', 'tcg', '-m', String(opts.memoryMiB ?? 1024), '-smp', String(opts.cpus ?? 1)],
    ...(opts.firmware === 'ovmf' ? ['-bios', OVMF_FD] : []),
    ...['-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-user-config'],
    ...['-drive', `file=${opts.disk},format=raw,if=virtio,cache=writeback`],
    ...['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0'],
    ...(opts.watchdog ? ['-device', 'i6300esb', '-action', 'watchdog=reset'] : []),
  ];
}
