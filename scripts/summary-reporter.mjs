// Test reporter that prints the closing line "N passed, N failed, N skipped" and lists skips.
export default async function* summary(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const skips = [];
  for await (const event of source) {
    const d = event.data;
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    if (d.details?.type === 'suite') continue;
    if (d.skip !== undefined || d.todo !== undefined) {
      skipped++;
      skips.push(`${d.name}: ${typeof d.skip === 'string' ? d.skip : 'skipped'}`);
    } else if (event.type === 'test:pass') passed++;
    else failed++;
  }
  if (skips.length) yield `\nskipped:\n${skips.map((s) => `  - ${s}`).join('\n')}\n`;
  yield `\n${passed} passed, ${failed} failed, ${skipped} skipped\n`;
}
