// Unit tests of UNAVAILABLE (docs/protocol.md section 5): a typed, retryable
// error with retry_after_ms, never retried blindly by the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ServerErrorCode, StreamerClient, StreamerError, isStreamerError } from '../../dist/index.js';
import { fastOptions, rejection, startServer } from '../helpers.mjs';

async function setup(t, onMessage) {
  const server = await startServer({ onMessage });
  const client = new StreamerClient(server.url, { token: 'tok', ...fastOptions });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  return { server, client };
}

const unavailable = (id, ms = 5) => ({
  type: 'error',
  request_id: id,
  error: { code: 'UNAVAILABLE', message: 'retry later', details: { retry_after_ms: ms }, retryable: true },
  timestamp: 1,
});
const ack = (id) => ({ type: 'acknowledgment', request_id: id, status: 'queued', seq: 0 });
const progress = (id, seq) => ({ type: 'progress', request_id: id, seq, percentage: seq, message: 'p', timestamp: 1 });
const complete = (id, seq, result) => ({ type: 'complete', request_id: id, seq, result, timestamp: 1 });

test('a request refused with UNAVAILABLE rejects with a retryable error carrying retryAfterMs, and is not re-sent', async (t) => {
  let sent = 0;
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action !== 'job') return;
    if (sent++ === 0) {
      conn.send(unavailable(m.id, 1000));
      return;
    }
    conn.send({ type: 'response', request_id: m.id, success: true, data: 'ok' });
  });
  const err = await rejection(client.request('job', null, { id: 'u-1' }));
  assert.ok(err instanceof StreamerError);
  assert.ok(isStreamerError(err, ServerErrorCode.UNAVAILABLE));
  assert.equal(err.code, 'UNAVAILABLE');
  assert.equal(err.requestId, 'u-1');
  assert.equal(err.retryable, true);
  assert.equal(err.retryAfterMs, 1000);
  // The caller retries, with the same id; the client sent it once before.
  assert.equal(server.frames('job').length, 1);
  assert.equal(await client.request('job', null, { id: 'u-1' }), 'ok');
  assert.deepEqual(server.frames('job').map((f) => f.id), ['u-1', 'u-1']);
});

test('a resume refused with UNAVAILABLE is retried after retry_after_ms a few times, then rejects', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'job') {
      conn.send(ack(m.id));
      conn.send(progress(m.id, 2)); // a gap: resume after 0
      return;
    }
    if (m.action === 'resume') conn.send(unavailable(m.payload.request_id));
  });
  const err = await rejection(client.request('job', null, { id: 'u-2' }));
  assert.equal(err.code, 'UNAVAILABLE');
  assert.equal(err.retryAfterMs, 5);
  // The first resume and three retries: bounded, never a loop.
  assert.equal(server.frames('resume').length, 4);
});

test('a resume refused with UNAVAILABLE once goes on after retry_after_ms', async (t) => {
  let refused = 0;
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'job') {
      conn.send(ack(m.id));
      conn.send(progress(m.id, 2));
      return;
    }
    if (m.action === 'resume') {
      const id = m.payload.request_id;
      if (refused++ === 0) {
        conn.send(unavailable(id));
        return;
      }
      conn.send(progress(id, 1));
      conn.send(progress(id, 2));
      conn.send(complete(id, 3, 'ok'));
    }
  });
  const seqs = [];
  assert.equal(await client.request('job', null, { id: 'u-3', onProgress: (p) => seqs.push(p.seq) }), 'ok');
  assert.deepEqual(seqs, [1, 2]);
  assert.deepEqual(server.frames('resume').map((f) => f.payload.after_seq), [0, 0]);
});

test('retryAfterMs reads details.retry_after_ms only when it is a usable number', () => {
  const make = (details) => new StreamerError({ code: 'UNAVAILABLE', message: 'x', details }).retryAfterMs;
  assert.equal(make({ retry_after_ms: 250 }), 250);
  assert.equal(make({ retry_after_ms: 0 }), 0);
  assert.equal(make({ retry_after_ms: -1 }), undefined);
  assert.equal(make({ retry_after_ms: '5' }), undefined);
  assert.equal(make([{ retry_after_ms: 5 }]), undefined);
  assert.equal(make(undefined), undefined);
  assert.equal(StreamerError.fromBody({ code: 'RATE_LIMITED', message: 'm', details: { retry_after_ms: 7 } }, 'r').retryAfterMs, 7);
});
