// node.js - Node's own `http` module as a peer in bench/run.sh: the same
// routes and bytes as the example app. /json is serialized per request, as
// chopin.h's /json is. WORKERS=N (default 1) forks N workers through
// `cluster`; PORT (default 8083), HOST (default 127.0.0.1).
'use strict';
const cluster = require('cluster');
const http = require('http');

const port = Number(process.env.PORT || 8083);
const host = process.env.HOST || '127.0.0.1';
const workers = Number(process.env.WORKERS || 1);
const plaintext = Buffer.from('Hello, World!');

function serve() {
  const server = http.createServer((req, res) => {
    if (req.url === '/plaintext') {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': plaintext.length });
      res.end(plaintext);
    } else if (req.url === '/json') {
      const body = JSON.stringify({ message: 'Hello, World!' });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    } else {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  });
  server.keepAliveTimeout = 60000;
  server.headersTimeout = 61000;
  server.listen(port, host, () => {
    if (workers === 1 || !cluster.isPrimary) console.log(`node listening on http://${host}:${port} (pid ${process.pid})`);
  });
}

if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  process.on('SIGTERM', () => process.exit(0));
  serve();
}
