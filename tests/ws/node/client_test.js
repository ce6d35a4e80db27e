// tests/ws/node/client_test.js - a real client against examples/chat.c's
// contract: Node.js's `ws` package (npm), as users of chopin.h's WebSocket
// would use it. Usage: node client_test.js PORT. Prints one line per case
// and "N passed, N failed" last.
//   echo of text, binary, a fragmented message, 1 MiB and 16 MiB messages;
//   ping/pong; close codes and reasons both ways; the server's 1009 for a
//   message over the chat route's 1 MiB limit; a chat room spread over the
//   server's workers (many connections, so SO_REUSEPORT spreads them), with
//   messages from members and from POST /rooms/NAME.
'use strict';
const http = require('http');
const crypto = require('crypto');
const WebSocket = require('ws');

const port = Number(process.argv[2]);
const base = `ws://127.0.0.1:${port}`;
let passed = 0;
let failed = 0;

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

function open(path, opts) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, Object.assign({ perMessageDeflate: false, maxPayload: 64 << 20 }, opts));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`status ${res.statusCode}`)));
  }), 5000, `open ${path}`);
}

function nextMessage(ws, ms = 5000) {
  return withTimeout(new Promise((resolve, reject) => {
    ws.once('message', (data, isBinary) => resolve({ data, isBinary }));
    ws.once('close', (code) => reject(new Error(`closed with ${code} while waiting for a message`)));
  }), ms, 'a message');
}

function closed(ws, ms = 5000) {
  return withTimeout(new Promise((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  }), ms, 'the close');
}

function post(path, body) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST',
      headers: { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  }), 5000, `POST ${path}`);
}

async function echo(ws, payload, binary) {
  const got = nextMessage(ws, 20000);
  ws.send(payload, { binary });
  const m = await got;
  if (m.isBinary !== binary) throw new Error(`sent ${binary ? 'binary' : 'text'}, got ${m.isBinary ? 'binary' : 'text'}`);
  if (!Buffer.from(m.data).equals(Buffer.from(payload))) throw new Error(`echo differs (${m.data.length} bytes for ${payload.length})`);
}

const cases = [
  ['RFC 6455 5.6: text echoed as text', async () => {
    const ws = await open('/ws/echo');
    await echo(ws, 'hello, \u03ba\u03cc\u03c3\u03bc\u03b5 \u{1F600}', false);
    ws.close();
  }],
  ['RFC 6455 5.6: binary echoed as binary', async () => {
    const ws = await open('/ws/echo');
    await echo(ws, crypto.randomBytes(1000), true);
    ws.close();
  }],
  ['RFC 6455 5.4: a fragmented message comes back whole', async () => {
    const ws = await open('/ws/echo');
    const got = nextMessage(ws);
    ws.send('frag', { fin: false });
    ws.send('men', { fin: false });
    ws.send('ted', { fin: true });
    const m = await got;
    if (m.isBinary || m.data.toString() !== 'fragmented') throw new Error(`got ${m.data}`);
    ws.close();
  }],
  ['1 MiB binary echo', async () => {
    const ws = await open('/ws/echo');
    await echo(ws, crypto.randomBytes(1 << 20), true);
    ws.close();
  }],
  ['16 MiB text echo (the route\'s limit)', async () => {
    const ws = await open('/ws/echo');
    await echo(ws, 'x'.repeat(16 << 20), false);
    ws.close();
  }],
  ['RFC 6455 5.5.2: ping answered by a pong with its payload', async () => {
    const ws = await open('/ws/echo');
    const pong = withTimeout(new Promise((resolve) => ws.once('pong', resolve)), 5000, 'pong');
    ws.ping(Buffer.from('are you there'));
    const data = await pong;
    if (data.toString() !== 'are you there') throw new Error(`pong payload ${data}`);
    ws.close();
  }],
  ['RFC 6455 7.4: close 1000 from the client is echoed', async () => {
    const ws = await open('/ws/echo');
    const c = closed(ws);
    ws.close(1000, 'done');
    const { code } = await c;
    if (code !== 1000) throw new Error(`close code ${code}`);
  }],
  ['RFC 6455 7.4: an application code (4000) and reason are echoed', async () => {
    const ws = await open('/ws/echo');
    const c = closed(ws);
    ws.close(4000, 'app reason');
    const { code, reason } = await c;
    if (code !== 4000 || reason !== 'app reason') throw new Error(`close ${code} "${reason}"`);
  }],
  ['RFC 6455 7.4.1: a message over the chat route\'s 1 MiB: the server closes 1009', async () => {
    const ws = await open('/ws/chat?room=big');
    ws.on('error', () => {});
    const c = closed(ws);
    ws.send('y'.repeat((1 << 20) + 1));
    const { code } = await c;
    if (code !== 1009) throw new Error(`close code ${code}, want 1009`);
  }],
  ['chat: a room over two workers, messages from every member reach every member', async () => {
    const room = 'room' + crypto.randomBytes(4).toString('hex');
    const n = 8;
    const members = [];
    for (let i = 0; i < n; i++) members.push(await open(`/ws/chat?room=${room}`));
    const other = await open('/ws/chat?room=elsewhere');
    const strays = [];
    other.on('message', (d) => strays.push(d.toString()));
    await new Promise((r) => setTimeout(r, 100));
    const inbox = members.map(() => []);
    const all = members.map((ws, i) => new Promise((resolve) => {
      ws.on('message', (d, isBinary) => {
        if (isBinary) return;
        inbox[i].push(d.toString());
        if (inbox[i].length === n + 1) resolve();
      });
    }));
    members.forEach((ws, i) => ws.send(`from ${i}`));
    const st = await post(`/rooms/${room}`, 'from the server');
    if (st !== 204) throw new Error(`POST /rooms: status ${st}`);
    await withTimeout(Promise.all(all), 5000, 'every member to get every message');
    for (let i = 0; i < n; i++) {
      const want = [...Array(n).keys()].map((k) => `from ${k}`).concat(['from the server']).sort();
      if (JSON.stringify(inbox[i].slice().sort()) !== JSON.stringify(want)) throw new Error(`member ${i} got ${inbox[i]}`);
    }
    await new Promise((r) => setTimeout(r, 100));
    if (strays.length) throw new Error(`another room got ${strays}`);
    members.forEach((ws) => ws.close());
    other.close();
  }],
  ['chat: each member sees its own room\'s messages in the order they were sent', async () => {
    const a = await open('/ws/chat?room=order');
    const b = await open('/ws/chat?room=order');
    await new Promise((r) => setTimeout(r, 50));
    const got = [];
    const done = new Promise((resolve) => b.on('message', (d) => { got.push(d.toString()); if (got.length === 200) resolve(); }));
    for (let i = 0; i < 200; i++) a.send(`m${i}`);
    await withTimeout(done, 5000, '200 messages');
    for (let i = 0; i < 200; i++) if (got[i] !== `m${i}`) throw new Error(`message ${i} is ${got[i]}`);
    a.close();
    b.close();
  }],
];

(async () => {
  for (const [name, fn] of cases) {
    try {
      await withTimeout(fn(), 60000, name);
      passed++;
      console.log(`ok - ${name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL - ${name}: ${e.message}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
