/**
 * Runs an external tool (mksquashfs, mkfs.erofs, mknod, setfattr) and maps its failures to stable
 * codes: TOOL_MISSING when it is not installed, TOOL_FAILED (ending with the tool's last stderr
 * line) when it exits non-zero.
 */
import { spawn } from 'node:child_process';
import { FerryError } from '@ferry/core';

/** What a finished tool run printed. */
export interface ToolResult {
  stdout: string;
  stderr: string;
}

/** Options for {@link runTool}. */
export interface RunToolOptions {
  /** Environment for the tool; defaults to this process's. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

// A tool that floods its output must not grow our memory without bound.
const MAX_CAPTURE = 1 << 20;

function append(acc: string, chunk: Buffer): string {
  const s = acc + chunk.toString('utf8');
  return s.length > MAX_CAPTURE ? s.slice(s.length - MAX_CAPTURE) : s;
}

/** The last non-empty line of a tool's stderr, for error messages. */
export function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim());
  return lines.filter((l) => l.length > 0).pop() ?? '';
}

/**
 * Runs `tool` with `args` (never through a shell) and resolves with its output.
 *
 * @example
 * const { stdout } = await runTool('unsquashfs', ['-lln', 'root.sqfs']);
 */
export function runTool(
  tool: string,
  args: readonly string[],
  opts: RunToolOptions = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout = append(stdout, c)));
    child.stderr.on('data', (c: Buffer) => (stderr = append(stderr, c)));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT')
        reject(new FerryError('TOOL_MISSING', `${tool} is not installed (not on PATH)`));
      else reject(new FerryError('TOOL_FAILED', `${tool} could not start: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return resolve({ stdout, stderr });
      const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
      const last = lastLine(stderr) || lastLine(stdout) || '(no output)';
      reject(new FerryError('TOOL_FAILED', `${tool} ${how}: ${last}`));
    });
  });
}
