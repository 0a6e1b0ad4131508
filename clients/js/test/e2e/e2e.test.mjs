// End-to-end: a real `streamer dev` (built from this repo with go build), the
// demo page in Debian's headless Chromium driven by playwright-core, and the
// Node example script.
//
// Needs go on PATH and /usr/bin/chromium (override with CHROMIUM); set
// STREAMER_E2E=0 to skip.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

const pkgRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const repoRoot = path.resolve(pkgRoot, '../..');
const artifacts = path.join(pkgRoot, 'test-artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SECRET = 'e2e-secret-0123456789abcdef0123456789abcdef';
// In CI a missing browser is a failure, never a skip.
if (process.env.CI === 'true' && !existsSync(CHROMIUM)) {
  throw new Error(`${CHROMIUM} is missing: run make browser (CI=true, so the browser tests may not be skipped)`);
}
const skip = process.env.CI !== 'true' && process.env.STREAMER_E2E === '0' ? 'STREAMER_E2E=0' : !existsSync(CHROMIUM) ? `${CHROMIUM} is missing (make browser)` : false;

/** DevServer is a running `streamer dev` and what it printed. */
class DevServer {
  static async start(bin, dataDir, addr = '127.0.0.1:0') {
    const proc = spawn(bin, ['dev', '--addr', addr, '--data-dir', dataDir, '--log-level', 'warn'], {
      env: { ...process.env, STREAMER_JWT_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const s = new DevServer(proc);
    await s.ready;
    return s;
  }

  constructor(proc) {
    this.proc = proc;
    this.stdout = '';
    this.stderr = '';
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`streamer dev printed no URLs in 30 s:\n${this.stdout}\n${this.stderr}`)), 30000);
      proc.stdout.setEncoding('utf8');
      proc.stderr.setEncoding('utf8');
      proc.stderr.on('data', (d) => (this.stderr += d));
      proc.stdout.on('data', (d) => {
        this.stdout += d;
        const ws = /^\s*websocket:\s+(\S+)/m.exec(this.stdout);
        const page = /^\s*demo page:\s+(\S+)/m.exec(this.stdout);
        const token = /^\s*token:\s+(\S+)/m.exec(this.stdout);
        if (ws && page && token) {
          clearTimeout(timer);
          this.wsURL = ws[1];
          this.pageURL = page[1];
          this.token = token[1];
          this.addr = new URL(this.pageURL).host;
          resolve();
        }
      });
      this.exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`streamer dev exited (${code}):\n${this.stdout}\n${this.stderr}`));
      });
    });
    this.ready.catch(() => undefined);
  }

  /** stop ends the server (SIGTERM, then SIGKILL after 15 s) and waits for it. */
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 15000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** run runs a command and resolves with its stdout, rejecting with its output on failure. */
function run(cmd, args, opts) {
  return promisify(execFile)(cmd, args, { maxBuffer: 16 << 20, ...opts }).catch((err) => {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  });
}

