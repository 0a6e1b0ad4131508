// Unit tests of StreamerClient against an in-test ws server on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { StreamerClient, StreamerError, isStreamerError } from '../../dist/index.js';
import { fastOptions, rejection, startServer, waitFor } from '../helpers.mjs';

/** setup starts a server scripted by onMessage and a client of it, both closed after the test. */
async function setup(t, onMessage, clientOptions = {}) {
  const server = await startServer({ onMessage });
  const client = new StreamerClient(server.url, { token: 'tok', ...fastOptions, ...clientOptions });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  return { server, client };
}

const ack = (id, seq = 0, status = 'queued') => ({ type: 'acknowledgment', request_id: id, status, seq });
const progress = (id, seq, pct) => ({ type: 'progress', request_id: id, seq, percentage: pct, message: `at ${pct}`, timestamp: 1 });
const complete = (id, seq, result) => ({ type: 'complete', request_id: id, seq, result, timestamp: 1 });

test('async request: ack, progress in order, result', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action !== 'generate_report') return;
    conn.send(ack(m.id));
    conn.send(progress(m.id, 1, 25));
    conn.send(progress(m.id, 2, 50.5));
    conn.send(complete(m.id, 3, { url: 'https://x/r.csv', rows: 3 }));
  });
  const seen = [];
  const acks = [];
  const result = await client.request(
    'generate_report',
    { startDate: '2024-01-01', endDate: '2024-01-31' },
    { onProgress: (p) => seen.push(p), onAck: (a) => acks.push(a), id: 'r-1' },
  );
  assert.deepEqual(result, { url: 'https://x/r.csv', rows: 3 });
  assert.deepEqual(
    seen.map((p) => [p.requestId, p.seq, p.percentage, p.message]),
    [
      ['r-1', 1, 25, 'at 25'],
      ['r-1', 2, 50.5, 'at 50.5'],
    ],
  );
  assert.deepEqual(acks, [{ requestId: 'r-1', status: 'queued', seq: 0 }]);
  const [frame] = server.frames('generate_report');
  assert.deepEqual(frame, { action: 'generate_report', id: 'r-1', payload: { startDate: '2024-01-01', endDate: '2024-01-31' } });
  assert.equal(server.conns[0].token, 'tok');
  assert.equal(client.pending, 0);
});

test('sync request: live progress without seq, then response', async (t) => {
  const { client } = await setup(t, (conn, m) => {
    if (m.action !== 'echo') return;
    conn.send({ type: 'progress', request_id: m.id, percentage: 50, message: 'half' });
    conn.send({ type: 'response', request_id: m.id, success: true, data: m.payload });
  });
  const seen = [];
  const result = await client.request('echo', { a: [1, 2] }, { onProgress: (p) => seen.push(p) });
  assert.deepEqual(result, { a: [1, 2] });
  assert.equal(seen.length, 1);
  assert.equal(seen[0].seq, undefined);
  assert.equal(seen[0].percentage, 50);
  assert.equal(seen[0].message, 'half');
  assert.match(seen[0].requestId, /^js-/);
});

test('reconnect resumes after the last seq and drops duplicates', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'job') {
      conn.send(ack(m.id));
      conn.send(progress(m.id, 1, 10));
      conn.send(progress(m.id, 2, 20));
      // The connection breaks once the client has applied seq 2.
    }
    if (m.action === 'resume') {
      const id = m.payload.request_id;
      // At-least-once delivery: replay from the start, duplicates included.
      conn.send(progress(id, 1, 10));
      conn.send(progress(id, 2, 20));
      conn.send(progress(id, 3, 30));
      conn.send(progress(id, 3, 30));
      conn.send(complete(id, 4, 'done'));
    }
  });
  const events = [];
  client.on('open', (e) => events.push(['open', e.reconnect]));
  client.on('close', (e) => events.push(['close', e.willReconnect]));
  client.on('reconnecting', (e) => events.push(['reconnecting', e.attempt]));
  const seqs = [];
  const p = client.request('job', null, {
    id: 'j-1',
    onProgress: (pr) => {
      seqs.push(pr.seq);
      if (pr.seq === 2 && server.conns.length === 1) server.conns[0].drop();
    },
  });
  assert.equal(await p, 'done');
  assert.deepEqual(seqs, [1, 2, 3]);
  assert.equal(server.conns.length, 2);
  const resumes = server.frames('resume');
  assert.deepEqual(resumes, [{ action: 'resume', payload: { request_id: 'j-1', after_seq: 2 } }]);
  assert.equal(server.frames('job').length, 1, 'an acknowledged request is resumed, never re-sent');
  assert.deepEqual(events, [
    ['open', false],
    ['close', true],
    ['reconnecting', 1],
    ['open', true],
  ]);
  assert.equal(client.state, 'open');
});

