// Writes docs/cli.md from the command table (checked by packages/cli/src/cli.test.ts).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { COMMANDS, cliReference } from '@ferry/cli';

writeFileSync(join(import.meta.dirname, '..', 'docs', 'cli.md'), cliReference(COMMANDS));
