import { Emitter, reportListenerError } from './emitter.js';
import { ClientErrorCode, ServerErrorCode, StreamerError, retryAfterOf } from './errors.js';
import type {
  Ack,
  ActionInfo,
  CallOptions,
  ClientMessage,
  ConnectionState,
  Lifecycle,
  ListOptions,
  ListPage,
  Progress,
  RequestOptions,
  ResumeOptions,
  ServerMessage,
  StatusInfo,
  StreamerClientEvents,
  StreamerClientOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';

/** MAX_MESSAGE_BYTES is the protocol's limit on one message: 128 KiB. */
export const MAX_MESSAGE_BYTES = 131072;

const OPEN = 1;
const NAME_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
const DEFAULTS = {
  minBackoffMs: 500,
  maxBackoffMs: 30000,
  keepaliveMs: 300000,
  connectTimeoutMs: 15000,
  timeoutMs: 0,
};
/** How long close() waits for the closing handshake before giving up on it. */
const CLOSE_WAIT_MS = 2000;
/** The resume retry delay after RATE_LIMITED without retry_after_ms. */
const RATE_LIMIT_RETRY_MS = 1000;
/** How many UNAVAILABLE refusals in a row of a call's resume are retried before the call rejects. */
const UNAVAILABLE_RESUME_RETRIES = 3;

type Timer = ReturnType<typeof setTimeout>;

/** A request (or resume) whose result is awaited. */
interface Call {
  id: string;
  /** The request frame, re-sent until acknowledged; null for resume(). */
  frame: ClientMessage | null;
  text: string;
  /** Whether the frame went out on some connection. */
  sent: boolean;
  /** The server stored the request: resume it instead of re-sending. */
  acked: boolean;
  /** A message about it arrived on the current connection. */
  confirmed: boolean;
  /** The highest seq applied. */
  lastSeq: number;
  /** A resume was sent on this connection and is replaying up to resumeUntil. */
  resumed: boolean;
  resumeUntil: number;
  chunks: Map<number, string>;
  opts: ResumeOptions;
  settle: (err: StreamerError | null, value?: unknown) => void;
  retryTimer: Timer | undefined;
  /** UNAVAILABLE refusals of its resume since its last event. */
  unavailable: number;
}

/** A status, cancel, actions or list call waiting for its reply, in order per request id. */
interface Waiter {
  frame: ClientMessage;
  text: string;
  /** Absent for the client's own cancels, whose reply nobody awaits. */
  settle?: (err: StreamerError | null, value?: unknown) => void;
  /** The caller gave up; the waiter only keeps its place in the queue. */
  abandoned: boolean;
}

/**
 * StreamerClient speaks the Streamer wire protocol over one WebSocket that
 * it keeps open: it reconnects with exponential backoff and full jitter,
 * resumes every unfinished request after the last event it saw, drops
 * duplicate events, fills gaps, reassembles chunked results and sends
 * keepalive pings.
 *
 * The connection opens on the first call (or {@link StreamerClient.connect}).
 * Call {@link StreamerClient.close} when done: it stops every timer and
 * socket the client holds.
 *
 * Events ({@link StreamerClientEvents}): `open`, `close`, `reconnecting`,
 * `message` and `send`; subscribe with `on(event, listener)`.
 */
export class StreamerClient extends Emitter<StreamerClientEvents> {
  private readonly url: string;
  private readonly opts: Required<Omit<StreamerClientOptions, 'token' | 'getToken' | 'WebSocket'>>;
  private readonly getToken: (() => string | Promise<string>) | undefined;
  private readonly WebSocketCtor: WebSocketConstructor | undefined;

  private stateValue: ConnectionState = 'idle';
  private sock: WebSocketLike | null = null;
  private attempt = 0;
  private everOpened = false;
  /** Incremented by every connection attempt; stale async steps check it. */
  private generation = 0;
  private retryTimer: Timer | undefined;
  private connectTimer: Timer | undefined;
  private keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  private readonly calls = new Map<string, Call>();
  private readonly waiters = new Map<string, Waiter[]>();
  private openWaiters: Array<(err: StreamerError | null) => void> = [];
  private closing: Promise<void> | undefined;

  /**
   * @param url the server's WebSocket URL (`ws:` or `wss:`), such as `wss://api.example.com/ws`.
   * @param options the token (or a function returning it) and tuning; see {@link StreamerClientOptions}.
   * @throws TypeError for a URL that is not ws(s), RangeError for a bad option.
   */
  constructor(url: string, options: StreamerClientOptions = {}) {
    super();
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(`StreamerClient: invalid URL ${JSON.stringify(url)}`);
    }
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
      throw new TypeError(`StreamerClient: URL must be ws: or wss:, got ${JSON.stringify(url)}`);
    }
    this.url = parsed.toString();
    if (options.token !== undefined && typeof options.token !== 'string') {
      throw new TypeError('StreamerClient: options.token must be a string');
    }
    if (options.getToken !== undefined && typeof options.getToken !== 'function') {
      throw new TypeError('StreamerClient: options.getToken must be a function');
    }
    if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function') {
      throw new TypeError('StreamerClient: options.WebSocket must be a constructor');
    }
    const token = options.token;
    this.getToken = options.getToken ?? (token !== undefined && token !== '' ? () => token : undefined);
    this.WebSocketCtor = options.WebSocket;
    const opts = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>) {
      const v = options[key];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new RangeError(`StreamerClient: options.${key} must be a finite number >= 0, got ${String(v)}`);
      }
      opts[key] = v;
    }
    if (opts.minBackoffMs > opts.maxBackoffMs) {
      throw new RangeError('StreamerClient: options.minBackoffMs must not exceed options.maxBackoffMs');
    }
    this.opts = opts;
  }

  /** state is where the connection is: idle, connecting, open, reconnecting or closed. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** pending is the number of requests in flight. */
  get pending(): number {
    return this.calls.size;
  }

  /**
   * connect opens the connection if it is not open yet and resolves once it
   * is. It keeps retrying with backoff; it rejects (code `CLOSED`) only when
   * the client is closed first.
   */
  connect(): Promise<void> {
    if (this.stateValue === 'closed') return Promise.reject(this.closedError());
    if (this.stateValue === 'open') return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.openWaiters.push((err) => (err ? reject(err) : resolve()));
      this.ensureConnected();
    });
  }

  /**
   * reconnect drops the current connection (as a network failure would) and
   * connects again after the first backoff delay, calling getToken again.
   * Unfinished requests are resumed on the new connection.
   */
  reconnect(): void {
    if (this.stateValue === 'closed') return;
    const sock = this.sock;
    if (sock) {
      try {
        sock.close(4000, 'reconnect');
      } catch {
        this.socketClosed(sock, 4000, 'reconnect');
      }
      return; // its close event schedules the reconnect
    }
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.attempt = 0;
      void this.openSocket();
      return;
    }
    this.ensureConnected();
  }

  /**
   * request sends action with payload and resolves with its result: the data
   * of a synchronous response, or the result of an asynchronous request's
   * complete event (chunked results reassembled). Progress goes to
   * `options.onProgress`. It survives reconnects: the request is resumed (or
   * re-sent with the same id, which the server attaches to the stored one).
   *
   * It rejects with a {@link StreamerError}: the server's error (its code,
   * message and details), or code `CANCELED` when `options.signal` aborts,
   * `TIMEOUT` when `options.timeoutMs` passes (in both cases the client also
   * sends `cancel` for the request), `CLOSED` when the client is closed.
   */
  request<T = unknown>(action: string, payload?: unknown, options: RequestOptions = {}): Promise<T> {
    if (this.stateValue === 'closed') return Promise.reject(this.closedError());
    if (typeof action !== 'string' || !NAME_RE.test(action)) {
      return Promise.reject(invalid(`action ${JSON.stringify(action)} must be 1-128 chars of [A-Za-z0-9_.:-]`));
    }
    const id = options.id ?? newID();
    if (typeof id !== 'string' || !NAME_RE.test(id)) {
      return Promise.reject(invalid(`id ${JSON.stringify(id)} must be 1-128 chars of [A-Za-z0-9_.:-]`));
    }
    if (this.calls.has(id)) {
      return Promise.reject(
        new StreamerError({ code: ClientErrorCode.ALREADY_PENDING, message: `request ${id} is already in flight`, requestId: id }),
      );
    }
    const frame: ClientMessage = { action, id };
    if (payload !== undefined) frame.payload = payload;
    if (options.metadata !== undefined) frame.metadata = options.metadata;
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      return Promise.reject(invalid(`payload cannot be encoded as JSON: ${String(err)}`, id, err));
    }
    if (byteLength(text) > MAX_MESSAGE_BYTES) {
      return Promise.reject(
        new StreamerError({
          code: ClientErrorCode.PAYLOAD_TOO_LARGE,
          message: `the request message exceeds ${MAX_MESSAGE_BYTES} bytes`,
          requestId: id,
        }),
      );
    }
    return this.track<T>(id, frame, text, 0, options);
  }

  /**
   * resume follows a request sent earlier (by this or another client of the
   * same principal): it replays every stored event after `options.afterSeq`
   * (default 0, the whole history), then live ones, and resolves with the
   * result. Aborting `options.signal` (or `timeoutMs`) only stops following:
   * it does not cancel the request; use {@link StreamerClient.cancel} for that.
   * With an afterSeq past some result chunks the result cannot be rebuilt and
   * the promise rejects with `INVALID_RESULT`.
   */
  resume<T = unknown>(id: string, options: ResumeOptions = {}): Promise<T> {
    if (this.stateValue === 'closed') return Promise.reject(this.closedError());
    if (typeof id !== 'string' || !NAME_RE.test(id)) {
      return Promise.reject(invalid(`id ${JSON.stringify(id)} must be 1-128 chars of [A-Za-z0-9_.:-]`));
    }
    const after = options.afterSeq ?? 0;
    if (typeof after !== 'number' || !Number.isInteger(after) || after < 0) {
      return Promise.reject(invalid(`afterSeq must be an integer >= 0, got ${String(after)}`, id));
    }
    if (this.calls.has(id)) {
      return Promise.reject(
        new StreamerError({ code: ClientErrorCode.ALREADY_PENDING, message: `request ${id} is already followed`, requestId: id }),
      );
    }
    return this.track<T>(id, null, '', after, options);
  }

  /** status asks the server for the status of request id. */
  status(id: string, options: CallOptions = {}): Promise<StatusInfo> {
    return this.waitReply('status', id, options);
  }

  /**
   * actions asks the server for the actions this principal may call, sorted
   * by name, each with its mode (`sync`, `async`, or `auto` when the server
   * decides per request) and the scopes it requires (the reserved action
   * `actions`, docs/protocol.md section 5).
   */
  actions(options: CallOptions = {}): Promise<ActionInfo[]> {
    const id = newID();
    return this.awaitReply<ActionInfo[]>({ action: 'actions', id }, id, options);
  }

  /**
   * list asks the server for a page of this principal's own requests, newest
   * first, each with its status, action, latest progress and last seq (the
   * reserved action `list`, docs/protocol.md section 5): a reloaded page
   * finds its jobs this way and follows the live ones with `resume()`.
   * Follow `cursor` for the next page.
   */
  list(options: ListOptions = {}): Promise<ListPage> {
    const payload: { status?: string[]; limit?: number; cursor?: string } = {};
    if (options.status !== undefined) {
      if (!Array.isArray(options.status) || options.status.some((s) => typeof s !== 'string')) {
        return Promise.reject(invalid('status must be an array of statuses'));
      }
      if (options.status.length > 0) payload.status = [...options.status];
    }
    if (options.limit !== undefined) {
      const l = options.limit;
      if (typeof l !== 'number' || !Number.isInteger(l) || l < 1 || l > 100) {
        return Promise.reject(invalid(`limit must be an integer from 1 to 100, got ${String(l)}`));
      }
      payload.limit = l;
    }
    if (options.cursor !== undefined && options.cursor !== '') {
      if (typeof options.cursor !== 'string') return Promise.reject(invalid('cursor must be a string'));
      payload.cursor = options.cursor;
    }
    const id = newID();
    return this.awaitReply<ListPage>({ action: 'list', id, payload }, id, options);
  }

  /**
   * cancel asks the server to cancel request id and resolves with its status
   * (`canceling`, or the final one when it already finished). A request()
   * awaiting it then rejects with code `CANCELED`.
   */
  cancel(id: string, options: CallOptions = {}): Promise<StatusInfo> {
    return this.waitReply('cancel', id, options);
  }

  /**
   * close closes the connection for good: pending calls reject with code
   * `CLOSED`, timers stop, and no reconnect follows. The promise resolves
   * when the socket has closed (waiting at most 2 s for the handshake).
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const wasOpen = this.stateValue === 'open';
    this.setState('closed');
    this.generation++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    this.stopKeepalive();
    this.retryTimer = this.connectTimer = undefined;
    const err = this.closedError();
    for (const call of [...this.calls.values()]) this.finish(call, err);
    for (const q of this.waiters.values()) for (const w of q) w.settle?.(err);
    this.waiters.clear();
    const opens = this.openWaiters;
    this.openWaiters = [];
    for (const fn of opens) fn(err);
    const sock = this.sock;
    this.sock = null;
    if (wasOpen) this.emit('close', { code: 1000, reason: 'client closed', willReconnect: false });
    this.closing = sock ? closeSocket(sock) : Promise.resolve();
    return this.closing;
  }

  // ---- connection -------------------------------------------------------

  private setState(s: ConnectionState): void {
    this.stateValue = s;
  }

  private closedError(): StreamerError {
    return new StreamerError({ code: ClientErrorCode.CLOSED, message: 'the client is closed' });
  }

  private ensureConnected(): void {
    if (this.stateValue === 'idle') void this.openSocket();
  }

  private async openSocket(): Promise<void> {
    this.retryTimer = undefined;
    const gen = ++this.generation;
    if (this.stateValue !== 'reconnecting') this.setState('connecting');
    let url: string;
    let Ctor: WebSocketConstructor;
    try {
      Ctor = await this.resolveWebSocket();
    } catch (err) {
      if (gen === this.generation && this.stateValue !== 'closed') this.fail(err as StreamerError);
      return;
    }
    try {
      const token = this.getToken ? await this.getToken() : undefined;
      if (token !== undefined && typeof token !== 'string') throw new TypeError('getToken must return a string');
      url = withToken(this.url, token);
    } catch (err) {
      if (gen === this.generation && this.stateValue !== 'closed') this.scheduleReconnect(err);
      return;
    }
    if (gen !== this.generation || this.stateValue === 'closed') return;
    let sock: WebSocketLike;
    try {
      sock = new Ctor(url);
    } catch (err) {
      this.scheduleReconnect(err);
      return;
    }
    this.sock = sock;
    sock.onopen = () => {
      if (this.sock === sock) this.opened();
    };
    sock.onmessage = (ev: { data: unknown }) => {
      if (this.sock === sock) this.received(ev.data);
    };
    sock.onclose = (ev: { code?: number; reason?: string }) => {
      this.socketClosed(sock, ev?.code ?? 1006, ev?.reason ?? '');
    };
    sock.onerror = () => {
      // A close event follows.
    };
    if (this.opts.connectTimeoutMs > 0) {
      this.connectTimer = setTimeout(() => {
        this.connectTimer = undefined;
        if (this.sock !== sock || this.stateValue === 'open') return;
        this.sock = null;
        closeSocket(sock).catch(() => undefined);
        this.scheduleReconnect(new Error(`connection not open after ${this.opts.connectTimeoutMs} ms`));
      }, this.opts.connectTimeoutMs);
    }
  }

  private async resolveWebSocket(): Promise<WebSocketConstructor> {
    if (this.WebSocketCtor) return this.WebSocketCtor;
    const g = (globalThis as { WebSocket?: unknown }).WebSocket;
    if (typeof g === 'function') return g as WebSocketConstructor;
    return loadWS();
  }

  /** fail closes the client after a permanent failure, rejecting everything with err. */
  private fail(err: StreamerError): void {
    const opens = this.openWaiters;
    this.openWaiters = [];
    for (const call of [...this.calls.values()]) this.finish(call, err);
    for (const q of this.waiters.values()) for (const w of q) w.settle?.(err);
    this.waiters.clear();
    for (const fn of opens) fn(err);
    void this.close();
  }

  private opened(): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    const reconnect = this.everOpened;
    this.everOpened = true;
    this.attempt = 0;
    this.setState('open');
    this.startKeepalive();
    // Catch every unfinished call up: resume what the server stored,
    // re-send the rest (the same id attaches to a stored request).
    for (const call of [...this.calls.values()]) {
      call.confirmed = false;
      clearTimeout(call.retryTimer);
      call.retryTimer = undefined;
      if (call.acked) {
        this.sendResume(call, call.lastSeq);
      } else {
        call.resumed = false;
        call.resumeUntil = 0;
        call.chunks.clear(); // a synchronous reply starts over
        call.sent = this.sendText(call.text, call.frame as ClientMessage) || call.sent;
      }
    }
    for (const [id, q] of this.waiters) {
      // Abandoned waiters only kept their place for a reply of the old
      // connection, which will not come now.
      const live = q.filter((w) => !w.abandoned);
      if (live.length === 0) {
        this.waiters.delete(id);
        continue;
      }
      this.waiters.set(id, live);
      for (const w of live) this.sendText(w.text, w.frame);
    }
    this.emit('open', { reconnect });
    const opens = this.openWaiters;
    this.openWaiters = [];
    for (const fn of opens) fn(null);
  }

  private socketClosed(sock: WebSocketLike, code: number, reason: string): void {
    if (this.sock !== sock) return;
    this.sock = null;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.stopKeepalive();
    const wasOpen = this.stateValue === 'open';
    this.setState('reconnecting');
    if (wasOpen) this.emit('close', { code, reason, willReconnect: true });
    this.scheduleReconnect(new Error(`connection closed (${code}${reason ? ' ' + reason : ''})`));
  }

  private scheduleReconnect(error: unknown): void {
    if (this.stateValue === 'closed') return;
    this.attempt++;
    const { minBackoffMs, maxBackoffMs } = this.opts;
    const ceiling = Math.min(maxBackoffMs, minBackoffMs * 2 ** Math.min(this.attempt - 1, 30));
    const delayMs = Math.floor(Math.random() * (ceiling + 1)); // full jitter
    this.setState('reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.openSocket(), delayMs);
    this.emit('reconnecting', { attempt: this.attempt, delayMs, error });
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    if (this.opts.keepaliveMs <= 0) return;
    this.keepaliveTimer = setInterval(() => {
      const ping: ClientMessage = { action: 'ping' };
      this.sendText(JSON.stringify(ping), ping);
    }, this.opts.keepaliveMs);
  }

  private stopKeepalive(): void {
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  private sendText(text: string, frame: ClientMessage): boolean {
    const sock = this.sock;
    if (!sock || this.stateValue !== 'open' || sock.readyState !== OPEN) return false;
    try {
      sock.send(text);
    } catch {
      return false; // the close event follows and everything is re-sent
    }
    this.emit('send', frame);
    return true;
  }

  // ---- calls ------------------------------------------------------------

  private track<T>(id: string, frame: ClientMessage | null, text: string, afterSeq: number, options: ResumeOptions): Promise<T> {
    const signal = options.signal;
    if (signal?.aborted) {
      return Promise.reject(
        new StreamerError({ code: ClientErrorCode.CANCELED, message: 'aborted before it was sent', requestId: id, cause: signal.reason }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      let timer: Timer | undefined;
      const onAbort = () =>
        this.giveUp(call, new StreamerError({ code: ClientErrorCode.CANCELED, message: 'aborted by the caller', requestId: id, cause: signal?.reason }));
      const call: Call = {
        id,
        frame,
        text,
        sent: false,
        acked: frame === null,
        confirmed: false,
        lastSeq: afterSeq,
        resumed: false,
        resumeUntil: 0,
        chunks: new Map(),
        opts: options,
        retryTimer: undefined,
        unavailable: 0,
        settle: (err, value) => {
          clearTimeout(timer);
          clearTimeout(call.retryTimer);
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve(value as T);
        },
      };
      this.calls.set(id, call);
      signal?.addEventListener('abort', onAbort, { once: true });
      const timeoutMs = options.timeoutMs ?? this.opts.timeoutMs;
      if (timeoutMs > 0) {
        timer = setTimeout(
          () => this.giveUp(call, new StreamerError({ code: ClientErrorCode.TIMEOUT, message: `no result after ${timeoutMs} ms`, requestId: id })),
          timeoutMs,
        );
      }
      if (this.stateValue === 'open') {
        if (frame) call.sent = this.sendText(text, frame);
        else this.sendResume(call, afterSeq);
      } else {
        this.ensureConnected();
      }
    });
  }

  /** giveUp ends call with err because the caller stopped waiting, canceling a request on the server. */
  private giveUp(call: Call, err: StreamerError): void {
    if (this.calls.get(call.id) !== call) return;
    this.finish(call, err);
    if (call.frame && call.sent) this.enqueue({ action: 'cancel', payload: { request_id: call.id } }, call.id);
  }

  private finish(call: Call, err: StreamerError | null, value?: unknown): void {
    if (this.calls.get(call.id) === call) this.calls.delete(call.id);
    call.chunks.clear();
    call.settle(err, value);
  }

  private waitReply(action: 'status' | 'cancel', id: string, options: CallOptions): Promise<StatusInfo> {
    if (this.stateValue === 'closed') return Promise.reject(this.closedError());
    if (typeof id !== 'string' || !NAME_RE.test(id)) {
      return Promise.reject(invalid(`id ${JSON.stringify(id)} must be 1-128 chars of [A-Za-z0-9_.:-]`));
    }
    return this.awaitReply<StatusInfo>({ action, payload: { request_id: id } }, id, options);
  }

  /** awaitReply sends frame and resolves with the reply carrying request id `id`. */
  private awaitReply<T>(frame: ClientMessage, id: string, options: CallOptions): Promise<T> {
    if (this.stateValue === 'closed') return Promise.reject(this.closedError());
    const signal = options.signal;
    if (signal?.aborted) {
      return Promise.reject(new StreamerError({ code: ClientErrorCode.CANCELED, message: 'aborted before it was sent', requestId: id, cause: signal.reason }));
    }
    return new Promise<T>((resolve, reject) => {
      let timer: Timer | undefined;
      const stop = (err: StreamerError) => {
        if (w.abandoned || !w.settle) return;
        w.settle(err);
        w.settle = undefined;
        w.abandoned = true;
      };
      const onAbort = () => stop(new StreamerError({ code: ClientErrorCode.CANCELED, message: 'aborted by the caller', requestId: id, cause: signal?.reason }));
      const w = this.enqueue(frame, id, (err, value) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value as T);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      const timeoutMs = options.timeoutMs ?? this.opts.timeoutMs;
      if (timeoutMs > 0) {
        timer = setTimeout(() => stop(new StreamerError({ code: ClientErrorCode.TIMEOUT, message: `no reply after ${timeoutMs} ms`, requestId: id })), timeoutMs);
      }
    });
  }

  private enqueue(frame: ClientMessage, id: string, settle?: Waiter['settle']): Waiter {
    const w: Waiter = { frame, text: JSON.stringify(frame), settle, abandoned: false };
    const q = this.waiters.get(id);
    if (q) q.push(w);
    else this.waiters.set(id, [w]);
    if (this.stateValue === 'open') this.sendText(w.text, frame);
    else this.ensureConnected();
    return w;
  }

  /** popWaiter hands m to the oldest status/cancel/actions waiter of id; false if there is none. */
  private popWaiter(id: string, m: ServerMessage): boolean {
    const q = this.waiters.get(id);
    if (!q || q.length === 0) return false;
    const w = q.shift() as Waiter;
    if (q.length === 0) this.waiters.delete(id);
    if (w.settle && !w.abandoned) {
      const settle = w.settle;
      w.settle = undefined;
      if (m.type === 'status') settle(null, toStatusInfo(id, m));
      else if (m.type === 'actions') settle(null, toActions(m));
      else if (m.type === 'list') settle(null, toListPage(m));
      else settle(StreamerError.fromBody(m.error, id));
    }
    return true;
  }

  // ---- inbound ------------------------------------------------------------

  private received(data: unknown): void {
    let text: string;
    if (typeof data === 'string') text = data;
    else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) text = new TextDecoder().decode(data as ArrayBuffer);
    else return; // the protocol has no binary messages
    let m: ServerMessage;
    try {
      m = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (!m || typeof m !== 'object' || Array.isArray(m) || typeof m.type !== 'string') return;
    this.emit('message', m);
    this.dispatch(m);
  }

  private dispatch(m: ServerMessage): void {
    const id = m.request_id;
    if (m.type === 'pong' || typeof id !== 'string' || id === '') return;
    if (m.type === 'status' || m.type === 'actions' || m.type === 'list') {
      this.popWaiter(id, m);
      return;
    }
    const call = this.calls.get(id);
    if (m.type === 'error' && typeof m.seq !== 'number') {
      // A refusal: of a request not yet confirmed on this connection, else
      // of a status or cancel call, else of a resume.
      if (call && !call.confirmed) this.apply(call, m);
      else if (this.popWaiter(id, m)) return;
      else if (call) this.apply(call, m);
      return;
    }
    if (call) this.apply(call, m);
  }

  /** apply applies a message about call, in seq order. */
  private apply(call: Call, m: ServerMessage): void {
    call.confirmed = true;
    const seq = m.seq;
    if (m.type === 'acknowledgment') {
      call.acked = true;
      const ackSeq = typeof seq === 'number' ? seq : 0;
      this.callback(call.opts.onEvent, m);
      const ack: Ack = { requestId: call.id, status: str(m.status), seq: ackSeq };
      if (typeof m.percentage === 'number') ack.percentage = m.percentage;
      if (typeof m.message === 'string') ack.message = m.message;
      this.callback(call.opts.onAck, ack);
      // Attached to a stored request with events not seen yet: only later
      // ones would follow, so ask for the missed ones.
      if (this.calls.get(call.id) === call && ackSeq > call.lastSeq && !call.resumed) this.requestResume(call, ackSeq);
      return;
    }
    if (typeof seq === 'number') {
      call.acked = true;
      if (seq <= call.lastSeq) return; // seen already: delivery is at least once
      if (seq > call.lastSeq + 1) {
        this.requestResume(call, seq); // a gap: the resume replays this one too
        return;
      }
      call.lastSeq = seq;
      call.unavailable = 0;
    }
    this.callback(call.opts.onEvent, m);
    if (this.calls.get(call.id) !== call) return; // a callback closed the client
    switch (m.type) {
      case 'progress': {
        const p: Progress = { requestId: call.id, percentage: num(m.percentage), message: str(m.message) };
        if (typeof seq === 'number') p.seq = seq;
        if (m.metadata && typeof m.metadata === 'object') p.metadata = m.metadata;
        if (typeof m.timestamp === 'number') p.timestamp = m.timestamp;
        this.callback(call.opts.onProgress, p);
        return;
      }
      case 'started':
      case 'continued':
      case 'retrying': {
        if (typeof seq !== 'number') return;
        const l: Lifecycle = {
          requestId: call.id,
          type: m.type,
          seq,
          attempt: num(m.attempt),
          percentage: num(m.percentage),
          message: str(m.message),
        };
        if (typeof m.continuations === 'number') l.continuations = m.continuations;
        if (typeof m.next_at === 'number') l.nextAt = m.next_at;
        if (m.error) l.error = m.error;
        this.callback(call.opts.onLifecycle, l);
        return;
      }
      case 'result_chunk': {
        const index = m.index ?? 0;
        if (!Number.isInteger(index) || index < 0 || typeof m.data !== 'string') {
          this.finish(call, invalidResult(call.id, `malformed result chunk (index ${String(m.index)})`));
          return;
        }
        // An event (with seq) of index 0 starts a result over: chunks of an
        // attempt that was retried before its complete are dropped.
        if (index === 0 && typeof m.seq === 'number') call.chunks.clear();
        call.chunks.set(index, m.data);
        return;
      }
      case 'complete':
        this.settleResult(call, m.result, m.chunks);
        return;
      case 'response':
        if (m.success) this.settleResult(call, m.data, m.chunks);
        else this.finish(call, StreamerError.fromBody(m.error, call.id));
        return;
      case 'error': {
        const e = m.error;
        const refusedForNow =
          e?.code === ServerErrorCode.RATE_LIMITED ||
          (e?.code === ServerErrorCode.UNAVAILABLE && call.unavailable++ < UNAVAILABLE_RESUME_RETRIES);
        if (typeof seq !== 'number' && call.acked && refusedForNow) {
          // A resume was refused for now: try again later (UNAVAILABLE a
          // few times only; then the call rejects with it).
          const wait = retryAfterOf(e.details) ?? RATE_LIMIT_RETRY_MS;
          clearTimeout(call.retryTimer);
          call.retryTimer = setTimeout(() => {
            call.retryTimer = undefined;
            if (this.calls.get(call.id) === call && this.stateValue === 'open') this.sendResume(call, call.lastSeq);
          }, wait);
          return;
        }
        this.finish(call, StreamerError.fromBody(e, call.id));
        return;
      }
      default:
        return; // an extension this client does not know
    }
  }

  /** requestResume resumes call after its last seq, having seen seq, unless a resume on this connection is still catching up. */
  private requestResume(call: Call, seq: number): void {
    if (call.resumed && call.lastSeq < call.resumeUntil) {
      call.resumeUntil = Math.max(call.resumeUntil, seq);
      return;
    }
    this.sendResume(call, call.lastSeq);
    call.resumeUntil = seq;
  }

  private sendResume(call: Call, afterSeq: number): void {
    call.resumed = true;
    call.resumeUntil = afterSeq;
    const frame: ClientMessage = { action: 'resume', payload: { request_id: call.id, after_seq: afterSeq } };
    this.sendText(JSON.stringify(frame), frame);
  }

  private settleResult(call: Call, inline: unknown, chunks: unknown): void {
    if (chunks === undefined || chunks === 0) {
      this.finish(call, null, inline === undefined ? null : inline);
      return;
    }
    if (typeof chunks !== 'number' || !Number.isInteger(chunks) || chunks < 0) {
      this.finish(call, invalidResult(call.id, `bad chunk count ${String(chunks)}`));
      return;
    }
    const parts: string[] = [];
    for (let i = 0; i < chunks; i++) {
      const part = call.chunks.get(i);
      if (part === undefined) {
        this.finish(call, invalidResult(call.id, `chunk ${i} of ${chunks} is missing`));
        return;
      }
      parts.push(part);
    }
    if (call.chunks.size !== chunks) {
      this.finish(call, invalidResult(call.id, `${call.chunks.size} chunks for a result of ${chunks}`));
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(parts.join(''));
    } catch (err) {
      this.finish(call, invalidResult(call.id, 'the joined chunks are not JSON', err));
      return;
    }
    this.finish(call, null, value);
  }

  private callback<A>(fn: ((a: A) => void) | undefined, arg: A): void {
    if (!fn) return;
    try {
      fn(arg);
    } catch (err) {
      reportListenerError(err);
    }
  }
}

// ---- helpers --------------------------------------------------------------

let wsModule: Promise<WebSocketConstructor> | undefined;

/** loadWS imports the optional `ws` package (Node without a global WebSocket). */
function loadWS(): Promise<WebSocketConstructor> {
  if (!wsModule) {
    const name = 'ws'; // a variable, so that bundlers leave it alone
    wsModule = import(/* webpackIgnore: true */ /* @vite-ignore */ name).then(
      (mod: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor }) => {
        const Ctor = mod.WebSocket ?? mod.default;
        if (typeof Ctor !== 'function') throw new Error('the ws module has no WebSocket export');
        return Ctor;
      },
      (err: unknown) => {
        wsModule = undefined;
        throw new StreamerError({
          code: ClientErrorCode.NO_WEBSOCKET,
          message: 'no WebSocket implementation: install the "ws" package or pass options.WebSocket',
          cause: err,
        });
      },
    );
  }
  return wsModule;
}

/** closeSocket closes sock and resolves once it has closed, or after CLOSE_WAIT_MS (then it is terminated). */
function closeSocket(sock: WebSocketLike): Promise<void> {
  return new Promise((resolve) => {
    if (sock.readyState === 3) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      (sock as { terminate?: () => void }).terminate?.();
      resolve();
    }, CLOSE_WAIT_MS);
    sock.onopen = sock.onmessage = null;
    sock.onerror = () => undefined;
    sock.onclose = () => {
      clearTimeout(timer);
      resolve();
    };
    try {
      sock.close(1000, 'client closed');
    } catch {
      clearTimeout(timer);
      (sock as { terminate?: () => void }).terminate?.();
      resolve();
    }
  });
}