test('an unacknowledged request is re-sent with the same id; an attach ack ahead of it triggers a resume', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'job' && conn.index === 0) {
      conn.drop(); // lost before the acknowledgment
      return;
    }
    if (m.action === 'job') {
      conn.send(ack(m.id, 2, 'running')); // attached: two events stored already
      conn.send(progress(m.id, 3, 75)); // live events after the ack
      return;
    }
    if (m.action === 'resume') {
      const id = m.payload.request_id;
      conn.send(progress(id, 1, 25));
      conn.send(progress(id, 2, 50));
      conn.send(progress(id, 3, 75));
      conn.send(complete(id, 4, 42));
    }
  });
  const seqs = [];
  const result = await client.request('job', { n: 1 }, { id: 'same-id', onProgress: (p) => seqs.push(p.seq) });
  assert.equal(result, 42);
  const jobs = server.frames('job');
  assert.equal(jobs.length, 2);
  assert.deepEqual(jobs[0], jobs[1]);
  assert.equal(jobs[1].id, 'same-id');
  assert.deepEqual(server.frames('resume'), [{ action: 'resume', payload: { request_id: 'same-id', after_seq: 0 } }]);
  // seq 3 arrived live before the replay: a gap, so it waited for the resume.
  assert.deepEqual(seqs, [1, 2, 3]);
});

test('a seq gap sends one resume until caught up', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'job') {
      conn.send(ack(m.id));
      conn.send(progress(m.id, 1, 10));
      conn.send(progress(m.id, 3, 30)); // seq 2 lost
      conn.send(progress(m.id, 4, 40)); // still a gap: no second resume
      return;
    }
    if (m.action === 'resume') {
      const id = m.payload.request_id;
      for (let s = m.payload.after_seq + 1; s <= 4; s++) conn.send(progress(id, s, s * 10));
      conn.send(progress(id, 6, 60)); // a new gap after catching up: a new resume
      if (server.frames('resume').length === 2) {
        conn.send(progress(id, 5, 50));
        conn.send(progress(id, 6, 60));
        conn.send(complete(id, 7, 'ok'));
      }
    }
  });
  const seqs = [];
  assert.equal(await client.request('job', null, { id: 'g', onProgress: (p) => seqs.push(p.seq) }), 'ok');
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(
    server.frames('resume').map((f) => f.payload.after_seq),
    [1, 4],
  );
});

test('chunked results are reassembled by index', async (t) => {
  const big = { rows: Array.from({ length: 50 }, (_, i) => ({ i, name: `row ${i} é✓` })) };
  const text = JSON.stringify(big);
  const parts = [text.slice(0, 100), text.slice(100, 900), text.slice(900)];
  const { client } = await setup(t, (conn, m) => {
    if (m.action === 'async') {
      conn.send(ack(m.id));
      // seq order is index order; indexes are honored even so.
      parts.forEach((d, index) => conn.send({ type: 'result_chunk', request_id: m.id, seq: index + 1, index, total: 3, data: d }));
      conn.send({ type: 'complete', request_id: m.id, seq: 4, chunks: 3 });
    }
    if (m.action === 'sync') {
      // Without seq the order on the wire does not matter: index does.
      [2, 0, 1].forEach((index) => conn.send({ type: 'result_chunk', request_id: m.id, index, total: 3, data: parts[index] }));
      conn.send({ type: 'response', request_id: m.id, success: true, chunks: 3 });
    }
    if (m.action === 'short') {
      conn.send({ type: 'result_chunk', request_id: m.id, index: 0, total: 2, data: parts[0] });
      conn.send({ type: 'response', request_id: m.id, success: true, chunks: 2 });
    }
  });
  assert.deepEqual(await client.request('async'), big);
  assert.deepEqual(await client.request('sync'), big);
  const err = await rejection(client.request('short', null, { id: 'short-1' }));
  assert.ok(isStreamerError(err, 'INVALID_RESULT'), String(err));
  assert.equal(err.requestId, 'short-1');
  assert.match(err.message, /chunk 1 of 2 is missing/);
});

