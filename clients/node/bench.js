#!/usr/bin/env node
'use strict';
// Round-trip latency of `intakegate serve --stdio` as a Node client sees it: one request in
// flight at a time (send, wait for the reply), after a warm-up, so each sample is the whole
// path: JSON over the pipe, parsing, tokenization, the model, the reply.
//
//   node clients/node/bench.js --bundle B [--bundles-dir D] [--bin .venv/bin/intakegate]
//        [--n 1000] [--warmup 50] [--op route|health] [--artifact onnx-int8]
const path = require('node:path');
const { IntakegateClient } = require('./index.js');

function arg(name, fallback) {
  const k = process.argv.indexOf(`--${name}`);
  return k > 0 ? process.argv[k + 1] : fallback;
}

const TICKETS = [
  'Where is my package? Tracking has not moved since Monday.',
  'FastShip delivered my tablet after the return window closed. Please make an exception.',
  "Someone changed my delivery address and I can't sign in.",
  'How long do refunds take to reach my card?',
  'The box arrived crushed and the blender inside is cracked.',
];

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const bundle = arg('bundle');
  if (!bundle) {
    console.error('error: --bundle B is required');
    process.exit(2);
  }
  const n = Number(arg('n', 1000));
  const warmup = Number(arg('warmup', 50));
  const op = arg('op', 'route');
  const bin = arg('bin', path.resolve(__dirname, '../../.venv/bin/intakegate'));
  const args = ['--artifact', arg('artifact', 'onnx-int8')];
  const client = new IntakegateClient({ bundle, command: bin, bundlesDir: arg('bundles-dir'), args });
  const t0 = process.hrtime.bigint();
  const ready = await client.start();
  const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (!ready.ready) console.error(`warning: not ready (${ready.reason}: ${ready.detail}); timing the fail-closed path`);
  const once = (k) => (op === 'health' ? client.health() : client.route(TICKETS[k % TICKETS.length], k));
  for (let k = 0; k < warmup; k += 1) await once(k);
  const samples = [];
  for (let k = 0; k < n; k += 1) {
    const start = process.hrtime.bigint();
    await once(k);
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  await client.close();
  samples.sort((a, b) => a - b);
  const result = {
    op, n, warmup, bundle_version: ready.bundle_version, artifact: ready.artifact, device: ready.device,
    ready: ready.ready, spawn_to_ready_ms: +readyMs.toFixed(1),
    p50_ms: +pct(samples, 50).toFixed(3), p95_ms: +pct(samples, 95).toFixed(3),
    p99_ms: +pct(samples, 99).toFixed(3), max_ms: +samples[samples.length - 1].toFixed(3),
    node: process.version,
  };
  console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
