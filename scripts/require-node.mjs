// Refuses to go on under a Node.js older than the project's runtime, with one clear line.
// Kept plain JavaScript so that it runs (and explains) under any Node.js.
const want = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major < want) {
  console.error(
    `ferry: Node.js ${want} is required, this is ${process.version}. Run 'npm ci' first: it installs Node.js ${want} into node_modules/.bin, which npm scripts use.`,
  );
  process.exit(1);
}
