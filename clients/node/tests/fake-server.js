#!/usr/bin/env node
'use strict';
// A stand-in for `intakegate serve --stdio` that speaks protocol v1, so the client's own
// behaviour (ready, matching by id, errors, crashes, restarts) is tested without Python.
// FAKE_MODE: ok | not-ready | v2 | silent | garbage | crash-once (needs FAKE_STATE, a file path)
const fs = require('node:fs');
const readline = require('node:readline');

const mode = process.env.FAKE_MODE || 'ok';
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
let crash = false;
if (mode === 'crash-once') {
  crash = !fs.existsSync(process.env.FAKE_STATE);
  fs.writeFileSync(process.env.FAKE_STATE, 'started');
}
if (mode === 'silent') {
  setInterval(() => {}, 1000);
} else {
  if (mode === 'garbage') process.stdout.write('this is not json\n');
  const ready = mode !== 'not-ready';
  out({
    op: 'ready', id: null, protocol: mode === 'v2' ? 2 : 1, ready,
    bundle_version: ready ? 'fake-v1' : null, manifest_sha256: ready ? 'f'.repeat(64) : null,
    artifact: 'onnx-int8', device: 'cpu', threshold: ready ? 0.5 : null,
    reason: ready ? null : 'bundle_integrity', detail: ready ? null : 'bundle_tampered: x',
    workers: 1, max_line_bytes: 4096, intakegate_version: 'fake', argv: process.argv.slice(2),
  });
}
const decide = (id, text) => {
  const risky = !ready() || /stolen|sign in|exception/i.test(String(text));
  const score = ready() ? (risky ? 0.9 : 0.1) : null;
  return {
    op: 'route', id, route: risky ? 'human_review_now' : 'guarded_agent',
    reason: !ready() ? 'bundle_integrity' : risky ? 'threshold' : 'below_threshold', score,
    threshold: ready() ? 0.5 : null, bundle_version: 'fake-v1', artifact: 'onnx-int8',
    manifest_sha256: 'f'.repeat(64), device: 'cpu', windows: 1, segment: null, detail: '',
  };
};
function ready() { return mode !== 'not-ready'; }
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const req = JSON.parse(line);
  if (crash) process.exit(3);
  if (req.op === 'route' && req.tickets) {
    out({ op: 'route', id: req.id, decisions: req.tickets.map((t) => ({ ...decide(t.id, t.text), op: undefined })) });
  } else if (req.op === 'route') {
    if (req.text === 'unsafe') out({ ...decide(req.id, ''), route: 'guarded_agent', reason: 'below_threshold', score: null });
    else out(decide(req.id, req.text));
  } else if (req.op === 'health') {
    out({ op: 'health', id: req.id, ready: ready(), requests: 1 });
  } else if (req.op === 'reload') {
    out({ op: 'reload', id: req.id, ok: false, reason: 'bundle_integrity', detail: 'nope', ready: true });
  } else if (req.op === 'shutdown') {
    out({ op: 'shutdown', id: req.id, ok: true, answered: 0 });
    process.exit(0);
  } else if (req.op === 'hang') {
    // never answers
  } else {
    out({ op: 'error', id: req.id, error: { code: 'unknown_op', message: 'x', request_op: req.op, line: 1 } });
  }
});
