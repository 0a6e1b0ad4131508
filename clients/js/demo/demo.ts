// The dev server's demo page (cli/web/index.html), built on the
// SDK. Bundled by scripts/build-demo.mjs into cli/web/app.js, which
// is committed: `streamer dev` never needs npm.
//
// Test hooks: the element ids of index.html, each job's
// li.job[data-id][data-status][data-seq], and window.streamerDemo, which
// exposes the client and every job's applied seqs.
import { StreamerClient, StreamerError } from '../src/index.js';
import type { Lifecycle, Progress, ServerMessage } from '../src/index.js';

const LOG_MAX = 200;
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

interface Job {
  id: string;
  title: string;
  status: string;
  pct: number;
  msg: string;
  result: unknown;
  done: boolean;
  /** Every seq applied to the job, in order: each must appear once. */
  seqs: number[];
  el: HTMLLIElement;
}

/** DemoGlobals is what the page exposes as window.streamerDemo. */
interface DemoGlobals {
  client: StreamerClient | null;
  jobs: Map<string, Job>;
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`demo: element #${id} is missing`);
  return e as T;
}

const ui = {
  token: $<HTMLInputElement>('token'),
  connect: $<HTMLButtonElement>('connect'),
  drop: $<HTMLButtonElement>('drop'),
  state: $('state'),
  actions: $('actions'),
  delayMs: $<HTMLInputElement>('delay-ms'),
  delaySteps: $<HTMLInputElement>('delay-steps'),
  startDelay: $<HTMLButtonElement>('start-delay'),
  reportStart: $<HTMLInputElement>('report-start'),
  reportEnd: $<HTMLInputElement>('report-end'),
  startReport: $<HTMLButtonElement>('start-report'),
  jobs: $<HTMLUListElement>('jobs'),
  log: $<HTMLOListElement>('log'),
};

const demo: DemoGlobals = { client: null, jobs: new Map() };
(window as unknown as { streamerDemo: DemoGlobals }).streamerDemo = demo;

// ---- Connection -----------------------------------------------------------

function setState(state: 'connected' | 'connecting' | 'reconnecting' | 'disconnected', detail?: string): void {
  ui.state.dataset.state = state;
  ui.state.textContent = detail ? `${state} · ${detail}` : state;
  ui.drop.disabled = state !== 'connected';
  ui.connect.textContent = demo.client ? 'Reconnect' : 'Connect';
}

