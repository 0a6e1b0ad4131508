/** ErrorBody is the `error` object of a protocol message. */
export interface ErrorBody {
  code: string;
  message: string;
  details?: unknown;
  retryable?: boolean;
}

/**
 * ServerMessage is one message from the server, as it is on the wire
 * (docs/protocol.md section 3). Which fields are set depends on `type`.
 */
export interface ServerMessage {
  type:
    | 'response'
    | 'acknowledgment'
    | 'progress'
    | 'result_chunk'
    | 'complete'
    | 'error'
    | 'status'
    | 'pong'
    | 'actions'
    | 'started'
    | 'continued'
    | 'retrying'
    | 'list'
    | string;
  request_id?: string;
  seq?: number;
  status?: string;
  action?: string;
  percentage?: number;
  message?: string;
  metadata?: Record<string, unknown>;
  index?: number;
  total?: number;
  data?: unknown;
  result?: unknown;
  chunks?: number;
  success?: boolean;
  error?: ErrorBody;
  timestamp?: number;
  created_at?: number;
  updated_at?: number;
  /** The list of an `actions` message (docs/protocol.md section 5). */
  actions?: ActionInfo[];
  /** The attempt of a lifecycle event (`started`, `continued`, `retrying`). */
  attempt?: number;
  /** How many times a `continued` request was continued. */
  continuations?: number;
  /** When a `retrying` request runs again (Unix ms). */
  next_at?: number;
  /** The page of a `list` message, newest first (docs/protocol.md section 5). */
  requests?: WireListedRequest[];
  /** Continues a `list` message's listing; absent on the last page. */
  cursor?: string;
}

/**
 * Lifecycle is a lifecycle event of an asynchronous request, passed to
 * `onLifecycle` (docs/protocol.md section 5): a run `started`, or
 * `continued` from a checkpoint, or a failed attempt is `retrying`.
 */
export interface Lifecycle {
  requestId: string;
  type: 'started' | 'continued' | 'retrying';
  seq: number;
  /** 1 for the first attempt, one more per retry after a failure. */
  attempt: number;
  /** How many times the request was continued (`continued` only). */
  continuations?: number;
  /** When the request runs again, Unix ms (`retrying` only). */
  nextAt?: number;
  /** Why the attempt failed (`retrying` only). */
  error?: ErrorBody;
  /** The request's progress so far. */
  percentage: number;
  message: string;
}

/** WireListedRequest is one request of a `list` message, as it is on the wire. */
export interface WireListedRequest {
  request_id: string;
  action: string;
  status: string;
  seq: number;
  percentage: number;
  message: string;
  created_at: number;
  updated_at: number;
}

/** ActionInfo is one action the server serves, as `actions()` lists it. */
export interface ActionInfo {
  /** The action's name, to pass to `request()`. */
  name: string;
  /** `sync`, `async`, or `auto` when the server decides per request. */
  mode: 'sync' | 'async' | 'auto' | string;
  /** The scopes the action requires (the principal holds them all); absent when none. */
  scopes?: string[];
}

/** ClientMessage is one message to the server (docs/protocol.md section 2). */
export interface ClientMessage {
  action: string;
  id?: string;
  payload?: unknown;
  metadata?: Record<string, string>;
}

/** Progress is a progress report of a request, passed to `onProgress`. */
export interface Progress {
  /** The request the progress is about. */
  requestId: string;
  /** 0 to 100, fractions allowed; never decreases within a request. */
  percentage: number;
  /** The handler's message, possibly empty. */
  message: string;
  /** The event's seq; absent for the live progress of a synchronous request. */
  seq?: number;
  /** Optional metadata the handler attached. */
  metadata?: Record<string, unknown>;
  /** Unix milliseconds, when the server sent one. */
  timestamp?: number;
}

/** Ack is an `acknowledgment` of an asynchronous request, passed to `onAck`. */
export interface Ack {
  requestId: string;
  /** `queued` for a new request; the current status when attached to an existing one. */
  status: string;
  /** 0 for a new request; the last stored seq when attached. */
  seq: number;
  percentage?: number;
  message?: string;
}

/** RequestStatus is the status of a stored request. */
export type RequestStatus = 'queued' | 'running' | 'canceling' | 'succeeded' | 'failed' | 'canceled';

/** StatusInfo is a `status` message: the reply to `status()` and `cancel()`. */
export interface StatusInfo {
  requestId: string;
  action: string;
  status: RequestStatus | string;
  /** The last stored seq. */
  seq: number;
  percentage: number;
  message: string;
  /** The result, when the request succeeded and it fits in one message. */
  result?: unknown;
  /** Set when the result was too large for the status message: resume to get it. */
  chunks?: number;
  /** The failure, when the request failed or was canceled. */
  error?: ErrorBody;
  /** Unix milliseconds. */
  createdAt?: number;
  /** Unix milliseconds. */
  updatedAt?: number;
}

