//! One persistent Python child running litellm/bridge.py, shared by every request of the container.
//!
//! Requests and replies are JSON lines tagged with a request id, so many requests are in flight at
//! once (see bridge.py for the protocol). The client never wedges:
//! - every request has a deadline; a child that misses `maxMissedDeadlines` deadlines in a row, or
//!   does not answer a liveness ping within `pingTimeoutMs`, is killed and replaced at once;
//! - a child that dies before it is ready (or before it ever answered) is a failed start; after
//!   the second failed start in a row the client backs off exponentially (capped), rejecting
//!   requests at once with a 503 `BridgeError` that says when to retry;
//! - writes to the child's stdin wait for `drain`; what waits is bounded by `maxQueuedBytes`
//!   (a request that does not fit is a 503);
//! - replies are capped by Lambda's response limits (6 MB buffered, 20 MB streamed): an over-cap
//!   reply fails its request at once, and a child that sends one anyway is reset;
//! - the child's stderr goes to the logger (as JSON lines, with the request id), never to callers;
//!   caller-facing messages carry no stderr, tracebacks or interpreter paths (`detail` has them).
//! On shutdown the child gets SIGTERM, then SIGKILL after `killGraceMs`; the bridge also asks the
//! kernel to kill it when this process dies (PR_SET_PDEATHSIG), so it is never orphaned.

import { spawn } from "node:child_process";
import path from "node:path";
import { finished } from "node:stream/promises";
import { fileURLToPath } from "node:url";

import { logger as defaultLogger, logContentsEnabled } from "../common/log.js";
import { interpreterHint, resolvePython } from "../common/pythonExec.js";
import { addSecretEnvNames } from "../common/redact.js";
import { MAX_BUFFERED_RESPONSE_BYTES, MAX_REQUEST_BYTES, MAX_STREAMED_RESPONSE_BYTES } from "../http/limits.js";

/** The bridge script shipped with the function code. */
export const BRIDGE_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), "bridge.py");

/** A request line may carry a 6 MB body plus its JSON envelope. */
const DEFAULT_MAX_REQUEST_BYTES = MAX_REQUEST_BYTES + 64 * 1024;
/** Room for the `{"id":..,"type":"result","response":` envelope around a reply. */
const REPLY_ENVELOPE_BYTES = 1024;

const DEFAULTS = {
  timeoutMs: 60_000,
  killGraceMs: 2_000,
  startTimeoutMs: 120_000,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 5_000,
  maxMissedDeadlines: 2,
  backoffBaseMs: 1_000,
  backoffMaxMs: 30_000,
  maxQueuedBytes: 16 * 1024 * 1024,
  maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
  bufferedReplyBytes: MAX_BUFFERED_RESPONSE_BYTES,
  streamedReplyBytes: MAX_STREAMED_RESPONSE_BYTES,
};
/** A child that lived this long after `ready` ends a crash loop even if it never answered. */
const STABLE_AFTER_MS = 30_000;
/** How long a dead child's pipes may take to deliver its last output before its requests are rejected. */
const OUTPUT_DRAIN_MS = 100;
/** How many stderr lines are kept to explain a crash. */
const STDERR_TAIL_LINES = 20;
/** A stderr line is cut at this length; the rest up to the newline is dropped. */
const MAX_STDERR_LINE_CHARS = 64 * 1024;
/** An id in the first bytes of a reply line (the bridge writes `{"id": ...` first). */
const LEADING_ID = /^\s*\{\s*"id"\s*:\s*"([^"\\]{1,64})"/;

/**
 * The bridge could not answer: it is starting, restarting after failures, overloaded, stuck, or
 * died. `status` is the HTTP status for the caller (503 unless said otherwise), `code` a stable
 * name, `detail` the full story for the logs (stderr, exit status, interpreter path), and
 * `retryAfterMs` when retrying later will help.
 */
