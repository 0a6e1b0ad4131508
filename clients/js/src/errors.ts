import type { ErrorBody } from './types.js';

/**
 * Error codes the client itself produces, next to the protocol's codes
 * (`INVALID_ACTION`, `VALIDATION_ERROR`, `NOT_FOUND`, ...; see
 * docs/protocol.md section 4), which are passed through from the server.
 */
export const ClientErrorCode = {
  /**
   * The caller gave up: its AbortSignal fired. The client has asked the
   * server to cancel the request. Also the code of the server's own
   * terminal error when a request is canceled by anyone.
   */
  CANCELED: 'CANCELED',
  /** The request's `timeoutMs` passed; the client has asked the server to cancel it. */
  TIMEOUT: 'TIMEOUT',
  /** `close()` was called before the request finished. */
  CLOSED: 'CLOSED',
  /** The result's chunks were missing, inconsistent or not JSON. */
  INVALID_RESULT: 'INVALID_RESULT',
  /** A request with the same id is already in flight on this client. */
  ALREADY_PENDING: 'ALREADY_PENDING',
  /** The request frame exceeds the protocol's 128 KiB message limit. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** No WebSocket implementation: in Node 20, install the `ws` package or pass `options.WebSocket`. */
  NO_WEBSOCKET: 'NO_WEBSOCKET',
} as const;

/** StreamerErrorInit are the fields of a {@link StreamerError}. */
export interface StreamerErrorInit {
  code: string;
  message: string;
  details?: unknown;
  requestId?: string;
  retryable?: boolean;
  cause?: unknown;
}

/**
 * Server error codes the client gives a meaning to, next to the others of
 * docs/protocol.md section 4, which are passed through.
 */
export const ServerErrorCode = {
  /**
   * Too many requests: the sender is over a rate limit, and nothing was
   * stored or run. It is `retryable`, and `retryAfterMs` says when the limit
   * will admit the call. The client does not send a refused request again by
   * itself: the caller may, after `retryAfterMs` (with the same `id`), or give
   * up. Test with `isStreamerError(err, ServerErrorCode.RATE_LIMITED)`.
   */
  RATE_LIMITED: 'RATE_LIMITED',
  /**
   * The server could not serve the call for now (its storage failed or was
   * throttled). It is `retryable`, and `retryAfterMs` says when to try again.
   * The client does not send a refused request again by itself: the caller
   * may, after `retryAfterMs` and with the same `id` (a request stored after
   * all is then attached to, not run twice), and should give up after a few
   * tries. A refused resume of a running request is retried by the client a
   * few times, after `retryAfterMs` each, before the call rejects.
   */
  UNAVAILABLE: 'UNAVAILABLE',
  /**
   * A quota of the server was reached (docs/protocol.md section 5):
   * `details` is `{quota, limit}`, where `quota` is `pending_requests`,
   * `result_bytes` or `events`. Not retryable as it is: wait for one of
   * your requests to end, or send a smaller one.
   */
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
} as const;

/**
 * StreamerError is the error every promise of the client rejects with: a
 * protocol error sent by the server (its `code`, `message`, `details`), or one
 * of {@link ClientErrorCode}. Branch on `code`, never on `message`.
 */
export class StreamerError extends Error {
  /** The protocol error code, such as `VALIDATION_ERROR` or `CANCELED`. */
  readonly code: string;
  /** Extra information: for `VALIDATION_ERROR` a list of `{field, rule, message}`. */
  readonly details: unknown;
  /** The id of the request the error is about, when known. */
  readonly requestId: string | undefined;
  /** Whether the server said retrying may succeed. */
  readonly retryable: boolean;
  /**
   * How long the server asked to wait before retrying, in milliseconds:
   * `details.retry_after_ms` (sent with `RATE_LIMITED` and `UNAVAILABLE`), or
   * undefined when the error carries none.
   */
  readonly retryAfterMs: number | undefined;

  constructor(init: StreamerErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'StreamerError';
    this.code = init.code;
    this.details = init.details;
    this.requestId = init.requestId;
    this.retryable = init.retryable ?? false;
    this.retryAfterMs = retryAfterOf(init.details);
  }

  /** fromBody makes a StreamerError of an `error` object of the protocol. */
  static fromBody(body: ErrorBody | undefined, requestId: string | undefined): StreamerError {
    const code = body && typeof body.code === 'string' && body.code !== '' ? body.code : 'INTERNAL_ERROR';
    const message = body && typeof body.message === 'string' && body.message !== '' ? body.message : 'request failed';
    return new StreamerError({ code, message, details: body?.details, requestId, retryable: body?.retryable === true });
  }
}

/** isStreamerError reports whether err is a {@link StreamerError}, optionally of the given code. */
export function isStreamerError(err: unknown, code?: string): err is StreamerError {
  return err instanceof StreamerError && (code === undefined || err.code === code);
}

/** retryAfterOf reads `retry_after_ms` of an error's details. */
export function retryAfterOf(details: unknown): number | undefined {
  if (!details || typeof details !== 'object' || Array.isArray(details)) return undefined;
  const ms = (details as { retry_after_ms?: unknown }).retry_after_ms;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}
