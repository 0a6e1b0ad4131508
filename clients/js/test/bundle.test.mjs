// The committed demo bundle (cli/web/app.js) must be what the
// sources build to: `streamer dev` embeds it and never runs npm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

import { buildDemo, outfile } from '../scripts/build-demo.mjs';

test('the committed cli/web/app.js is up to date', async () => {
  const [built, committed] = await Promise.all([buildDemo(), readFile(outfile)]);
  assert.ok(
    Buffer.from(built).equals(committed),
    `${outfile} is stale (${committed.length} bytes committed, ${built.length} built): run \`npm run build:demo\` in clients/js and commit it`,
  );
});

test('the bundle is deterministic', async () => {
  const [a, b] = await Promise.all([buildDemo(), buildDemo()]);
  assert.ok(Buffer.from(a).equals(Buffer.from(b)));
});