describe('end to end: streamer dev, the demo page in Chromium, the Node example', { skip, timeout: 170000 }, () => {
  let tmp;
  let bin;
  let dataDir;
  let server;
  let browser;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'streamer-js-e2e-'));
    bin = path.join(tmp, 'streamer');
    dataDir = path.join(tmp, 'data');
    await mkdir(artifacts, { recursive: true });
    await run('go', ['build', '-o', bin, './cmd/streamer'], { cwd: repoRoot, timeout: 150000 });
    server = await DevServer.start(bin, dataDir);
    browser = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1000, height: 760 },
    });
  }, { timeout: 200000 });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** openPage opens the demo page (its URL carries the token) and waits until it is connected. */
  async function openPage() {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err));
    await page.goto(server.pageURL);
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });
    return { page, errors };
  }

  /** startDelay starts a delay job from the form and returns its row's request id. */
  async function startDelay(page, ms, steps) {
    const before = await page.locator('.job').count();
    await page.fill('#delay-ms', String(ms));
    await page.fill('#delay-steps', String(steps));
    await page.click('#start-delay');
    await page.waitForFunction((n) => document.querySelectorAll('.job').length === n + 1, before);
    return page.locator('.job').first().getAttribute('data-id');
  }

  const row = (page, id) => page.locator(`.job[data-id="${id}"]`);

  async function waitSeq(page, id, atLeast, timeout = 15000) {
    await page.waitForFunction(
      ([id, n]) => Number(document.querySelector(`.job[data-id="${id}"]`)?.dataset.seq) >= n,
      [id, atLeast],
      { timeout },
    );
  }

  async function waitStatus(page, id, status, timeout = 30000) {
    await page.waitForFunction(
      ([id, s]) => document.querySelector(`.job[data-id="${id}"]`)?.dataset.status === s,
      [id, status],
      { timeout },
    );
  }

  /** assertResumed checks the page sent resume for job id after a seq > 0. */
  async function assertResumed(page, id) {
    const sent = await page.locator('#log li.out').allTextContents();
    const resumes = sent.filter((l) => l.includes('"action":"resume"') && l.includes(`"request_id":"${id}"`));
    assert.ok(resumes.length >= 1, `no resume sent for ${id}:\n${sent.join('\n')}`);
    assert.match(resumes[0], /"after_seq":[1-9]\d*/);
  }

  /** assertEverySeqOnce checks the job applied seqs 1..N exactly once each, N its terminal seq. */
  async function assertEverySeqOnce(page, id) {
    const seqs = await page.evaluate((id) => window.streamerDemo.jobs.get(id).seqs, id);
    const last = Number(await row(page, id).getAttribute('data-seq'));
    assert.ok(last >= 2, `job ${id} saw seqs ${seqs}`);
    assert.deepEqual(
      seqs,
      Array.from({ length: last }, (_, i) => i + 1),
    );
  }

  test('progress bar advances, a screenshot mid-progress, and cancel', async () => {
    const { page, errors } = await openPage();
    // The page lists the server's actions (the reserved `actions` action).
    await page.waitForFunction(() => /delay \(async\)/.test(document.getElementById('actions').textContent), null, { timeout: 10000 });
    assert.match(await page.textContent('#actions'), /echo \(sync\).*generate_report \(async\)/);
    const id = await startDelay(page, 20000, 100);
    const width = () => row(page, id).locator('.bar').evaluate((e) => e.getBoundingClientRect().width);
    await waitSeq(page, id, 3);
    const w1 = await width();
    await waitSeq(page, id, 8);
    // The bar's width transition takes 150 ms: poll it.
    await page.waitForFunction(
      ([id, w]) => document.querySelector(`.job[data-id="${id}"] .bar`).getBoundingClientRect().width > w,
      [id, w1],
      { timeout: 5000 },
    );
    const w2 = await width();
    assert.ok(w1 > 0 && w2 > w1, `bar width ${w1} then ${w2}`);
    assert.equal(await row(page, id).getAttribute('data-status'), 'running');
    assert.match(await row(page, id).locator('.pct').textContent(), /^\d+(\.\d)?%$/);
    await page.screenshot({ path: path.join(artifacts, 'demo-progress.png'), fullPage: true });

    await row(page, id).locator('.cancel').click();
    await waitStatus(page, id, 'canceled', 15000);
    assert.match(await row(page, id).locator('.msg').textContent(), /^CANCELED: /);
    assert.equal(await row(page, id).locator('.cancel').isHidden(), true);
    // The server agrees.
    const st = await page.evaluate((id) => window.streamerDemo.client.status(id), id);
    assert.equal(st.status, 'canceled');
    assert.equal(st.error?.code, 'CANCELED');
    await assertEverySeqOnce(page, id);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the drop button: the page reconnects, resumes, and sees every seq once', async () => {
    const { page, errors } = await openPage();
    await page.evaluate(() => {
      window.opens = [];
      window.streamerDemo.client.on('open', (e) => window.opens.push(e.reconnect));
    });
    const id = await startDelay(page, 4000, 20);
    await waitSeq(page, id, 3);
    await page.click('#drop');
    await page.waitForFunction(() => window.opens.length === 1, null, { timeout: 15000 });
    await waitStatus(page, id, 'succeeded');
    assert.deepEqual(await page.evaluate(() => window.opens), [true]);
    assert.equal(await page.getAttribute('#state', 'data-state'), 'connected');
    assert.match(await row(page, id).locator('.msg').textContent(), /^done: \{"steps":20,"ms":4000\}$/);
    await assertResumed(page, id);
    await assertEverySeqOnce(page, id);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the server restarts mid-job: the page reconnects, resumes, and sees every seq once', async () => {
    const { page, errors } = await openPage();
    const id = await startDelay(page, 5000, 20);
    await waitSeq(page, id, 3);
    const addr = server.addr;
    await server.stop();
    await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10000 });
    server = await DevServer.start(bin, dataDir, addr);
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 20000 });
    await waitStatus(page, id, 'succeeded', 40000);
    await assertResumed(page, id);
    await assertEverySeqOnce(page, id);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a 2 MiB result arrives intact through the SDK in the page', async () => {
    const { page, errors } = await openPage();
    const bytes = 2 * 1024 * 1024;
    const got = await page.evaluate(async (bytes) => {
      const client = window.streamerDemo.client;
      let chunks = 0;
      const off = client.on('message', (m) => {
        if (m.type === 'result_chunk' && m.request_id === 'blob-e2e') chunks++;
      });
      const r = await client.request('blob', { bytes }, { id: 'blob-e2e' });
      off();
      return { type: typeof r, length: r.length, allX: /^x+$/.test(r), chunks };
    }, bytes);
    assert.deepEqual({ ...got, chunks: undefined }, { type: 'string', length: bytes, allX: true, chunks: undefined });
    assert.ok(got.chunks >= 16, `the result came in ${got.chunks} chunks`);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the Node example prints progress and the result', async () => {
    const { stdout } = await run(process.execPath, ['examples/report.mjs', server.wsURL, server.token, '2024-01-01', '2024-01-03'], {
      cwd: pkgRoot,
      timeout: 60000,
    });
    assert.match(stdout, /^\d+(\.\d+)?% - .+$/m);
    const line = stdout.split('\n').find((l) => l.startsWith('result: '));
    assert.ok(line, stdout);
    const result = JSON.parse(line.slice('result: '.length));
    assert.equal(typeof result.url, 'string');
    assert.ok(result.rows > 0, line);
  });
});
