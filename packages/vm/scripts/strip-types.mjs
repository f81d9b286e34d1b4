// Copies one Ferry package into a root image as plain JavaScript:
//   node strip-types.mjs PKGDIR DESTDIR
// Every non-test src/*.ts becomes src/*.js with its types erased by Node's own stripper (what
// Node does at every start otherwise: in the guest, under TCG, that costs seconds per command)
// and its relative './x.ts' specifiers rewritten to './x.js'; package.json exports follow.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';

const [pkg, dest] = process.argv.slice(2);
if (!pkg || !dest) throw new Error('usage: strip-types.mjs PKGDIR DESTDIR');
const toJs = (text) => text.replace(/(['"`])(\.{1,2}\/[\w./-]+)\.ts\1/g, '$1$2.js$1');
mkdirSync(join(dest, 'src'), { recursive: true });
for (const name of readdirSync(join(pkg, 'src'))) {
  if (!name.endsWith('.ts') || name.endsWith('.test.ts')) continue;
  const code = stripTypeScriptTypes(readFileSync(join(pkg, 'src', name), 'utf8'), {
    mode: 'strip',
  });
  writeFileSync(join(dest, 'src', name.replace(/\.ts$/, '.js')), toJs(code));
}
const manifest = readFileSync(join(pkg, 'package.json'), 'utf8');
writeFileSync(
  join(dest, 'package.json'),
  manifest.replace(/\.\/src\/([\w-]+)\.ts"/g, './src/$1.js"'),
);
