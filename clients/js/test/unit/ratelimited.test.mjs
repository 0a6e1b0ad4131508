// Unit tests of RATE_LIMITED (docs/protocol.md section 4): a typed,
// retryable error carrying retry_after_ms, never retried blindly by the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ServerErrorCode, StreamerClient, StreamerError, isStreamerError } from '../../dist/index.js';
import { fastOptions, rejection, startServer } from '../helpers.mjs';

test('a request refused with RATE_LIMITED rejects with a typed error carrying retryAfterMs, and is not re-sent', async (t) => {
  let sent = 0;
  const server = await startServer({
    onMessage: (conn, m) => {
      if (m.action !== 'job') return;
      if (sent++ === 0) {
        conn.send({
          type: 'error',
          request_id: m.id,
          error: { code: 'RATE_LIMITED', message: 'too many requests; retry later', details: { retry_after_ms: 250 }, retryable: true },
          timestamp: 1,
        });
        return;
      }
      conn.send({ type: 'response', request_id: m.id, success: true, data: 'ok' });
    },
  });
  const client = new StreamerClient(server.url, { token: 'tok', ...fastOptions });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  const err = await rejection(client.request('job', null, { id: 'r-1' }));
  assert.ok(err instanceof StreamerError);
  assert.ok(isStreamerError(err, ServerErrorCode.RATE_LIMITED));
  assert.equal(err.requestId, 'r-1');
  assert.equal(err.retryable, true);
  assert.equal(err.retryAfterMs, 250);
  // The client sent it once; the caller decides to retry.
  assert.equal(server.frames('job').length, 1);
  assert.equal(await client.request('job', null, { id: 'r-1' }), 'ok');
  assert.equal(server.frames('job').length, 2);
});