test('abort cancels on the server and rejects with CANCELED; timeoutMs with TIMEOUT', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'long') conn.send(ack(m.id));
    if (m.action === 'cancel') {
      conn.send({ type: 'status', request_id: m.payload.request_id, action: 'long', status: 'canceling', seq: 0, percentage: 0, message: '' });
    }
  });
  const ctl = new AbortController();
  const acked = [];
  const p = client.request('long', null, { id: 'a-1', signal: ctl.signal, onAck: (a) => acked.push(a) });
  await waitFor(() => acked.length === 1, { what: 'the acknowledgment' });
  ctl.abort(new Error('user left'));
  const err = await rejection(p);
  assert.ok(err instanceof StreamerError);
  assert.equal(err.code, 'CANCELED');
  assert.equal(err.requestId, 'a-1');
  assert.equal(err.cause.message, 'user left');
  await waitFor(() => server.frames('cancel').length === 1, { what: 'the cancel frame' });
  assert.deepEqual(server.frames('cancel')[0], { action: 'cancel', payload: { request_id: 'a-1' } });

  const terr = await rejection(client.request('long', null, { id: 't-1', timeoutMs: 30 }));
  assert.equal(terr.code, 'TIMEOUT');
  await waitFor(() => server.frames('cancel').length === 2, { what: 'the second cancel frame' });
  assert.equal(server.frames('cancel')[1].payload.request_id, 't-1');

  // Already aborted: nothing is sent.
  const before = server.received.length;
  const aerr = await rejection(client.request('long', null, { signal: AbortSignal.abort() }));
  assert.equal(aerr.code, 'CANCELED');
  assert.equal(server.received.length, before);
  assert.equal(client.pending, 0);
});

test('getToken is called again on reconnect and the server sees the new token', async (t) => {
  let n = 0;
  const { server, client } = await setup(
    t,
    (conn, m) => {
      if (m.action === 'who') conn.send({ type: 'response', request_id: m.id, success: true, data: conn.token });
    },
    { token: undefined, getToken: async () => `token-${++n}` },
  );
  assert.equal(await client.request('who'), 'token-1');
  server.conns[0].drop();
  await waitFor(() => server.conns.length === 2 && client.state === 'open', { what: 'the reconnect' });
  assert.equal(await client.request('who'), 'token-2');
  assert.equal(n, 2);
  assert.deepEqual(
    server.conns.map((c) => c.token),
    ['token-1', 'token-2'],
  );
});

test('a refused handshake is retried with backoff and a fresh token', async (t) => {
  const server = await startServer({
    onMessage: (conn, m) => conn.send({ type: 'response', request_id: m.id, success: true, data: conn.token }),
  });
  let n = 0;
  const client = new StreamerClient(server.url, { ...fastOptions, getToken: () => `t${++n}` });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  // The first two handshakes are refused with 401.
  server.refuse = (token) => token !== 't3';
  const attempts = [];
  client.on('reconnecting', (e) => attempts.push(e));
  assert.equal(await client.request('x'), 't3');
  assert.equal(attempts.length, 2);
  assert.deepEqual(
    attempts.map((a) => a.attempt),
    [1, 2],
  );
  for (const a of attempts) assert.ok(a.delayMs >= 0 && a.delayMs <= fastOptions.maxBackoffMs);
  assert.deepEqual(server.handshakes, ['t1', 't2', 't3']);
  assert.equal(server.conns.length, 1);
});