export class BridgeError extends Error {
  constructor(message, { status = 503, code = "bridge_unavailable", detail = null, retryAfterMs = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = "BridgeError";
    this.status = status;
    this.code = code;
    this.detail = detail ?? message;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The reply is larger than Lambda can return. */
export class ReplyTooLargeError extends BridgeError {
  constructor(message, options = {}) {
    super(message, { status: 500, code: "reply_too_large", ...options });
    this.name = "ReplyTooLargeError";
  }
}

/** The request did not complete before its deadline. */
export class LiteLLMTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "LiteLLMTimeoutError";
    this.status = 504;
    this.code = "timeout";
  }
}

/**
 * The bridge answered with an error (from `openai_endpoint.describe_error`): `error` is that
 * object as sent, `status` its HTTP status when it has one.
 */
export class ProviderError extends Error {
  constructor(error) {
    const details = error !== null && typeof error === "object" && !Array.isArray(error) ? error : { message: String(error) };
    super(typeof details.message === "string" ? details.message : "the bridge reported an error without a message");
    this.name = "ProviderError";
    this.error = details;
    this.type = typeof details.type === "string" ? details.type : "Error";
    this.status = Number.isInteger(details.status) ? details.status : null;
    this.provider = typeof details.provider === "string" ? details.provider : null;
  }
}

/**
 * Splits a byte stream into lines without copying each partial chunk again (replies can be
 * megabytes). Once a line grows past `minLimit`, `limitFor(head)` gives the limit for that line
 * from its first bytes; a line over its limit is not kept: `onOversize(head, size)` is called at
 * once (so its request fails without waiting for the rest) and the remainder up to the newline is
 * dropped.
 */
class LineSplitter {
  constructor(minLimit, limitFor, onLine, onOversize) {
    this.minLimit = minLimit;
    this.limitFor = limitFor;
    this.onLine = onLine;
    this.onOversize = onOversize;
    this.parts = [];
    this.size = 0;
    this.lineLimit = null;
    this.discarding = false;
  }

  push(chunk) {
    let start = 0;
    for (let newline = chunk.indexOf(10); newline !== -1; newline = chunk.indexOf(10, start)) {
      const tail = chunk.subarray(start, newline);
      if (this.discarding) {
        this.discarding = false;
      } else if (this.#over(tail)) {
        this.onOversize(this.#head(tail), this.size + tail.length);
      } else {
        const line = this.parts.length === 0 ? tail : Buffer.concat([...this.parts, tail]);
        this.onLine(line);
      }
      this.parts = [];
      this.size = 0;
      this.lineLimit = null;
      start = newline + 1;
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.subarray(start);
      if (this.#over(rest)) {
        this.onOversize(this.#head(rest), this.size + rest.length);
        this.parts = [];
        this.size = 0;
        this.lineLimit = null;
        this.discarding = true;
      } else {
        this.parts.push(rest);
        this.size += rest.length;
      }
    }
  }

  #over(piece) {
    const size = this.size + piece.length;
    if (size <= this.minLimit) return false;
    this.lineLimit ??= this.limitFor(this.#head(piece));
    return size > this.lineLimit;
  }

  #head(piece) {
    return Buffer.concat([...this.parts, piece.subarray(0, 256)]).subarray(0, 256).toString("utf8");
  }
}

/** An async queue of stream chunks, consumed by `LiteLLMClient.stream`. */
class ChunkQueue {
  constructor() {
    this.items = [];
    this.waiter = null;
    this.done = false;
    this.error = null;
  }

  push(item) {
    this.items.push(item);
    this.wake();
  }

  end(error = null) {
    if (this.done) return;
    this.done = true;
    this.error = error;
    this.wake();
  }

  wake() {
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve();
    }
  }

