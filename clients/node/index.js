'use strict';
// A client for `intakegate serve --stdio`, protocol v1 (docs/stdio-protocol.md).
//
// It spawns the server, waits for the `ready` event, matches replies to requests by id,
// rejects every pending request when the server exits (and restarts it, with a backoff, up to
// `maxRestarts` times), and never turns an error into a route: `routeSafe()` answers
// `human_review_now` with reason `client_error` whenever anything goes wrong.
// Node's standard library only.

const { spawn } = require('node:child_process');
const { EventEmitter } = require('node:events');
const readline = require('node:readline');

const PROTOCOL = 1;
const HUMAN = 'human_review_now';

class IntakegateError extends Error {
  constructor(code, message, reply) {
    super(`${code}: ${message}`);
    this.name = 'IntakegateError';
    this.code = code;
    this.reply = reply;
  }
}

function failClosed(error, ticketId) {
  // The decision a client must act on when it has no decision from the router.
  return {
    op: 'route', id: ticketId === undefined ? null : ticketId, route: HUMAN,
    reason: 'client_error', score: null, threshold: null, bundle_version: null,
    artifact: null, manifest_sha256: null, device: null, windows: 0, segment: null,
    detail: `client_error: ${error && error.code ? error.code + ': ' : ''}${error && error.message ? error.message : error}`,
  };
}

class IntakegateClient extends EventEmitter {
  /**
   * @param {object} options
   * @param {string} options.bundle            bundle directory or dataset name
   * @param {string} [options.command]         default `intakegate` (e.g. `.venv/bin/intakegate`)
   * @param {string[]} [options.args]          extra `serve` arguments (e.g. ['--artifact', 'onnx-fp32'])
   * @param {string} [options.bundlesDir]      passed as --bundles-dir
   * @param {number} [options.workers]         passed as --workers
   * @param {number} [options.readyTimeoutMs]  default 60000
   * @param {number} [options.requestTimeoutMs] default 30000
   * @param {number} [options.maxRestarts]     default 3; 0 disables restarts
   * @param {number} [options.restartBackoffMs] default 500, doubled per restart
   * @param {object} [options.env] @param {string} [options.cwd]
   */
  constructor(options) {
    super();
    if (!options || !options.bundle) throw new TypeError('options.bundle is required');
    this.options = {
      command: 'intakegate', args: [], readyTimeoutMs: 60000, requestTimeoutMs: 30000,
      maxRestarts: 3, restartBackoffMs: 500, ...options,
    };
    this.ready = null; // the last ready event
    this.restarts = 0;
    this._nextId = 1;
    this._pending = new Map();
    this._child = null;
    this._closing = false;
  }