test('errors map to StreamerError with code, message, details and requestId', async (t) => {
  const details = [{ field: 'startDate', rule: 'required', message: 'startDate is required' }];
  const { client } = await setup(t, (conn, m) => {
    const id = m.id ?? m.payload?.request_id;
    switch (m.action) {
      case 'invalid':
        conn.send({ type: 'error', request_id: id, error: { code: 'VALIDATION_ERROR', message: 'payload failed validation', details } });
        break;
      case 'syncfail':
        conn.send({ type: 'response', request_id: id, success: false, error: { code: 'MY_CODE', message: 'nope', retryable: true } });
        break;
      case 'asyncfail':
        conn.send(ack(id));
        conn.send({ type: 'error', request_id: id, seq: 1, error: { code: 'PROCESSING_FAILED', message: 'it broke' } });
        break;
      case 'status':
        conn.send({ type: 'error', request_id: id, error: { code: 'NOT_FOUND', message: 'no such request' } });
        break;
    }
  });
  const v = await rejection(client.request('invalid', {}, { id: 'v-1' }));
  assert.ok(v instanceof StreamerError && v instanceof Error);
  assert.equal(v.name, 'StreamerError');
  assert.equal(v.code, 'VALIDATION_ERROR');
  assert.equal(v.message, 'payload failed validation');
  assert.deepEqual(v.details, details);
  assert.equal(v.requestId, 'v-1');
  assert.equal(v.retryable, false);

  const s = await rejection(client.request('syncfail', null, { id: 's-1' }));
  assert.equal(s.code, 'MY_CODE');
  assert.equal(s.retryable, true);

  const a = await rejection(client.request('asyncfail', null, { id: 'f-1' }));
  assert.equal(a.code, 'PROCESSING_FAILED');
  assert.equal(a.message, 'it broke');
  assert.equal(a.requestId, 'f-1');

  const nf = await rejection(client.status('missing'));
  assert.equal(nf.code, 'NOT_FOUND');
  assert.equal(nf.requestId, 'missing');

  const bad = await rejection(client.request('bad action!'));
  assert.equal(bad.code, 'INVALID_MESSAGE');
  const big = await rejection(client.request('x', 'y'.repeat(140000)));
  assert.equal(big.code, 'PAYLOAD_TOO_LARGE');
});

test('status and cancel resolve with the status message; a canceled request rejects with CANCELED', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'long') {
      conn.send(ack(m.id));
      conn.send(progress(m.id, 1, 5));
      return;
    }
    const id = m.payload?.request_id;
    const st = (status, seq) => ({
      type: 'status',
      request_id: id,
      action: 'long',
      status,
      seq,
      percentage: 5,
      message: 'at 5',
      created_at: 10,
      updated_at: 20,
    });
    if (m.action === 'status') conn.send(st('running', 1));
    if (m.action === 'cancel') {
      conn.send(st('canceling', 1));
      conn.send({ type: 'error', request_id: id, seq: 2, error: { code: 'CANCELED', message: 'the request was canceled' } });
    }
  });
  const seqs = [];
  const p = client.request('long', null, { id: 'c-1', onProgress: (pr) => seqs.push(pr.seq) });
  await waitFor(() => seqs.length === 1, { what: 'progress' });
  const s = await client.status('c-1');
  assert.deepEqual(s, {
    requestId: 'c-1',
    action: 'long',
    status: 'running',
    seq: 1,
    percentage: 5,
    message: 'at 5',
    createdAt: 10,
    updatedAt: 20,
  });
  const c = await client.cancel('c-1');
  assert.equal(c.status, 'canceling');
  const err = await rejection(p);
  assert.equal(err.code, 'CANCELED');
  assert.deepEqual(server.frames('cancel'), [{ action: 'cancel', payload: { request_id: 'c-1' } }]);
});

test('keepalive pings every keepaliveMs', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'ping') conn.send({ type: 'pong', timestamp: Date.now() });
  }, { keepaliveMs: 30 });
  await client.connect();
  await waitFor(() => server.frames('ping').length >= 3, { what: 'three pings' });
  await client.close();
  const n = server.frames('ping').length;
  // No ping after close: wait for a few more intervals by polling the clock.
  const until = Date.now() + 100;
  await waitFor(() => Date.now() >= until, { timeoutMs: 1000 });
  assert.equal(server.frames('ping').length, n);
});