function withToken(url: string, token: string | undefined): string {
  if (token === undefined || token === '') return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

function newID(): string {
  const bytes = new Uint8Array(10);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return `js-${Date.now().toString(36)}-${hex}`;
}

function byteLength(s: string): number {
  if (s.length * 3 <= MAX_MESSAGE_BYTES) return s.length; // cannot exceed the limit
  return new TextEncoder().encode(s).length;
}

function invalid(message: string, requestId?: string, cause?: unknown): StreamerError {
  return new StreamerError({ code: 'INVALID_MESSAGE', message, requestId, cause });
}

function invalidResult(requestId: string, message: string, cause?: unknown): StreamerError {
  return new StreamerError({ code: ClientErrorCode.INVALID_RESULT, message: `request ${requestId}: ${message}`, requestId, cause });
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function toActions(m: ServerMessage): ActionInfo[] {
  const out: ActionInfo[] = [];
  for (const a of Array.isArray(m.actions) ? m.actions : []) {
    if (!a || typeof a !== 'object' || typeof a.name !== 'string') continue;
    const info: ActionInfo = { name: a.name, mode: str(a.mode) };
    if (Array.isArray(a.scopes)) info.scopes = a.scopes.filter((s): s is string => typeof s === 'string');
    out.push(info);
  }
  return out;
}

function toListPage(m: ServerMessage): ListPage {
  const page: ListPage = { requests: [] };
  for (const r of Array.isArray(m.requests) ? m.requests : []) {
    if (!r || typeof r !== 'object' || typeof r.request_id !== 'string') continue;
    page.requests.push({
      requestId: r.request_id,
      action: str(r.action),
      status: str(r.status),
      seq: num(r.seq),
      percentage: num(r.percentage),
      message: str(r.message),
      createdAt: num(r.created_at),
      updatedAt: num(r.updated_at),
    });
  }
  if (typeof m.cursor === 'string' && m.cursor !== '') page.cursor = m.cursor;
  return page;
}

function toStatusInfo(id: string, m: ServerMessage): StatusInfo {
  const s: StatusInfo = {
    requestId: id,
    action: str(m.action),
    status: str(m.status),
    seq: num(m.seq),
    percentage: num(m.percentage),
    message: str(m.message),
  };
  if (m.result !== undefined) s.result = m.result;
  if (typeof m.chunks === 'number') s.chunks = m.chunks;
  if (m.error) s.error = m.error;
  if (typeof m.created_at === 'number') s.createdAt = m.created_at;
  if (typeof m.updated_at === 'number') s.updatedAt = m.updated_at;
  return s;
}
