'use strict';
/*
 * The benchmark's webhook receiver, in its own process: answers 200 at once and records, per
 * request, the latency from the publisher's `data.sentAt` stamp to arrival. Stats go to the parent
 * over IPC on request.
 */
const http = require('node:http');
const { performance } = require('node:perf_hooks');

const now = () => performance.timeOrigin + performance.now();
let count = 0;
let first = 0;
let last = 0;
let latencies = [];
let seen = new Set();
let duplicates = 0;
let trackLatency = true;

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const at = now();
    count += 1;
    if (!first) first = at;
    last = at;
    const delivery = req.headers['x-bellwether-delivery'];
    if (delivery) {
      if (seen.has(delivery)) duplicates += 1;
      else seen.add(delivery);
    }
    if (trackLatency) {
      const body = Buffer.concat(chunks).toString('utf8');
      const match = /"sentAt":(\d+(?:\.\d+)?)/.exec(body);
      if (match) latencies.push(at - Number(match[1]));
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end('ok');
  });
});
server.keepAliveTimeout = 60_000;

process.on('message', (msg) => {
  if (msg.type === 'stats') {
    process.send({ type: 'stats', id: msg.id, count, first, last, duplicates, latencies: msg.withLatencies ? latencies : [] });
  } else if (msg.type === 'reset') {
    count = 0;
    first = 0;
    last = 0;
    latencies = [];
    seen = new Set();
    duplicates = 0;
    trackLatency = msg.trackLatency !== false;
    process.send({ type: 'reset', id: msg.id });
  }
});

server.listen(0, '127.0.0.1', () => process.send({ type: 'ready', port: server.address().port }));