test('close rejects pending calls with CLOSED and stops reconnecting', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'long') conn.send(ack(m.id));
  });
  const p = rejection(client.request('long'));
  const s = rejection(client.status('whatever'));
  await waitFor(() => server.frames('long').length === 1, { what: 'the request' });
  await client.close();
  assert.equal((await p).code, 'CLOSED');
  assert.equal((await s).code, 'CLOSED');
  assert.equal(client.state, 'closed');
  assert.equal((await rejection(client.request('long'))).code, 'CLOSED');
  await waitFor(() => server.conns[0].closed, { what: 'the server side of the close' });
  assert.equal(server.conns.length, 1, 'no reconnect after close');
});

test('requests made while disconnected are sent once connected', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'echo') conn.send({ type: 'response', request_id: m.id, success: true, data: m.payload });
  });
  await client.connect();
  const pending = new Promise((resolve) => {
    client.once('close', () => {
      assert.equal(client.state, 'reconnecting');
      resolve(Promise.all([1, 2, 3].map((i) => client.request('echo', i))));
    });
  });
  server.conns[0].drop();
  assert.deepEqual(await pending, [1, 2, 3]);
  assert.equal(server.conns.length, 2);
});

test('same id twice in flight is refused locally', async (t) => {
  const { client } = await setup(t, (conn, m) => {
    if (m.action === 'long') conn.send(ack(m.id));
  });
  const first = rejection(client.request('long', null, { id: 'dup' }));
  const err = await rejection(client.request('long', null, { id: 'dup' }));
  assert.equal(err.code, 'ALREADY_PENDING');
  await client.close();
  assert.equal((await first).code, 'CLOSED');
});

test('resume follows a request from afterSeq', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'resume') {
      const id = m.payload.request_id;
      for (let s = m.payload.after_seq + 1; s <= 3; s++) conn.send(progress(id, s, s * 30));
      conn.send(complete(id, 4, { ok: true }));
    }
  });
  const seqs = [];
  assert.deepEqual(await client.resume('old-1', { afterSeq: 1, onProgress: (p) => seqs.push(p.seq) }), { ok: true });
  assert.deepEqual(seqs, [2, 3]);
  assert.deepEqual(server.frames('resume'), [{ action: 'resume', payload: { request_id: 'old-1', after_seq: 1 } }]);
});

test('constructor rejects bad input with a clear error', () => {
  assert.throws(() => new StreamerClient('not a url'), TypeError);
  assert.throws(() => new StreamerClient('http://127.0.0.1/ws'), /ws: or wss:/);
  assert.throws(() => new StreamerClient('ws://127.0.0.1/ws', { keepaliveMs: -1 }), RangeError);
  assert.throws(() => new StreamerClient('ws://127.0.0.1/ws', { minBackoffMs: 10, maxBackoffMs: 5 }), RangeError);
  assert.throws(() => new StreamerClient('ws://127.0.0.1/ws', { getToken: 'x' }), TypeError);
  const c = new StreamerClient('ws://127.0.0.1/ws');
  assert.equal(c.state, 'idle', 'no connection before the first call');
});

test('a WebSocket constructor passed in options is used', async (t) => {
  const { WebSocket } = await import('ws');
  let made = 0;
  class Counting extends WebSocket {
    constructor(url) {
      super(url);
      made++;
    }
  }
  const { client } = await setup(
    t,
    (conn, m) => conn.send({ type: 'response', request_id: m.id, success: true, data: 1 }),
    { WebSocket: Counting },
  );
  assert.equal(await client.request('x'), 1);
  assert.equal(made, 1);
});