  async next() {
    while (this.items.length === 0 && !this.done) {
      await new Promise((resolve) => {
        this.waiter = resolve;
      });
    }
    if (this.items.length > 0) return { value: this.items.shift(), done: false };
    if (this.error) throw this.error;
    return { value: undefined, done: true };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A client for the LiteLLM bridge.
 *
 * Options (defaults in `DEFAULTS`): `python` (`{executable, source, env}` as from
 * `resolvePython`), `bridgePath`, `env` (extra variables for the child), `timeoutMs` (deadline per
 * request), `killGraceMs` (SIGTERM to SIGKILL), `startTimeoutMs` (spawn to `ready`),
 * `pingIntervalMs` and `pingTimeoutMs` (liveness pings while requests are in flight),
 * `maxMissedDeadlines`, `backoffBaseMs` and `backoffMaxMs` (crash loops), `maxQueuedBytes` (stdin
 * queue), `maxRequestBytes`, `bufferedReplyBytes` and `streamedReplyBytes` (reply caps), `logger`
 * (`{info, warn, error}` taking `(message, fields)`, default: JSON lines on stdout).
 */
export class LiteLLMClient {
  constructor({ python, bridgePath = BRIDGE_PATH, env = {}, logger = defaultLogger, ...options } = {}) {
    for (const name of Object.keys(options)) {
      if (!(name in DEFAULTS)) throw new TypeError(`unknown LiteLLMClient option ${JSON.stringify(name)}`);
    }
    Object.assign(this, DEFAULTS, options);
    this.python = python ?? resolvePython();
    this.bridgePath = bridgePath;
    this.env = env;
    this.logger = logger;
    this.child = null;
    this.pending = new Map();
    this.nextId = 1;
    this.readyInfo = null;
    /** Children spawned so far (tests and benchmarks read it). */
    this.spawnCount = 0;
    /** Failed starts in a row, and until when no new child is started. */
    this.failedStarts = 0;
    this.backoffUntil = 0;
    this.lastFailure = null;
    /**
     * Set when a child reported that the model config cannot be used: the file and the
     * environment it reads are fixed for this process, so starting again (and paying LiteLLM's
     * import again) cannot help. Every request gets this error until the process is restarted.
     */
    this.misconfigured = null;
    this.readyWaiters = new Set();
    this.closed = false;
  }

  /** The pid of the running child, or null. */
  get pid() {
    return this.child?.proc.pid ?? null;
  }

  /** True when the current child has sent `ready`. */
  get isReady() {
    return this.child?.state === "ready";
  }

  /** Number of requests waiting for an answer. */
  get inFlight() {
    return this.pending.size;
  }

  /** Bytes written to the child's stdin that it has not read yet (Node's buffer and our queue). */
  get queuedBytes() {
    const child = this.child;
    return child ? child.queuedBytes + (child.proc.stdin?.writableLength ?? 0) : 0;
  }

  /** Starts the child now unless one runs or the client is backing off. */
  start() {
    if (this.child || this.misconfigured || Date.now() < this.backoffUntil) return;
    this.#spawn();
  }

  /**
   * Starts the child if needed and resolves to true once it is ready, or to false after
   * `timeoutMs` or when it fails to start (the failure is logged; requests report it).
   */
  waitReady(timeoutMs) {
    this.start();
    if (this.isReady) return Promise.resolve(true);
    if (!this.child) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = (ready) => {
        clearTimeout(timer);
        this.readyWaiters.delete(waiter);
        resolve(ready);
      };
      // A referenced timer: it keeps the event loop (and a top-level await on this) alive.
      const timer = setTimeout(() => waiter(false), timeoutMs);
      this.readyWaiters.add(waiter);
    });
  }

  /** Chat completion (without streaming): resolves to the OpenAI chat completion object. */
  chat(params, options = {}) {
    return this.#call("chat", { ...params, stream: false }, options);
  }

  /** Embeddings: resolves to the OpenAI embeddings list object. */
  embeddings(params, options = {}) {
    return this.#call("embeddings", params, options);
  }

  /** The configured models: resolves to the OpenAI model list object. */
  models(options = {}) {
    return this.#call("models", {}, options);
  }

  /** Asks the bridge for `{pid, python, litellm, executable}`; also starts the child if needed. */
  health(options = {}) {
    return this.#call("health", undefined, options);
  }

