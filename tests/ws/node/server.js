// tests/ws/node/server.js - the same contract as examples/chat.c, written
// with Node.js's `ws` package: the comparison server of `make ws-bench`,
// and a second opinion for the test clients (an RFC 6455 implementation
// that passes Autobahn|Testsuite). Reads PORT and HOST.
//   GET /ws/echo           echo, text stays text, binary stays binary, 16 MiB
//   GET /ws/chat?room=R    every text message to every client of room R
//   POST /rooms/R          204; the body is published to room R
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const fs = require('fs');
const path = require('path');

// GET /: the very page examples/chat.c serves, read from its C string
// (between "/* page begin */" and "/* page end */").
function chatPage() {
  const file = process.env.CHAT_SOURCE || path.join(__dirname, '../../../examples/chat.c');
  try {
    const src = fs.readFileSync(file, 'utf8');
    const part = src.slice(src.indexOf('/* page begin */'), src.indexOf('/* page end */'));
    let html = '';
    for (const m of part.matchAll(/"((?:[^"\\]|\\.)*)"/g)) html += JSON.parse('"' + m[1].replace(/\\'/g, "'") + '"');
    return html;
  } catch (e) {
    return '<!doctype html><p>examples/chat.c not found</p>';
  }
}

const rooms = new Map(); // room -> Set of sockets
const echo = new WebSocketServer({ noServer: true, maxPayload: 16 << 20, perMessageDeflate: false });
const chat = new WebSocketServer({ noServer: true, maxPayload: 1 << 20, perMessageDeflate: false });

function publish(room, text) {
  const set = rooms.get(room);
  if (!set) return;
  for (const ws of set) ws.send(text);
}

echo.on('connection', (ws) => {
  ws.on('error', () => {}); // a protocol error: ws has already closed with its code
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

chat.on('connection', (ws, req) => {
  const room = new URL(req.url, 'http://x').searchParams.get('room') || 'lobby';
  if (!rooms.has(room)) rooms.set(room, new Set());
  rooms.get(room).add(ws);
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (!isBinary) publish(room, data.toString());
  });
  ws.on('close', () => rooms.get(room).delete(ws));
});

const server = http.createServer((req, res) => {
  const m = /^\/rooms\/([^/?]+)$/.exec(req.url);
  if (req.method === 'POST' && m) {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      publish(decodeURIComponent(m[1]), Buffer.concat(parts).toString());
      res.writeHead(204);
      res.end();
    });
    return;
  }
  if (req.method === 'GET' && (req.url === '/' || req.url.startsWith('/?'))) {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(chatPage());
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const wss = path === '/ws/echo' ? echo : path === '/ws/chat' ? chat : null;
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.listen(Number(process.env.PORT || 3000), process.env.HOST || '127.0.0.1', () => {
  console.log('node ws server on ' + server.address().port);
});
process.on('SIGTERM', () => process.exit(0));
