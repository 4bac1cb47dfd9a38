'use strict';
// The client against the real `intakegate serve --stdio`. INTAKEGATE_BIN names the CLI
// (default: the repository's .venv/bin/intakegate); INTAKEGATE_TEST_BUNDLE a bundle to route
// with (tests/test_node_client.py passes a tiny one). Without a bundle it checks the
// fail-closed path: ready false, and every ticket for a person.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { IntakegateClient } = require('..');

const BIN = process.env.INTAKEGATE_BIN || path.resolve(__dirname, '../../../.venv/bin/intakegate');
const BUNDLE = process.env.INTAKEGATE_TEST_BUNDLE;
const skip = fs.existsSync(BIN) ? false : `no intakegate CLI at ${BIN}`;

test('fail-closed: a missing bundle is ready false, tickets go to a person', { skip }, async () => {
  const c = new IntakegateClient({ bundle: 'no-such-dataset', command: BIN, bundlesDir: path.join(__dirname, 'nowhere') });
  const ready = await c.start();
  assert.strictEqual(ready.ready, false);
  assert.strictEqual(ready.reason, 'model_unavailable');
  assert.ok(ready.looked_in.length === 2 && ready.hint.includes('--bundles-dir'));
  const d = await c.route('Where is my package?', 'a');
  assert.deepStrictEqual([d.route, d.reason, d.id], ['human_review_now', 'model_unavailable', 'a']);
  await assert.rejects(c.request({ op: 'dance' }), /unknown_op/);
  await c.close();
});

test('routes with a real bundle, pipelined, then reload and shutdown', { skip: skip || (!BUNDLE && 'INTAKEGATE_TEST_BUNDLE not set') }, async () => {
  const c = new IntakegateClient({ bundle: BUNDLE, command: BIN, workers: 2 });
  const ready = await c.start();
  assert.strictEqual(ready.ready, true);
  assert.match(ready.manifest_sha256, /^[0-9a-f]{64}$/);
  const texts = Array.from({ length: 300 }, (_, k) => (k % 2 ? 'Where is my package?' : "Someone changed my delivery address and I can't sign in."));
  const decisions = await Promise.all(texts.map((t, k) => c.routeSafe(t, k)));
  assert.deepStrictEqual(decisions.map((d) => d.id), texts.map((_, k) => k));
  assert.ok(decisions.every((d, k) => d.route === (k % 2 ? 'guarded_agent' : 'human_review_now')));
  const many = await c.routeMany([{ id: 'x', text: '   ' }, { id: 'y', text: 'Where is my package?' }]);
  assert.deepStrictEqual(many.map((d) => d.reason), ['empty_text', 'below_threshold']);
  const health = await c.health();
  assert.strictEqual(health.requests, 301 + 1);
  const failed = await c.reload(path.join(__dirname, 'nowhere'));
  assert.strictEqual(failed.ok, false);
  assert.strictEqual(failed.ready, true); // the old bundle keeps serving
  assert.strictEqual((await c.route('Where is my package?')).route, 'guarded_agent');
  await c.close();
});