/**
 * WebSocketLike is the part of the WebSocket API the client uses: the
 * browser's WebSocket, Node 22's global one and the `ws` package's all fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
}

/** WebSocketConstructor makes a {@link WebSocketLike} connected to url. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** ConnectionState is where the client's connection is. */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** StreamerClientOptions configure a {@link StreamerClient}. */
export interface StreamerClientOptions {
  /** A fixed JWT, sent as the `token` query parameter. */
  token?: string;
  /**
   * Returns the JWT to connect with; called before every connection attempt,
   * reconnects included, so it can refresh an expiring token. Wins over `token`.
   */
  getToken?: () => string | Promise<string>;
  /**
   * The WebSocket constructor. Default: `globalThis.WebSocket`, else (Node
   * 20) the `ws` package, imported on first use.
   */
  WebSocket?: WebSocketConstructor;
  /** The first reconnect delay's ceiling, in ms (full jitter: the delay is random below it). Default 500. */
  minBackoffMs?: number;
  /** The largest reconnect delay ceiling, in ms. Default 30000. */
  maxBackoffMs?: number;
  /** How often to send `ping` while connected, in ms; 0 disables. Default 300000 (5 minutes, half API Gateway's idle limit). */
  keepaliveMs?: number;
  /** How long one connection attempt may take before it counts as failed, in ms. Default 15000. */
  connectTimeoutMs?: number;
  /** The default `timeoutMs` of request, resume and status calls; 0 means none. Default 0. */
  timeoutMs?: number;
}

/** RequestOptions configure one {@link StreamerClient.request}. */
export interface RequestOptions {
  /** Called with each progress report, in order, once per seq. */
  onProgress?: (p: Progress) => void;
  /** Called when the server acknowledges (or attaches to) the asynchronous request. */
  onAck?: (a: Ack) => void;
  /** Called with each lifecycle event (`started`, `continued`, `retrying`), in seq order with the progress. */
  onLifecycle?: (l: Lifecycle) => void;
  /**
   * Called with every message applied to the request, in order, after
   * duplicates are dropped and gaps filled: acknowledgments, progress,
   * result chunks and the terminal message. For logs and tests.
   */
  onEvent?: (m: ServerMessage) => void;
  /** The request id (1-128 chars of `[A-Za-z0-9_.:-]`). Default: a new random one. */
  id?: string;
  /** Informational string metadata sent with the request. */
  metadata?: Record<string, string>;
  /** Aborting it cancels the request on the server and rejects with code `CANCELED`. */
  signal?: AbortSignal;
  /** Give up after this many ms: cancels on the server and rejects with code `TIMEOUT`. 0: no limit. */
  timeoutMs?: number;
}

/** ResumeOptions configure one {@link StreamerClient.resume}. */
export interface ResumeOptions extends Omit<RequestOptions, 'id' | 'metadata'> {
  /** Resume after this seq: events up to it are not replayed. Default 0 (the whole history). */
  afterSeq?: number;
}

/** CallOptions configure one {@link StreamerClient.status}, {@link StreamerClient.cancel} or {@link StreamerClient.actions}. */
export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** ListOptions configure one {@link StreamerClient.list}. */
export interface ListOptions extends CallOptions {
  /** Only requests in one of these statuses; absent or empty: all. */
  status?: RequestStatus[];
  /** Requests per page, 1 to 100; absent: the server's default (20). */
  limit?: number;
  /** The `cursor` of the previous page; absent: start with the newest request. */
  cursor?: string;
}

/** ListedRequest is one request of a {@link ListPage}. */
export interface ListedRequest {
  requestId: string;
  action: string;
  status: RequestStatus | string;
  /** The last stored seq (0 before the first event): pass it to `resume()` as `afterSeq` to follow from there. */
  seq: number;
  /** The latest progress. */
  percentage: number;
  /** The latest progress message, cut to 512 bytes. */
  message: string;
  /** Unix milliseconds. */
  createdAt: number;
  /** Unix milliseconds. */
  updatedAt: number;
}

/** ListPage is the reply to {@link StreamerClient.list}: a page of the principal's own requests, newest first. */
export interface ListPage {
  requests: ListedRequest[];
  /** Pass it as `cursor` for the next page; absent on the last page. A page may be short, even empty, and still have one. */
  cursor?: string;
}

/** The events of a {@link StreamerClient} and what their listeners get. */
export interface StreamerClientEvents {
  /** A connection opened; `reconnect` is false for the first one. */
  open: { reconnect: boolean };
  /** The connection closed; the client reconnects unless `close()` was called. */
  close: { code: number; reason: string; willReconnect: boolean };
  /** A reconnect attempt is scheduled after `delayMs`. */
  reconnecting: { attempt: number; delayMs: number; error?: unknown };
  /** Every message from the server, parsed. */
  message: ServerMessage;
  /** Every message sent to the server. */
  send: ClientMessage;
}