test('a resume refused with RATE_LIMITED is retried after retry_after_ms', async (t) => {
  let refused = 0;
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action === 'job') {
      conn.send(ack(m.id));
      conn.send(progress(m.id, 2, 20)); // a gap: resume after 0
      return;
    }
    if (m.action === 'resume') {
      const id = m.payload.request_id;
      if (refused++ === 0) {
        conn.send({ type: 'error', request_id: id, error: { code: 'RATE_LIMITED', message: 'slow down', details: { retry_after_ms: 20 } } });
        return;
      }
      conn.send(progress(id, 1, 10));
      conn.send(progress(id, 2, 20));
      conn.send(complete(id, 3, 'ok'));
    }
  });
  const seqs = [];
  assert.equal(await client.request('job', null, { id: 'rl', onProgress: (p) => seqs.push(p.seq) }), 'ok');
  assert.deepEqual(seqs, [1, 2]);
  assert.deepEqual(
    server.frames('resume').map((f) => f.payload.after_seq),
    [0, 0],
  );
});

test('chunks of a retried attempt are dropped when index 0 starts the result over', async (t) => {
  const parts = ['{"rows":[1,', '2,3]', ',"n":3}'];
  const fresh = ['{"rows":[1,2,3],', '"n":3}'];
  const { client } = await setup(t, (conn, m) => {
    if (m.action !== 'big') return;
    conn.send(ack(m.id));
    parts.forEach((d, index) => conn.send({ type: 'result_chunk', request_id: m.id, seq: index + 1, index, total: 3, data: d }));
    conn.send({ type: 'progress', request_id: m.id, seq: 4, percentage: 50 });
    fresh.forEach((d, index) => conn.send({ type: 'result_chunk', request_id: m.id, seq: index + 5, index, total: 2, data: d }));
    conn.send({ type: 'complete', request_id: m.id, seq: 7, chunks: 2 });
  });
  const result = await client.request('big', {});
  assert.deepEqual(result, { rows: [1, 2, 3], n: 3 });
});

test('a result_chunk with a bad index fails the request with INVALID_RESULT', async (t) => {
  const { client } = await setup(t, (conn, m) => {
    conn.send(ack(m.id));
    conn.send({ type: 'result_chunk', request_id: m.id, seq: 1, index: -1, total: 1, data: '1' });
  });
  const err = await rejection(client.request('job'));
  assert.equal(err.code, 'INVALID_RESULT');
});

test('list sends its options and resolves with the page of the list message carrying its id', async (t) => {
  let fail = false;
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action !== 'list') return;
    if (fail) {
      conn.send({ type: 'error', request_id: m.id, error: { code: 'VALIDATION_ERROR', message: 'bad cursor', details: [{ field: 'cursor' }] } });
      return;
    }
    // A reply for another id is not this call's.
    conn.send({ type: 'list', request_id: 'someone-else', requests: [{ request_id: 'x' }] });
    const last = m.payload && m.payload.cursor === 'c1';
    conn.send({
      type: 'list',
      request_id: m.id,
      requests: last
        ? [{ request_id: 'r1', action: 'report', status: 'succeeded', seq: 5, percentage: 100, message: 'done', created_at: 1, updated_at: 9 }]
        : [
            { request_id: 'r3', action: 'report', status: 'running', seq: 2, percentage: 42.5, message: 'rows', created_at: 3, updated_at: 4 },
            { request_id: 'r2', action: 'delay', status: 'queued', seq: 0, percentage: 0, message: '', created_at: 2, updated_at: 2 },
          ],
      ...(last ? {} : { cursor: 'c1' }),
      timestamp: 1,
    });
  });
  const page = await client.list({ status: ['running', 'queued'], limit: 2 });
  assert.deepEqual(page, {
    requests: [
      { requestId: 'r3', action: 'report', status: 'running', seq: 2, percentage: 42.5, message: 'rows', createdAt: 3, updatedAt: 4 },
      { requestId: 'r2', action: 'delay', status: 'queued', seq: 0, percentage: 0, message: '', createdAt: 2, updatedAt: 2 },
    ],
    cursor: 'c1',
  });
  const [frame] = server.frames('list');
  assert.deepEqual(frame.payload, { status: ['running', 'queued'], limit: 2 });
  assert.match(frame.id, /^js-/);

  const next = await client.list({ status: ['running', 'queued'], limit: 2, cursor: page.cursor });
  assert.equal(next.cursor, undefined, 'the last page has no cursor');
  assert.deepEqual(next.requests.map((r) => r.requestId), ['r1']);
  assert.deepEqual(server.frames('list')[1].payload, { status: ['running', 'queued'], limit: 2, cursor: 'c1' });

  // No options: an empty payload.
  await client.list();
  assert.deepEqual(server.frames('list')[2].payload, {});

  fail = true;
  const err = await rejection(client.list({ cursor: 'nope' }));
  assert.equal(err.code, 'VALIDATION_ERROR');
  assert.ok(isStreamerError(err));

  // Bad options are refused before anything is sent.
  const sent = server.frames('list').length;
  for (const bad of [{ limit: 0 }, { limit: 101 }, { limit: 2.5 }, { status: 'running' }]) {
    const e = await rejection(client.list(bad));
    assert.equal(e.code, 'INVALID_MESSAGE', JSON.stringify(bad));
  }
  assert.equal(server.frames('list').length, sent);
});

