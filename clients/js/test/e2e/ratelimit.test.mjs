// End-to-end: the client against a real `streamer dev --rate-limit` (built
// from this repo with go build): RATE_LIMITED is a typed StreamerError with
// retryAfterMs. Needs go on PATH; set STREAMER_E2E=0 to skip.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import WebSocket from 'ws';

import { ServerErrorCode, StreamerClient, isStreamerError } from '../../dist/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const SECRET = 'e2e-secret-0123456789abcdef0123456789abcdef';
const skip = process.env.CI !== 'true' && process.env.STREAMER_E2E === '0' ? 'STREAMER_E2E=0' : false;

describe('RATE_LIMITED from streamer dev --rate-limit', { skip, timeout: 170000 }, () => {
  let tmp;
  let proc;
  let wsURL;
  let token;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'streamer-js-rl-'));
    const bin = path.join(tmp, 'streamer');
    await promisify(execFile)('go', ['build', '-o', bin, './cmd/streamer'], { cwd: repoRoot, timeout: 150000 });
    proc = spawn(bin, ['dev', '--addr', '127.0.0.1:0', '--data-dir', path.join(tmp, 'data'), '--log-level', 'warn', '--rate-limit', '1/h,burst=2'], {
      env: { ...process.env, STREAMER_JWT_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`streamer dev printed no URLs in 30 s:\n${out}`)), 30000);
      proc.once('exit', (code) => reject(new Error(`streamer dev exited (${code}):\n${out}`)));
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d) => {
        out += d;
        const ws = /^\s*websocket:\s+(\S+)/m.exec(out);
        const tok = /^\s*token:\s+(\S+)/m.exec(out);
        if (ws && tok && /rate limit:/.test(out)) {
          clearTimeout(timer);
          wsURL = ws[1];
          token = tok[1];
          resolve();
        }
      });
    });
  });

  after(async () => {
    if (proc && proc.exitCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      await exited;
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('the third request of a burst of 2 rejects with RATE_LIMITED and retryAfterMs', async () => {
    const client = new StreamerClient(wsURL, { token, WebSocket });
    try {
      assert.equal(await client.request('echo', 1), 1);
      assert.equal(await client.request('echo', 2), 2);
      let err;
      try {
        await client.request('echo', 3);
      } catch (e) {
        err = e;
      }
      assert.ok(isStreamerError(err, ServerErrorCode.RATE_LIMITED), `got ${err}`);
      assert.equal(err.retryable, true);
      assert.ok(err.retryAfterMs > 59 * 60 * 1000, `retryAfterMs ${err.retryAfterMs}: one token an hour`);
    } finally {
      await client.close();
    }
  });
});