  /**
   * A streaming chat completion: returns an async iterator of chunk objects.
   *
   * The request starts at once; the deadline covers the whole stream and the reply cap is Lambda's
   * streamed limit. Leaving the `for await` loop early cancels the request in the bridge.
   * Options: `timeoutMs`, `requestId` (Lambda's request id, for the bridge's log lines).
   */
  stream(params, options = {}) {
    const queue = new ChunkQueue();
    const id = this.#send("chat", { ...params, stream: true }, options, {
      streamed: true,
      onChunk: (chunk) => queue.push(chunk),
      onResult: () => queue.end(),
      onError: (error) => queue.end(error),
    });
    const client = this;
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      next: () => queue.next(),
      async return() {
        client.#cancel(id);
        queue.end();
        return { value: undefined, done: true };
      },
    };
  }

  /**
   * Stops the child: closes its stdin, sends SIGTERM, and SIGKILL after `killGraceMs`.
   * Requests still in flight are rejected. Resolves once the child has exited.
   */
  async shutdown() {
    this.backoffUntil = 0;
    const child = this.child;
    if (!child) return;
    // No replacement is started while shutting down; afterwards a new request starts a new child.
    this.closed = true;
    try {
      this.#detach(child, new BridgeError("the LiteLLM bridge was shut down with this request in flight", { code: "bridge_shutdown" }));
      await this.#stop(child, "SIGTERM");
    } finally {
      this.closed = false;
    }
  }

  #call(type, params, options) {
    return new Promise((resolve, reject) => {
      this.#send(type, params, options, { onResult: resolve, onError: reject });
    });
  }

  #send(type, params, { timeoutMs, requestId = null } = {}, handlers) {
    const id = String(this.nextId++);
    const fail = (error) => {
      queueMicrotask(() => handlers.onError(error));
      return id;
    };
    const message = { id, type };
    if (params !== undefined) message.params = params;
    if (requestId !== null) message.request_id = String(requestId);
    let line;
    try {
      line = JSON.stringify(message) + "\n";
    } catch (error) {
      return fail(new BridgeError(`request could not be encoded as JSON: ${error.message}`, { status: 400, code: "invalid_request" }));
    }
    const bytes = Buffer.byteLength(line);
    if (bytes > this.maxRequestBytes) {
      return fail(new BridgeError(`the request is ${bytes} bytes; the limit is ${this.maxRequestBytes}`, { status: 413, code: "request_too_large" }));
    }
    const unavailable = this.#unavailable();
    if (unavailable) return fail(unavailable);
    const child = this.child ?? this.#spawn();
    if (child.state === "exited") return fail(child.exitError);
    if (child.queuedBytes + child.proc.stdin.writableLength + bytes > this.maxQueuedBytes) {
      return fail(
        new BridgeError(`the LiteLLM bridge is not keeping up: ${this.queuedBytes} bytes wait to be written to it (limit ${this.maxQueuedBytes})`, {
          code: "bridge_overloaded",
          retryAfterMs: 1_000,
        }),
      );
    }
    const deadline = timeoutMs ?? this.timeoutMs;
    const entry = {
      ...handlers,
      type,
      child,
      requestId,
      replyBytes: 0,
      replyCap: (handlers.streamed ? this.streamedReplyBytes : this.bufferedReplyBytes) + REPLY_ENVELOPE_BYTES,
      timer: setTimeout(() => this.#timeout(id, deadline), deadline),
    };
    this.pending.set(id, entry);
    child.inFlight += 1;
    this.#busyChanged(child);
    this.#write(child, line);
    return id;
  }

  /** Why no request can be sent now (backing off after failed starts), or null. */
  #unavailable() {
    if (this.child) return null;
    if (this.misconfigured) return this.misconfigured;
    const wait = this.backoffUntil - Date.now();
    if (wait <= 0) return null;
    return new BridgeError(
      `the LiteLLM bridge failed to start ${this.failedStarts} times in a row; the next attempt is in ${(wait / 1000).toFixed(1)} s`,
      { code: "bridge_restarting", retryAfterMs: wait, detail: `backing off after ${this.failedStarts} failed starts; last: ${this.lastFailure}` },
    );
  }

  /** Writes a line to the child's stdin, or queues it until `drain` when the pipe is full. */
  #write(child, line) {
    if (child.state === "exited") return;
    if (child.blocked) {
      child.queue.push(line);
      child.queuedBytes += Buffer.byteLength(line);
      return;
    }
    if (!child.proc.stdin.write(line)) this.#waitForDrain(child);
  }

  #waitForDrain(child) {
    child.blocked = true;
    child.proc.stdin.once("drain", () => {
      child.blocked = false;
      while (child.queue.length > 0 && child.state !== "exited") {
        const line = child.queue.shift();
        child.queuedBytes -= Buffer.byteLength(line);
        if (!child.proc.stdin.write(line)) {
          this.#waitForDrain(child);
          return;
        }
      }
    });
  }

  #cancel(id) {
    const entry = this.#settle(id);
    if (entry) this.#write(entry.child, JSON.stringify({ id, type: "cancel" }) + "\n");
  }

  #timeout(id, deadline) {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.#cancel(id);
    entry.onError(new LiteLLMTimeoutError(`the request did not complete within ${deadline} ms`));
    const child = entry.child;
    // A child still importing LiteLLM is not stuck: `startTimeoutMs` bounds its start.
    if (child.state !== "ready" || child.retired) return;
    child.missedDeadlines += 1;
    if (child.missedDeadlines >= this.maxMissedDeadlines) {
      this.#replace(child, `missed ${child.missedDeadlines} request deadlines in a row`);
    } else {
      this.#ping(child);
    }
  }

  /** Removes a request from the table and returns its entry (undefined when already settled). */
  #settle(id) {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    this.pending.delete(id);
    entry.child.inFlight -= 1;
    this.#busyChanged(entry.child);
    return entry;
  }

  /**
   * Keeps Node's event loop alive only while requests wait on the child, and pings the child
   * periodically while they do.
   */
  #busyChanged(child) {
    if (child.state === "exited") return;
    const busy = child.inFlight > 0;
    for (const handle of [child.proc, child.proc.stdout, child.proc.stderr, child.proc.stdin]) {
      if (busy) handle.ref?.();
      else handle.unref?.();
    }
    if (busy && !child.pingInterval) {
      child.pingInterval = setInterval(() => child.state === "ready" && this.#ping(child), this.pingIntervalMs);
      child.pingInterval.unref();
    } else if (!busy && child.pingInterval) {
      clearInterval(child.pingInterval);
      child.pingInterval = null;
    }
  }

  /** Sends a liveness ping; a child that does not answer within `pingTimeoutMs` is replaced. */
  #ping(child) {
    if (child.pingTimer || child.state !== "ready") return;
    const id = `ping-${this.nextId++}`;
    child.pingId = id;
    child.pingTimer = setTimeout(() => this.#replace(child, `did not answer a liveness ping within ${this.pingTimeoutMs} ms`), this.pingTimeoutMs);
    child.pingTimer.unref();
    this.#write(child, JSON.stringify({ id, type: "ping" }) + "\n");
  }

  /** Kills a stuck or misbehaving child, rejects its requests, and starts a new one at once. */
  #replace(child, reason) {
    if (child.retired || child.state === "exited") return;
    child.retired = true;
    const detail = `litellm bridge (pid ${child.proc.pid}) ${reason}; replacing it`;
    this.logger.error(detail, { child_pid: child.proc.pid });
    this.#detach(child, new BridgeError("the LiteLLM bridge stopped answering and was restarted", { code: "bridge_restarted", detail }));
    child.proc.kill("SIGKILL");
    if (!this.closed) this.#spawn();
  }

  #spawn() {
    const { executable, env, source } = this.python;
    this.spawnCount += 1;
    const proc = spawn(executable, ["-u", this.bridgePath], {
      env: {
        ...process.env,
        ...env,
        BRIDGE_PARENT_PID: String(process.pid),
        BRIDGE_MAX_REPLY_BYTES: String(this.bufferedReplyBytes),
        BRIDGE_MAX_STREAM_BYTES: String(this.streamedReplyBytes),
        BRIDGE_MAX_REQUEST_BYTES: String(this.maxRequestBytes),
        LOG_MESSAGE_CONTENTS: logContentsEnabled() ? "1" : "0",
        ...this.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const child = {
      proc,
      state: "starting",
      startedAt: Date.now(),
      readyAt: null,
      answered: false,
      retired: false,
      inFlight: 0,
      missedDeadlines: 0,
      blocked: false,
      queue: [],
      queuedBytes: 0,
      fatal: null,
      stderrTail: [],
      pingTimer: null,
      pingId: null,
      pingInterval: null,
      exitError: null,
      executable,
      source,
    };
    this.child = child;
    this.#busyChanged(child);
    child.startTimer = setTimeout(() => {
      if (child.state === "starting") this.#replaceStart(child);
    }, this.startTimeoutMs);
    child.startTimer.unref();

    const splitter = new LineSplitter(
      Math.min(this.bufferedReplyBytes, this.streamedReplyBytes),
      (head) => this.#lineLimit(head),
      (line) => this.#onLine(child, line),
      (head, size) => this.#onOversize(child, head, size),
    );
    proc.stdout.on("data", (chunk) => splitter.push(chunk));

    let stderrRest = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (text) => {
      const lines = (stderrRest + text).split("\n");
      stderrRest = lines.pop();
      if (stderrRest.length > MAX_STDERR_LINE_CHARS) {
        lines.push(stderrRest);
        stderrRest = "";
      }
      for (const line of lines) this.#onStderr(child, line);
    });
    proc.stderr.on("end", () => {
      if (stderrRest) this.#onStderr(child, stderrRest);
      stderrRest = "";
    });

    proc.stdin.on("error", (error) => {
      // EPIPE when the child died; the exit handler rejects the requests.
      if (error.code !== "EPIPE") this.logger.warn(`litellm bridge stdin: ${error.message}`, { child_pid: proc.pid });
    });
    proc.on("error", (error) => {
      const detail =
        error.code === "ENOENT" || error.code === "EACCES"
          ? `python interpreter ${JSON.stringify(executable)} (chosen from ${source}) could not be started (${error.code}): ${interpreterHint(source)}`
          : `python interpreter ${JSON.stringify(executable)} failed: ${error.message}`;
      this.#onExit(child, { detail, message: "the LiteLLM bridge could not start: its Python interpreter is missing or not executable" });
    });
    proc.on("exit", (code, signal) => {
      if (child.state === "exited") return;
      // Its last words (stderr, a fatal message) may still be in the pipes: wait for them briefly.
      const drained = Promise.all([proc.stdout, proc.stderr].map((stream) => finished(stream).catch(() => {})));
      Promise.race([drained, sleep(OUTPUT_DRAIN_MS)]).then(() => {
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        const why = child.fatal ?? child.stderrTail.slice(-5).join("\n");
        const detail = `litellm bridge (pid ${proc.pid}) ${how}${why ? `: ${why}` : ""}`;
        const message = child.fatal
          ? `the LiteLLM bridge could not start (${child.fatalKind ?? "startup"} error); the function's logs say why`
          : `the LiteLLM bridge ${how} with this request in flight`;
        this.#onExit(child, { detail, message });
      });
    });
    return child;
  }

  /** A child that did not become ready within `startTimeoutMs` is killed; that counts as a failed start. */
  #replaceStart(child) {
    this.logger.error(`litellm bridge (pid ${child.proc.pid}) was not ready within ${this.startTimeoutMs} ms; killing it`, { child_pid: child.proc.pid });
    child.fatal = `not ready within ${this.startTimeoutMs} ms`;
    child.fatalKind = "startup timeout";
    child.proc.kill("SIGKILL");
  }

  #onExit(child, { detail, message }) {
    if (child.state === "exited") return;
    const wasReady = child.state === "ready";
    child.state = "exited";
    clearTimeout(child.startTimer);
    clearTimeout(child.pingTimer);
    clearInterval(child.pingInterval);
    const error = new BridgeError(message, { code: child.fatal ? "bridge_start_failed" : "bridge_crashed", detail });
    child.exitError = error;
    const current = this.child === child;
    if (current) this.child = null;
    for (const waiter of [...this.readyWaiters]) if (current) waiter(false);
    const count = this.#detach(child, error);
    if (child.retired || child.stopping) return;
    this.logger.error(detail + (count > 0 ? ` (${count} request(s) in flight rejected)` : ""), { child_pid: child.proc.pid });
    if (child.fatalKind === "config" && current && !this.closed) {
      this.misconfigured = new BridgeError("the LiteLLM bridge cannot start: its model config is invalid; the function's logs say why", {
        code: "bridge_misconfigured",
        detail,
      });
      this.logger.error("the model config cannot be used; the bridge is not restarted until the config is fixed and the process restarted");
      return;
    }
    // A crash loop: the child died before it could serve. Back off from the second failure on.
    const healthy = wasReady && (child.answered || Date.now() - child.readyAt >= STABLE_AFTER_MS);
    this.failedStarts = healthy ? 1 : this.failedStarts + 1;
    this.lastFailure = detail;
    const delay = this.failedStarts <= 1 ? 0 : Math.min(this.backoffBaseMs * 2 ** (this.failedStarts - 2), this.backoffMaxMs);
    if (!current || this.closed) return;
    if (delay === 0) {
      // The first failure is replaced at once, so the next request finds a warm child.
      if (healthy) this.#spawn();
      else this.backoffUntil = 0;
    } else {
      this.backoffUntil = Date.now() + delay;
      this.logger.warn(`litellm bridge failed to start ${this.failedStarts} times in a row; next start in ${delay} ms`, { retry_after_ms: delay });
    }
  }

  /** Rejects every request waiting on `child`; returns how many there were. */
  #detach(child, error) {
    if (this.child === child) this.child = null;
    let count = 0;
    for (const [id, entry] of [...this.pending]) {
      if (entry.child !== child) continue;
      this.#settle(id);
      entry.onError(error);
      count += 1;
    }
    return count;
  }

  /** SIGTERM (or the given signal), then SIGKILL after the grace period; resolves once it exited. */
  async #stop(child, signal) {
    child.stopping = true;
    if (child.state === "exited" || child.proc.exitCode !== null || child.proc.signalCode !== null || child.proc.pid === undefined) return;
    const exited = new Promise((resolve) => child.proc.once("exit", resolve));
    // Keep the event loop alive until the child is gone, even with no request in flight.
    child.proc.ref();
    child.proc.stdin.end();
    child.proc.kill(signal);
    const killTimer = setTimeout(() => {
      this.logger.warn(`litellm bridge (pid ${child.proc.pid}) ignored ${signal} for ${this.killGraceMs} ms; sending SIGKILL`, { child_pid: child.proc.pid });
      child.proc.kill("SIGKILL");
    }, this.killGraceMs);
    await exited;
    clearTimeout(killTimer);
  }

  #onStderr(child, line) {
    if (line.trim() === "") return;
    let record = null;
    if (line.startsWith("{")) {
      try {
        record = JSON.parse(line);
      } catch {
        record = null;
      }
    }
    const text = record && typeof record.msg === "string" ? record.msg : line;
    child.stderrTail.push(text.slice(0, 2_000));
    if (child.stderrTail.length > STDERR_TAIL_LINES) child.stderrTail.shift();
    const fields = { source: "bridge", child_pid: child.proc.pid };
    let level = "info";
    if (record && typeof record === "object") {
      level = { warn: "warn", warning: "warn", error: "error", critical: "error" }[String(record.level).toLowerCase()] ?? "info";
      if (typeof record.request_id === "string") fields.request_id = record.request_id;
      if (typeof record.logger === "string") fields.logger = record.logger;
    }
    this.logger[level](text, fields);
  }

  /** The most a reply line may carry: what is left of its request's cap (from the id it starts with). */
  #lineLimit(head) {
    const entry = this.pending.get(LEADING_ID.exec(head)?.[1]);
    if (entry) return entry.replyCap - entry.replyBytes;
    return Math.max(this.bufferedReplyBytes, this.streamedReplyBytes) + REPLY_ENVELOPE_BYTES;
  }

  /** A reply line over its cap: fail its request at once and reset the child. */
  #onOversize(child, head, size) {
    const id = LEADING_ID.exec(head)?.[1];
    const entry = id === undefined ? undefined : this.pending.get(id);
    const detail = `litellm bridge (pid ${child.proc.pid}) sent a reply line of more than ${size} bytes${id ? ` for request ${id}` : ""}`;
    if (entry && entry.child === child) {
      this.#settle(id);
      entry.onError(this.#tooLarge(entry, size));
    }
    this.#replace(child, `broke the reply cap (${detail})`);
  }

  #tooLarge(entry, size) {
    const streamed = entry.streamed === true;
    const limit = entry.replyCap - REPLY_ENVELOPE_BYTES;
    return new ReplyTooLargeError(
      streamed
        ? `the streamed reply passed ${size} bytes, over Lambda's limit of ${limit} bytes for a streamed response; ask for fewer tokens (max_tokens)`
        : `the reply is ${size} bytes, over Lambda's limit of ${limit} bytes for a buffered response; ask for fewer tokens (max_tokens) or stream it`,
    );
  }

  #onLine(child, buffer) {
    const line = buffer.toString("utf8");
    if (line.trim() === "") return;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      this.logger.warn(`litellm bridge: ignoring a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`, { child_pid: child.proc.pid });
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      this.logger.warn(`litellm bridge: ignoring a message that is not an object: ${JSON.stringify(line.slice(0, 200))}`, { child_pid: child.proc.pid });
      return;
    }
    if (message.type === "ready") return this.#onReady(child, message);
    if (message.type === "fatal") {
      child.fatal = String(message.message).slice(0, 4_000);
      child.fatalKind = typeof message.kind === "string" ? message.kind : null;
      return;
    }
    if (message.type === "pong") {
      if (message.id === child.pingId) {
        clearTimeout(child.pingTimer);
        child.pingTimer = null;
      }
      return;
    }
    const entry = this.pending.get(message.id);
    if (!entry || entry.child !== child) {
      this.logger.info(`litellm bridge: dropping a late or unknown reply (id ${JSON.stringify(message.id)}, type ${JSON.stringify(message.type)})`, {
        child_pid: child.proc.pid,
      });
      return;
    }
    entry.replyBytes += buffer.length;
    if (entry.replyBytes > entry.replyCap) {
      this.#settle(message.id);
      entry.onError(this.#tooLarge(entry, entry.replyBytes));
      this.#replace(child, `sent request ${message.id} a reply over its cap (${entry.replyBytes} bytes)`);
      return;
    }
    switch (message.type) {
      case "chunk":
        if (entry.onChunk) entry.onChunk(message.chunk);
        break;
      case "result":
        this.#answered(child, message.id).onResult(message.response);
        break;
      case "end":
        this.#answered(child, message.id).onResult(undefined);
        break;
      case "error":
        this.#answered(child, message.id).onError(new ProviderError(message.error));
        break;
      case "too_large": {
        // The bridge saw the reply would not fit and sent this instead: the child is fine.
        this.#answered(child, message.id).onError(this.#tooLarge(entry, Number(message.bytes) || entry.replyCap));
        break;
      }
      default:
        this.logger.warn(`litellm bridge: ignoring a message of unknown type ${JSON.stringify(message.type)} for request ${message.id}`, {
          child_pid: child.proc.pid,
        });
    }
  }

  /** A request got its final answer: the child works, so deadlines and crash counts start over. */
  #answered(child, id) {
    child.answered = true;
    child.missedDeadlines = 0;
    this.failedStarts = 0;
    return this.#settle(id);
  }

  #onReady(child, message) {
    if (child.state !== "starting") return;
    child.state = "ready";
    child.readyAt = Date.now();
    clearTimeout(child.startTimer);
    this.readyInfo = message;
    if (Array.isArray(message.secret_env_names)) addSecretEnvNames(message.secret_env_names);
    if (this.child === child) for (const waiter of [...this.readyWaiters]) waiter(true);
  }
}

let sharedClient = null;

/** The container-wide client, created on first use with the interpreter `resolvePython()` picks. */
export function getSharedClient() {
  sharedClient ??= new LiteLLMClient();
  return sharedClient;
}