test('actions resolves with the list of the actions message carrying its id', async (t) => {
  let fail = false;
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action !== 'actions') return;
    if (fail) {
      conn.send({ type: 'error', request_id: m.id, error: { code: 'UNAVAILABLE', message: 'later', retryable: true } });
      return;
    }
    // A reply for another id is not this call's.
    conn.send({ type: 'actions', request_id: 'someone-else', actions: [] });
    conn.send({
      type: 'actions',
      request_id: m.id,
      actions: [
        { name: 'delay', mode: 'async' },
        { name: 'echo', mode: 'sync', scopes: ['a'] },
      ],
      timestamp: 1,
    });
  });
  const list = await client.actions();
  assert.deepEqual(list, [
    { name: 'delay', mode: 'async' },
    { name: 'echo', mode: 'sync', scopes: ['a'] },
  ]);
  const [frame] = server.frames('actions');
  assert.equal(Object.keys(frame).sort().join(','), 'action,id');
  assert.match(frame.id, /^js-/);
  fail = true;
  const err = await rejection(client.actions());
  assert.equal(err.code, 'UNAVAILABLE');
  assert.ok(isStreamerError(err));
});

test('lifecycle events: onLifecycle in seq order with progress; unknown seq events count', async (t) => {
  const { server, client } = await setup(t, (conn, m) => {
    if (m.action !== 'job') return;
    conn.send(ack(m.id));
    conn.send({ type: 'started', request_id: m.id, seq: 1, attempt: 1, percentage: 0, message: '', timestamp: 1 });
    conn.send(progress(m.id, 2, 10));
    conn.send({
      type: 'retrying', request_id: m.id, seq: 3, attempt: 1, next_at: 1700000000000, percentage: 10, message: 'at 10',
      error: { code: 'UPSTREAM_DOWN', message: 'try later', retryable: true },
    });
    conn.send({ type: 'continued', request_id: m.id, seq: 4, attempt: 2, continuations: 1, percentage: 10, message: 'item 3/9' });
    conn.send({ type: 'some_future_event', request_id: m.id, seq: 5 });
    conn.send(progress(m.id, 6, 90));
    conn.send(complete(m.id, 7, 'done'));
  });
  const order = [];
  const life = [];
  const result = await client.request('job', null, {
    onProgress: (p) => order.push(`progress ${p.seq}`),
    onLifecycle: (l) => {
      order.push(`${l.type} ${l.seq}`);
      life.push(l);
    },
  });
  assert.equal(result, 'done');
  assert.deepEqual(order, ['started 1', 'progress 2', 'retrying 3', 'continued 4', 'progress 6']);
  assert.deepEqual(life[0], { requestId: life[0].requestId, type: 'started', seq: 1, attempt: 1, percentage: 0, message: '' });
  assert.equal(life[1].nextAt, 1700000000000);
  assert.equal(life[1].error.code, 'UPSTREAM_DOWN');
  assert.equal(life[2].continuations, 1);
  assert.equal(life[2].message, 'item 3/9');
  assert.equal(server.frames('resume').length, 0, 'no gap: lifecycle and unknown events count their seqs');
});
