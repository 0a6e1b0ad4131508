/**
 * @streamer-go/client: the browser and Node client of the Streamer WebSocket
 * protocol (docs/protocol.md). See {@link StreamerClient}.
 *
 * @packageDocumentation
 */
export { StreamerClient, MAX_MESSAGE_BYTES } from './client.js';
export { StreamerError, ClientErrorCode, ServerErrorCode, isStreamerError } from './errors.js';
export type { StreamerErrorInit } from './errors.js';
export { Emitter } from './emitter.js';
export type { Listener } from './emitter.js';
export type {
  Ack,
  ActionInfo,
  CallOptions,
  ClientMessage,
  ConnectionState,
  ErrorBody,
  Lifecycle,
  ListedRequest,
  ListOptions,
  ListPage,
  Progress,
  RequestOptions,
  RequestStatus,
  ResumeOptions,
  ServerMessage,
  StatusInfo,
  StreamerClientEvents,
  StreamerClientOptions,
  WebSocketConstructor,
  WebSocketLike,
  WireListedRequest,
} from './types.js';
