// Writes docs/errors.md from ERROR_CODES (checked by packages/core/src/errors-doc.test.ts).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorsReference } from '@ferry/core';

writeFileSync(join(import.meta.dirname, '..', 'docs', 'errors.md'), errorsReference());
