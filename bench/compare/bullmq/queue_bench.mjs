// eddy's queue scenario with BullMQ: a producer process adds jobs in bulk
// (addBulk, --batch per call) and a worker process handles them with
// concurrency --concurrency; measured from the first add to the last
// completion (BullMQ's ack). Latency: from the send stamp in each job's data
// to the moment the worker runs it. The producer stays at most --window
// jobs ahead of the worker, as eddy's bench does.
//
//   node queue_bench.mjs --url redis://127.0.0.1:6380/0 [--messages 50000]
//     [--batch 100] [--concurrency 50] [--payload-bytes 200] [--window 10000]
//
// Prints one JSON line.

import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { Queue, Worker } from 'bullmq';

const require = createRequire(import.meta.url);

function args() {
  const out = {
    url: 'redis://127.0.0.1:6379/0',
    messages: 50000,
    batch: 100,
    concurrency: 50,
    'payload-bytes': 200,
    window: 10000,
    role: 'main',
    queue: '',
  };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in out)) throw new Error(`unknown option --${key}`);
    out[key] = typeof out[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return out;
}

function connection(url) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number((u.pathname || '/0').slice(1) || 0),
    password: u.password || undefined,
    maxRetriesPerRequest: null,
  };
}

// Wall clock in microseconds, comparable across processes.
// Send to the parent and wait until it is written (the child exits next).
const tell = (m) => new Promise((r) => process.send(m, r));

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function padding(size) {
  const probe = JSON.stringify({ sent_us: nowUs(), seq: 1000000, pad: '' });
  return 'x'.repeat(Math.max(0, size - probe.length));
}

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

async function producer(o) {
  const queue = new Queue(o.queue, { connection: connection(o.url) });
  await queue.waitUntilReady();
  const go = new Promise((resolve) => process.once('message', resolve));
  await tell({ ready: true });
  await go;
  const pad = padding(o['payload-bytes']);
  const opts = { removeOnComplete: true, removeOnFail: true };
  let sent = 0;
  while (sent < o.messages) {
    // The window: jobs not yet taken by the worker.
    while (o.window > 0 && (await queue.count()) > o.window) {
      await new Promise((r) => setTimeout(r, 2));
    }
    const k = Math.min(o.batch, o.messages - sent);
    const stamp = nowUs();
    const jobs = [];
    for (let j = 0; j < k; j++) {
      jobs.push({ name: 'bench', data: { sent_us: stamp, seq: sent + j, pad }, opts });
    }
    await queue.addBulk(jobs);
    sent += k;
  }
  await queue.close();
  await tell({ produced: sent });
}

async function worker(o) {
  const latencies = new Float64Array(o.messages);
  let seen = 0;
  let completed = 0;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const w = new Worker(
    o.queue,
    async (job) => {
      if (seen < latencies.length) latencies[seen++] = (nowUs() - job.data.sent_us) / 1000;
    },
    { connection: connection(o.url), concurrency: o.concurrency, autorun: false },
  );
  w.on('completed', () => {
    completed += 1;
    if (completed === o.messages) resolveDone(nowUs());
  });
  w.on('error', (e) => console.error('worker error', e));
  await w.waitUntilReady();
  w.run();
  await tell({ ready: true });
  const endUs = await done;
  const sorted = Array.from(latencies.subarray(0, seen)).sort((a, b) => a - b);
  await tell({
    endUs,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    p999: quantile(sorted, 0.999),
    max: sorted.length ? sorted[sorted.length - 1] : null,
  });
  await w.close();
}

function start(role, o) {
  const argv = [];
  for (const [k, v] of Object.entries({ ...o, role })) argv.push(`--${k}`, String(v));
  const child = fork(new URL(import.meta.url).pathname, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages = [];
  let waiter = null;
  child.on('message', (m) => {
    if (waiter) {
      const w = waiter;
      waiter = null;
      w(m);
    } else messages.push(m);
  });
  child.next = () =>
    messages.length ? Promise.resolve(messages.shift()) : new Promise((r) => (waiter = r));
  return child;
}

async function main(o) {
  o.queue = `bench-bullmq-${process.pid}`;
  const w = start('worker', o);
  const p = start('producer', o);
  await w.next();
  await p.next();
  const startUs = nowUs();
  p.send({ go: true });
  const produced = await p.next();
  const result = await w.next();
  const elapsed = (result.endUs - startUs) / 1e6;
  const cleanup = new Queue(o.queue, { connection: connection(o.url) });
  await cleanup.obliterate({ force: true });
  await cleanup.close();
  const version = require('bullmq/package.json').version;
  console.log(
    JSON.stringify({
      system: 'bullmq',
      version,
      node: process.version,
      messages: produced.produced,
      batch: o.batch,
      concurrency: o.concurrency,
      payload_bytes: o['payload-bytes'],
      window: o.window,
      msgs_per_s: Math.round(o.messages / elapsed),
      p50_ms: result.p50,
      p99_ms: result.p99,
      p999_ms: result.p999,
      max_ms: result.max,
    }),
  );
}

const o = args();
if (o.role === 'producer') await producer(o);
else if (o.role === 'worker') await worker(o);
else await main(o);
process.exit(0);