function wsURL(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws`;
}

/** client returns the page's client, making it on first use; null without a token. */
function client(): StreamerClient | null {
  if (!ui.token.value.trim()) {
    setState('disconnected', 'enter a token');
    ui.token.focus();
    return null;
  }
  if (demo.client) return demo.client;
  let opened = false;
  // getToken reads the box on every (re)connect: paste a fresh token and it is used.
  const c = new StreamerClient(wsURL(), {
    getToken: () => ui.token.value.trim(),
    minBackoffMs: 500,
    maxBackoffMs: 10000,
    keepaliveMs: 60000,
  });
  c.on('open', (e) => {
    opened = true;
    setState('connected');
    log('!', e.reconnect ? 'reconnected: resuming unfinished jobs' : 'connected');
    if (!e.reconnect) showActions(c);
  });
  c.on('close', (e) => log('!', `closed (${e.code}${e.reason ? ' ' + e.reason : ''})`));
  c.on('reconnecting', (e) => {
    let detail = `retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s`;
    if (!opened) detail += ' (check the token)';
    setState('reconnecting', detail);
  });
  c.on('message', (m) => log('<', JSON.stringify(m)));
  c.on('send', (m) => {
    if (m.action !== 'ping') log('>', JSON.stringify(m));
  });
  demo.client = c;
  setState('connecting');
  return c;
}

/** showActions lists the actions the server serves this token (the reserved `actions` action). */
function showActions(c: StreamerClient): void {
  c.actions()
    .then((list) => {
      ui.actions.textContent = list.length
        ? 'Actions: ' + list.map((a) => `${a.name} (${a.mode})`).join(', ')
        : 'This token may call no action.';
    })
    .catch((err: unknown) => log('!', `cannot list actions: ${String(err)}`));
}

function connect(): void {
  const had = demo.client;
  const c = client();
  if (!c) return;
  if (had) {
    log('!', 'reconnecting with the token in the box');
    c.reconnect();
  } else {
    c.connect().catch((err: unknown) => log('!', `cannot connect: ${String(err)}`));
  }
}

function drop(): void {
  if (!demo.client || demo.client.state !== 'open') return;
  log('!', 'dropping the connection');
  demo.client.reconnect();
}

function log(dir: string, text: string): void {
  const li = document.createElement('li');
  if (dir === '>') li.className = 'out';
  const t = new Date().toISOString().slice(11, 23);
  li.textContent = `${t} ${dir} ${text.length > 400 ? text.slice(0, 400) + '…' : text}`;
  ui.log.appendChild(li);
  while (ui.log.childElementCount > LOG_MAX) ui.log.firstElementChild?.remove();
  ui.log.scrollTop = ui.log.scrollHeight;
}

// ---- Jobs -------------------------------------------------------------------

function newID(): string {
  const r = Math.random().toString(36).slice(2, 8);
  return `web-${Date.now().toString(36)}-${r}`;
}

function startJob(action: string, payload: unknown, title: string): void {
  const c = client();
  if (!c) return;
  const job: Job = {
    id: newID(),
    title,
    status: 'sending',
    pct: 0,
    msg: '',
    result: undefined,
    done: false,
    seqs: [],
    el: renderNew(title),
  };
  job.el.dataset.id = job.id;
  demo.jobs.set(job.id, job);
  if (c.state !== 'open') job.status = 'waiting for connection';
  render(job);
  c.request(action, payload, {
    id: job.id,
    onAck: (a) => {
      if (job.status !== 'canceling') job.status = a.status;
      if (typeof a.percentage === 'number') job.pct = Math.max(job.pct, a.percentage);
      if (a.message) job.msg = a.message;
      render(job);
    },
    onLifecycle: (l: Lifecycle) => {
      if (job.status !== 'canceling') job.status = l.type === 'retrying' ? 'retrying' : 'running';
      if (l.type === 'started') job.msg = `started (attempt ${l.attempt})`;
      if (l.type === 'continued') job.msg = `continued from its checkpoint (${l.continuations ?? 0})`;
      if (l.type === 'retrying') job.msg = `attempt ${l.attempt} failed (${l.error?.code ?? '?'}); retrying`;
      render(job);
    },
    onProgress: (p: Progress) => {
      job.pct = Math.max(job.pct, p.percentage);
      if (p.message) job.msg = p.message;
      if (job.status !== 'canceling') job.status = 'running';
      render(job);
    },
    onEvent: (m: ServerMessage) => {
      if (typeof m.seq === 'number' && m.type !== 'acknowledgment') job.seqs.push(m.seq);
      if (m.type === 'result_chunk') {
        job.msg = `receiving the result (${(m.index ?? 0) + 1}/${m.total ?? '?'})`;
        if (job.status !== 'canceling') job.status = 'running';
      }
      render(job);
    },
  }).then(
    (result) => finish(job, 'succeeded', result, null),
    (err: unknown) => {
      const e = err instanceof StreamerError ? err : new StreamerError({ code: 'INTERNAL_ERROR', message: String(err) });
      finish(job, e.code === 'CANCELED' ? 'canceled' : 'failed', undefined, e);
    },
  );
}

function cancelJob(job: Job): void {
  const c = demo.client;
  if (job.done || !c) return;
  job.status = 'canceling';
  render(job);
  c.cancel(job.id).then(
    (s) => {
      // Already finished: the request's own promise settles it.
      if (!job.done && !TERMINAL.has(s.status)) job.status = s.status;
      render(job);
    },
    (err: unknown) => {
      if (job.done) return;
      job.msg = `cancel failed: ${err instanceof StreamerError ? err.code : String(err)}`;
      render(job);
    },
  );
}

function finish(job: Job, status: string, result: unknown, error: StreamerError | null): void {
  job.done = true;
  job.status = status;
  if (status === 'succeeded') {
    job.pct = 100;
    job.result = result;
    job.msg = describeResult(result);
  } else if (error) {
    job.msg = describeError(error);
  }
  render(job);
}

function describeResult(result: unknown): string {
  const r = result as { url?: unknown; rows?: unknown; size?: unknown } | null;
  if (r && typeof r === 'object' && typeof r.url === 'string') {
    const parts: string[] = [];
    if (typeof r.rows === 'number') parts.push(`${r.rows} rows`);
    if (typeof r.size === 'number') parts.push(formatBytes(r.size));
    return 'done' + (parts.length ? ': ' + parts.join(', ') : '');
  }
  const text = JSON.stringify(result);
  if (text === undefined) return 'done';
  return 'done: ' + (text.length > 120 ? text.slice(0, 120) + '…' : text);
}

function describeError(e: StreamerError): string {
  let text = `${e.code}: ${e.message}`;
  if (Array.isArray(e.details) && e.details.length) {
    text += ' (' + e.details.map((d: { message?: string; field?: string }) => d.message || d.field).join('; ') + ')';
  }
  if (e.retryable && e.retryAfterMs !== undefined) {
    // RATE_LIMITED, UNAVAILABLE: worth sending again, later.
    text += ` (retry in ${(e.retryAfterMs / 1000).toFixed(1)} s)`;
  }
  return text;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function safeURL(u: string): string | null {
  try {
    const url = new URL(u, location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

// ---- Rendering --------------------------------------------------------------

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderNew(title: string): HTMLLIElement {
  const li = el('li', 'job');
  const head = el('div', 'job-head');
  head.append(el('span', 'title', title), el('span', 'rid'), el('span', 'status'));
  const track = el('div', 'track');
  track.setAttribute('role', 'progressbar');
  track.setAttribute('aria-valuemin', '0');
  track.setAttribute('aria-valuemax', '100');
  track.append(el('div', 'bar'));
  const foot = el('div', 'job-foot');
  const link = el('a', 'link', 'Download report');
  link.hidden = true;
  link.target = '_blank';
  link.rel = 'noopener noreferrer';
  const cancel = el('button', 'cancel secondary', 'Cancel');
  cancel.type = 'button';
  foot.append(el('span', 'pct'), el('span', 'msg'), link, cancel);
  li.append(head, track, foot);
  ui.jobs.prepend(li);
  return li;
}

function render(job: Job): void {
  const li = job.el;
  const q = <T extends HTMLElement>(sel: string) => li.querySelector(sel) as T;
  const pct = Math.max(0, Math.min(100, job.pct));
  const shown = Math.round(pct * 10) / 10;
  li.dataset.status = job.status;
  li.dataset.seq = String(job.seqs.length ? job.seqs[job.seqs.length - 1] : 0);
  q('.rid').textContent = job.id;
  q('.status').textContent = job.status;
  q('.bar').style.width = `${pct}%`;
  q('.track').setAttribute('aria-valuenow', String(shown));
  q('.pct').textContent = `${shown}%`;
  q('.msg').textContent = job.msg;
  const cancel = q<HTMLButtonElement>('.cancel');
  cancel.hidden = job.done;
  cancel.disabled = job.status === 'canceling';
  cancel.onclick = () => cancelJob(job);
  const link = q<HTMLAnchorElement>('.link');
  const r = job.result as { url?: unknown } | undefined;
  const href = r && typeof r.url === 'string' ? safeURL(r.url) : null;
  if (href) {
    link.href = href;
    link.hidden = false;
  }
}

// ---- Wiring -----------------------------------------------------------------

function isoDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** intValue returns the input as an integer, or its raw text for the server to refuse. */
function intValue(input: HTMLInputElement): number | string {
  const n = Number(input.value);
  return input.value !== '' && Number.isFinite(n) ? Math.trunc(n) : input.value;
}

ui.connect.addEventListener('click', connect);
ui.token.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') connect();
});
ui.drop.addEventListener('click', drop);
ui.startDelay.addEventListener('click', () => {
  const ms = intValue(ui.delayMs);
  const steps = intValue(ui.delaySteps);
  startJob('delay', { ms, steps }, `delay ${ms} ms × ${steps}`);
});
ui.startReport.addEventListener('click', () => {
  const start = ui.reportStart.value;
  const end = ui.reportEnd.value;
  startJob('generate_report', { startDate: start, endDate: end }, `report ${start} → ${end}`);
});

const today = new Date();
ui.reportEnd.value = isoDate(today);
ui.reportStart.value = isoDate(new Date(today.getFullYear(), today.getMonth(), today.getDate() - 6));

setState('disconnected');
const initial = new URLSearchParams(location.search).get('token');
if (initial) {
  ui.token.value = initial;
  connect();
}