  /** Spawn the server and resolve with its `ready` event (ready may be false: fail-closed). */
  start() {
    if (this._starting) return this._starting;
    const o = this.options;
    const args = ['serve', o.bundle, '--stdio', ...o.args];
    if (o.bundlesDir) args.push('--bundles-dir', o.bundlesDir);
    if (o.workers) args.push('--workers', String(o.workers));
    const child = spawn(o.command, args, {
      cwd: o.cwd, env: { ...process.env, ...(o.env || {}) }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    this._child = child;
    this.ready = null;
    const stderr = [];
    child.stderr.on('data', (chunk) => { // always drained: a full stderr pipe blocks the server
      stderr.push(chunk);
      if (stderr.length > 50) stderr.shift();
      this.emit('stderr', chunk.toString());
    });
    child.stdin.on('error', () => {}); // EPIPE surfaces as the exit below
    this._starting = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new IntakegateError('ready_timeout', `no ready event in ${o.readyTimeoutMs} ms`));
        child.kill();
      }, o.readyTimeoutMs);
      const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
      lines.on('line', (line) => {
        let message;
        try {
          message = JSON.parse(line);
        } catch (err) {
          this.emit('protocolError', new IntakegateError('bad_server_line', line.slice(0, 200)));
          return;
        }
        if (message.op === 'ready') {
          clearTimeout(timer);
          if (message.protocol !== PROTOCOL) {
            reject(new IntakegateError('protocol_mismatch', `server speaks ${message.protocol}, client ${PROTOCOL}`));
            child.kill();
            return;
          }
          this.ready = message;
          this.emit('ready', message);
          resolve(message);
          return;
        }
        this._dispatch(message);
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new IntakegateError('spawn_failed', err.message));
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        const tail = Buffer.concat(stderr).toString().trim().split('\n').slice(-3).join(' | ');
        const why = new IntakegateError('server_exited', `code ${code} signal ${signal}${tail ? ': ' + tail : ''}`);
        reject(why);
        this._failAll(why);
        this._child = null;
        this._starting = null;
        this.emit('exit', code, signal);
        if (!this._closing) this._maybeRestart(why);
      });
    });
    this._starting.catch(() => {}); // callers of start() see it; restarts must not crash
    return this._starting;
  }

  _maybeRestart(why) {
    const o = this.options;
    if (this.restarts >= o.maxRestarts) {
      this.emit('gaveUp', why);
      return;
    }
    const delay = o.restartBackoffMs * 2 ** this.restarts;
    this.restarts += 1;
    setTimeout(() => {
      if (this._closing) return;
      this.emit('restart', this.restarts, why);
      this.start().catch((err) => this.emit('restartFailed', err));
    }, delay).unref();
  }

  _dispatch(message) {
    if (message.op === 'fatal') {
      this.emit('fatal', message.error);
      return;
    }
    const entry = this._pending.get(message.id);
    if (!entry) {
      this.emit('protocolError', new IntakegateError('unmatched_reply', JSON.stringify(message).slice(0, 200)));
      return;
    }
    this._pending.delete(message.id);
    clearTimeout(entry.timer);
    if (message.op === 'error') {
      entry.reject(new IntakegateError(message.error.code, message.error.message, message));
    } else {
      entry.resolve(message);
    }
  }

  _failAll(error) {
    for (const [id, entry] of this._pending) {
      clearTimeout(entry.timer);
      entry.reject(error);
      this._pending.delete(id);
    }
  }

  /** Send one request object (op and fields); resolves with its reply. */
  async request(body) {
    if (!this._child) await this.start();
    else if (!this.ready) await this._starting;
    const id = this._nextId++;
    const line = JSON.stringify({ ...body, id }) + '\n';
    if (this.ready && Buffer.byteLength(line) > this.ready.max_line_bytes) {
      throw new IntakegateError('line_too_long', `request is ${Buffer.byteLength(line)} bytes; the server takes ${this.ready.max_line_bytes}`);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new IntakegateError('timeout', `no reply in ${this.options.requestTimeoutMs} ms`));
      }, this.options.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._child.stdin.write(line);
    });
  }

  /** Route one ticket: resolves with the decision (id = your ticketId), rejects on errors. */
  async route(text, ticketId) {
    const reply = await this.request({ op: 'route', text });
    return { ...reply, id: ticketId === undefined ? null : ticketId };
  }

  /** Route many tickets in one request: [{id, text}, ...] -> decisions in the same order. */
  async routeMany(tickets) {
    const reply = await this.request({ op: 'route', tickets });
    return reply.decisions;
  }

  /** Like route(), but never rejects: any error is a `human_review_now` decision. */
  async routeSafe(text, ticketId) {
    try {
      const decision = await this.route(text, ticketId);
      if (decision.route !== HUMAN && !(decision.reason === 'below_threshold'
          && typeof decision.score === 'number' && typeof decision.threshold === 'number'
          && decision.score < decision.threshold)) {
        return failClosed(new IntakegateError('unsafe_decision', 'blocked an agent route without a valid score'), ticketId);
      }
      return decision;
    } catch (err) {
      return failClosed(err, ticketId);
    }
  }

  health() { return this.request({ op: 'health' }); }

  /** Reload the bundle (or another one); resolves with {ok, reason, detail, ...}. */
  reload(bundle) { return this.request(bundle ? { op: 'reload', bundle } : { op: 'reload' }); }

  /** Ask the server to finish in-flight requests and exit; resolves when it has exited. */
  async close() {
    this._closing = true;
    const child = this._child;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await Promise.race([this.request({ op: 'shutdown' }), exited]);
    } catch (err) {
      child.kill();
    }
    child.stdin.end();
    await exited;
  }
}

module.exports = { IntakegateClient, IntakegateError, failClosed, PROTOCOL };
