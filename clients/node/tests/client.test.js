'use strict';
// The client against a fake server: ready first, replies matched by id, errors rejected (and
// routeSafe turning every error into human_review_now), crashes rejected and restarted.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { IntakegateClient, IntakegateError } = require('..');

const FAKE = path.join(__dirname, 'fake-server.js');
const client = (mode, extra = {}) => new IntakegateClient({
  bundle: 'b', command: FAKE, readyTimeoutMs: 3000, requestTimeoutMs: 2000,
  restartBackoffMs: 20, ...extra, env: { FAKE_MODE: mode, ...(extra.env || {}) },
});

test('waits for ready, routes one ticket and a list, health, reload failure, shutdown', async () => {
  const c = client('ok', { bundlesDir: '/some/where', workers: 2 });
  const ready = await c.start();
  assert.strictEqual(ready.ready, true);
  assert.deepStrictEqual(ready.argv, ['serve', 'b', '--stdio', '--bundles-dir', '/some/where', '--workers', '2']);
  const [a, b] = await Promise.all([c.route('Where is my package?', 't1'), c.route('card stolen', 't2')]);
  assert.strictEqual(a.route, 'guarded_agent');
  assert.strictEqual(a.id, 't1');
  assert.strictEqual(b.route, 'human_review_now');
  const many = await c.routeMany([{ id: 1, text: 'hi' }, { id: 2, text: 'please make an exception' }]);
  assert.deepStrictEqual(many.map((d) => [d.id, d.route]), [[1, 'guarded_agent'], [2, 'human_review_now']]);
  assert.strictEqual((await c.health()).op, 'health');
  const reload = await c.reload();
  assert.strictEqual(reload.ok, false);
  assert.strictEqual(reload.reason, 'bundle_integrity');
  await c.close();
});

test('error replies reject; routeSafe never routes an error to the agent', async () => {
  const c = client('ok');
  await c.start();
  await assert.rejects(c.request({ op: 'dance' }), (err) => err instanceof IntakegateError && err.code === 'unknown_op');
  await assert.rejects(c.route('x'.repeat(5000)), /line_too_long/);
  const big = await c.routeSafe('x'.repeat(5000), 'big');
  assert.deepStrictEqual([big.route, big.reason, big.id], ['human_review_now', 'client_error', 'big']);
  const unsafe = await c.routeSafe('unsafe', 'u');
  assert.strictEqual(unsafe.route, 'human_review_now');
  assert.match(unsafe.detail, /unsafe_decision/);
  await assert.rejects(c.request({ op: 'hang' }), /timeout/);
  await c.close();
});

test('ready false is reported, and tickets still come back for a person', async () => {
  const c = client('not-ready');
  const ready = await c.start();
  assert.strictEqual(ready.ready, false);
  assert.strictEqual(ready.reason, 'bundle_integrity');
  const d = await c.routeSafe('Where is my package?');
  assert.strictEqual(d.route, 'human_review_now');
  await c.close();
});

test('a server of another protocol version, a silent one and a bad line are refused', async () => {
  await assert.rejects(client('v2', { maxRestarts: 0 }).start(), /protocol_mismatch/);
  const silent = client('silent', { readyTimeoutMs: 300, maxRestarts: 0 });
  await assert.rejects(silent.start(), /ready_timeout/);
  const g = client('garbage');
  const bad = new Promise((resolve) => g.once('protocolError', resolve));
  await g.start();
  assert.match((await bad).message, /bad_server_line/);
  await g.close();
  await assert.rejects(new IntakegateClient({ bundle: 'b', command: '/no/such/binary', maxRestarts: 0 }).start(), /spawn_failed|server_exited/);
});

test('a crash rejects pending requests, then the client restarts the server', async () => {
  const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ig-')), 'state');
  const c = client('crash-once', { env: { FAKE_STATE: state } });
  await c.start();
  const restarted = new Promise((resolve) => c.once('restart', resolve));
  await assert.rejects(c.route('hello'), /server_exited/);
  const safe = await c.routeSafe('hello again');  // may hit the gap before the restart
  assert.ok(['human_review_now', 'guarded_agent'].includes(safe.route));
  assert.strictEqual(await restarted, 1);
  await c.start();
  assert.strictEqual((await c.route('Where is my package?')).route, 'guarded_agent');
  await c.close();
});
