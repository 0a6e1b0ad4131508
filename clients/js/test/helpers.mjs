// Shared helpers of the tests: a scriptable protocol server on 127.0.0.1 and
// polling with a deadline.
import { WebSocketServer } from 'ws';

/**
 * waitFor polls fn until it returns a truthy value and returns it, or throws
 * after timeoutMs with what describe() says.
 */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 5, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * startServer starts a WebSocket server on 127.0.0.1 (a free port). Every
 * connection is recorded with its token and the messages it received;
 * onMessage(conn, msg) scripts the answers. conn.send(obj) sends JSON.
 */
export async function startServer({ onMessage = () => {}, onConnection = () => {} } = {}) {
  let server;
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    verifyClient: (info, cb) => {
      const token = new URL(info.req.url, 'http://127.0.0.1').searchParams.get('token');
      server.handshakes.push(token);
      if (server.refuse(token)) cb(false, 401, 'Unauthorized');
      else cb(true);
    },
  });
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const { port } = wss.address();
  server = {
    /** Tokens of every handshake, refused ones included. */
    handshakes: [],
    /** refuse(token) says whether to answer the handshake with 401. */
    refuse: () => false,
    url: `ws://127.0.0.1:${port}/ws`,
    conns: [],
    /** Every message received, in order, as {conn, msg}. */
    received: [],
    onMessage,
    onConnection,
    /** Messages received with action a (any connection). */
    frames(action) {
      return this.received.filter((r) => r.msg.action === action).map((r) => r.msg);
    },
    async close() {
      for (const c of this.conns) c.ws.terminate();
      await new Promise((resolve) => wss.close(() => resolve()));
    },
  };
  wss.on('connection', (ws, req) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const conn = {
      ws,
      index: server.conns.length,
      token: url.searchParams.get('token'),
      received: [],
      closed: false,
      send(obj) {
        if (ws.readyState === 1) ws.send(JSON.stringify(obj));
      },
      drop() {
        ws.terminate();
      },
    };
    server.conns.push(conn);
    ws.on('close', () => {
      conn.closed = true;
    });
    ws.on('message', (data, isBinary) => {
      const msg = JSON.parse(isBinary ? '' : data.toString());
      conn.received.push(msg);
      server.received.push({ conn, msg });
      server.onMessage(conn, msg);
    });
    server.onConnection(conn);
  });
  return server;
}

/** fastOptions are client options for tests: quick reconnects. */
export const fastOptions = { minBackoffMs: 5, maxBackoffMs: 40, connectTimeoutMs: 3000 };

/** rejection returns the error p rejects with (and fails if it resolves). */
export async function rejection(p) {
  let v;
  try {
    v = await p;
  } catch (err) {
    return err;
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
}
