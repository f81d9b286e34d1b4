/**
 * The shape of a CLI command. Commands live in a table (commands.ts); help text and
 * docs/cli.md are generated from these specs, so they cannot drift apart.
 */
import type { Output } from './output.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  /** Shown in usage for string options, e.g. FILE. */
  placeholder?: string;
  multiple?: boolean;
  short?: string;
  default?: string;
}

export interface CommandContext {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
  out: Output;
}

export interface CommandSpec {
  /** Words after `ferry`, e.g. "bundle create". */
  name: string;
  summary: string;
  /** Longer text for --help and docs. */
  description?: string;
  positionals?: Array<{ name: string; description: string; optional?: boolean }>;
  options?: Record<string, OptionSpec>;
  /** The command reports a result: --json prints it as one JSON document. */
  json?: boolean;
  examples?: string[];
  run(ctx: CommandContext): Promise<void>;
}

/** Typed accessors over parsed values. */
export function str(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function strs(ctx: CommandContext, name: string): string[] {
  const v = ctx.values[name];
  return Array.isArray(v)
    ? v.filter((x): x is string => typeof x === 'string')
    : typeof v === 'string'
      ? [v]
      : [];
}

export function flag(ctx: CommandContext, name: string): boolean {
  return ctx.values[name] === true;
}
