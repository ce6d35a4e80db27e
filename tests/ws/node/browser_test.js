// tests/ws/node/browser_test.js - a real browser against examples/chat.c:
// headless Chromium opens GET /, joins a room through the page's own form,
// sends a message with it and receives messages from a Node `ws` client and
// from POST /rooms/NAME. Chromium is driven over the DevTools protocol
// (itself a WebSocket, spoken here with the `ws` package).
// Usage: node browser_test.js CHROMIUM PORT. Last line "N passed, N failed".
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const WebSocket = require('ws');

const [chromium, portArg] = process.argv.slice(2);
const port = Number(portArg);
const origin = `http://127.0.0.1:${port}`;
const room = 'browser' + process.pid;
let passed = 0;
let failed = 0;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chopin-chromium-'));
const browser = spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--no-first-run', '--no-default-browser-check', '--remote-debugging-port=0', `--user-data-dir=${profile}`,
  'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: profile } });

// Chromium's helper processes may still write into the profile after the
// main one is killed: wait for its exit (bounded) before removing the folder.
function removeProfile() {
  try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }); } catch (e) { /* best effort */ }
}
function cleanup() {
  return new Promise((resolve) => {
    if (browser.exitCode !== null || browser.signalCode !== null) { removeProfile(); resolve(); return; }
    const t = setTimeout(() => { removeProfile(); resolve(); }, 3000);
    browser.once('exit', () => { clearTimeout(t); setTimeout(() => { removeProfile(); resolve(); }, 200); });
    try { browser.kill('SIGKILL'); } catch (e) { clearTimeout(t); removeProfile(); resolve(); }
  });
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function devtoolsUrl() {
  return new Promise((resolve, reject) => {
    let err = '';
    const t = setTimeout(() => reject(new Error('chromium gave no DevTools address in 20 s: ' + err.slice(-300))), 20000);
    browser.stderr.on('data', (d) => {
      err += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m) { clearTimeout(t); resolve(m[1]); }
    });
    browser.on('exit', (code) => reject(new Error(`chromium exited (${code}): ${err.slice(-300)}`)));
  });
}

// A minimal DevTools client: one browser connection, flat sessions.
class Cdp {
  constructor(ws) {
    this.ws = ws;
    this.id = 0;
    this.pending = new Map();
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      if (m.id && this.pending.has(m.id)) {
        const { resolve, reject } = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) reject(new Error(m.error.message)); else resolve(m.result);
      }
    });
  }
  send(method, params = {}, sessionId) {
    const id = ++this.id;
    this.ws.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      setTimeout(() => { if (this.pending.delete(id)) reject(new Error(`${method} timed out`)); }, 10000);
    });
  }
}

let cdp;
let session;
async function evaluate(expr) {
  const r = await cdp.send('Runtime.evaluate', { expression: expr, returnByValue: true }, session);
  if (r.exceptionDetails) throw new Error(`page error: ${r.exceptionDetails.text}`);
  return r.result.value;
}
async function until(expr, what, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await evaluate(expr)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
const logHas = (text) => `[...document.querySelectorAll('#log li')].some((li) => li.textContent === ${JSON.stringify(text)})`;

function post(p, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: 'POST',
      headers: { 'Content-Length': Buffer.byteLength(body) } }, (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end(body);
  });
}

let peer;
let peerInbox = [];
const cases = [
  ['the browser loads GET / and its script runs', async () => {
    const url = await devtoolsUrl();
    const ws = new WebSocket(url, { perMessageDeflate: false });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    cdp = new Cdp(ws);
    const { targetId } = await cdp.send('Target.createTarget', { url: `${origin}/` });
    ({ sessionId: session } = await cdp.send('Target.attachToTarget', { targetId, flatten: true }));
    await until(`document.readyState === 'complete' && !!document.getElementById('join')`, 'the page');
  }],
  ['the page joins a room through its form (a WebSocket opened by the browser)', async () => {
    await evaluate(`document.getElementById('room').value = ${JSON.stringify(room)}; document.getElementById('join').click(); true`);
    await until(`document.getElementById('status').textContent === 'connected'`, 'the page to connect');
    peer = new WebSocket(`ws://127.0.0.1:${port}/ws/chat?room=${room}`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => { peer.once('open', resolve); peer.once('error', reject); });
    peer.on('message', (d) => peerInbox.push(d.toString()));
    await sleep(100);
  }],
  ['the browser sends: the room (a Node client) and the browser itself receive it', async () => {
    const text = 'hello from chromium \u2603';
    await evaluate(`document.getElementById('text').value = ${JSON.stringify(text)};
                    document.getElementById('send').click(); true`);
    await until(logHas(text), 'the browser to see its own message');
    const end = Date.now() + 5000;
    while (!peerInbox.includes(text)) {
      if (Date.now() > end) throw new Error(`the Node client got ${JSON.stringify(peerInbox)}`);
      await sleep(50);
    }
  }],
  ['the browser receives what another member sends', async () => {
    peer.send('hello from node');
    await until(logHas('hello from node'), 'the message from node');
  }],
  ['the browser receives what POST /rooms/NAME publishes', async () => {
    const st = await post(`/rooms/${room}`, 'hello from POST');
    if (st !== 204) throw new Error(`POST status ${st}`);
    await until(logHas('hello from POST'), 'the published message');
  }],
];

(async () => {
  const guard = setTimeout(() => { console.log(`FAIL - the browser test took over 90 s\n${passed} passed, ${failed + 1} failed`); cleanup().then(() => process.exit(1)); }, 90000);
  for (const [name, fn] of cases) {
    try {
      await fn();
      passed++;
      console.log(`ok - ${name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL - ${name}: ${e.message}`);
      if (!cdp) break;
    }
  }
  clearTimeout(guard);
  if (peer) peer.close();
  await cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
