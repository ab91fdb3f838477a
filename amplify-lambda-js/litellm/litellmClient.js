//! One persistent Python child running litellm/bridge.py, shared by every request of the container.
//!
//! The child starts on the first request and stays warm. Requests and replies are JSON lines tagged
//! with a request id, so many requests are in flight at once (see bridge.py for the protocol).
//! Each request has a deadline; a reply arriving after it is dropped. When the child dies, every
//! request in flight is rejected at once and the next request starts a new child. The child's
//! stderr (where the bridge sends everything libraries print) is always read and forwarded to the
//! logger, so a full pipe can never stall it.

import { spawn } from "node:child_process";
import path from "node:path";
import { finished } from "node:stream/promises";
import { fileURLToPath } from "node:url";

import { interpreterHint, resolvePython } from "../common/pythonExec.js";

/** The bridge script shipped with the function code. */
export const BRIDGE_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), "bridge.py");

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_KILL_GRACE_MS = 2_000;
/** Replies above this size are dropped (and logged) instead of exhausting the Lambda's memory. */
const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
/** How long a dead child's pipes may take to deliver its last output before its requests are rejected. */
const OUTPUT_DRAIN_MS = 100;
/** How many stderr lines are kept to explain a crash. */
const STDERR_TAIL_LINES = 20;

/** The bridge could not answer: the interpreter is missing, failed to start, or died. */
export class BridgeError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "BridgeError";
  }
}

/** The request did not complete before its deadline. */
export class LiteLLMTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "LiteLLMTimeoutError";
  }
}

/** LiteLLM or the provider behind it reported an error; `status` is the provider's HTTP status when known. */
export class ProviderError extends Error {
  constructor({ type, status, provider, message }) {
    super(message);
    this.name = "ProviderError";
    this.type = type ?? "Error";
    this.status = Number.isInteger(status) ? status : null;
    this.provider = provider ?? null;
  }
}

/** Splits a byte stream into lines without copying each partial chunk again (replies can be 10 MB+). */
class LineSplitter {
  constructor(maxBytes, onLine, onOversize) {
    this.maxBytes = maxBytes;
    this.onLine = onLine;
    this.onOversize = onOversize;
    this.parts = [];
    this.size = 0;
    this.discarding = false;
  }

  push(chunk) {
    let start = 0;
    for (let newline = chunk.indexOf(10); newline !== -1; newline = chunk.indexOf(10, start)) {
      const tail = chunk.subarray(start, newline);
      if (this.discarding) {
        this.discarding = false;
      } else if (this.size + tail.length > this.maxBytes) {
        this.onOversize(this.size + tail.length);
      } else {
        const line = this.parts.length === 0 ? tail : Buffer.concat([...this.parts, tail]);
        this.onLine(line.toString("utf8"));
      }
      this.parts = [];
      this.size = 0;
      start = newline + 1;
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.subarray(start);
      if (this.size + rest.length > this.maxBytes) {
        this.onOversize(this.size + rest.length);
        this.parts = [];
        this.size = 0;
        this.discarding = true;
      } else {
        this.parts.push(rest);
        this.size += rest.length;
      }
    }
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

/**
 * A client for the LiteLLM bridge.
 *
 * Options: `python` (`{executable, source, env}` as from `resolvePython`), `bridgePath`,
 * `env` (extra variables for the child), `timeoutMs` (default per request), `killGraceMs`
 * (SIGTERM to SIGKILL on shutdown), `maxMessageBytes`, `logger` (`{info, warn, error}`).
 */
export class LiteLLMClient {
  constructor({
    python,
    bridgePath = BRIDGE_PATH,
    env = {},
    timeoutMs = DEFAULT_TIMEOUT_MS,
    killGraceMs = DEFAULT_KILL_GRACE_MS,
    maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
    logger = console,
  } = {}) {
    this.python = python ?? resolvePython();
    this.bridgePath = bridgePath;
    this.env = env;
    this.timeoutMs = timeoutMs;
    this.killGraceMs = killGraceMs;
    this.maxMessageBytes = maxMessageBytes;
    this.logger = logger;
    this.child = null;
    this.pending = new Map();
    this.nextId = 1;
    this.readyInfo = null;
  }

  /** The pid of the running child, or null. */
  get pid() {
    return this.child?.proc.pid ?? null;
  }

  /** Number of requests waiting for an answer. */
  get inFlight() {
    return this.pending.size;
  }

  /** Runs `litellm.acompletion(**params)` (without streaming) and resolves to the response object. */
  completion(params, { timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      this.#send("completion", { ...params, stream: false }, timeoutMs, {
        onResult: resolve,
        onError: reject,
      });
    });
  }

  /** Asks the bridge for `{pid, python, litellm, executable}`; also starts the child if needed. */
  health({ timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      this.#send("health", undefined, timeoutMs, { onResult: resolve, onError: reject });
    });
  }

  /**
   * Runs a streaming completion and returns an async iterator of chunk objects.
   *
   * The request starts at once; the deadline covers the whole stream. Leaving the `for await`
   * loop early cancels the request in the bridge.
   */
  stream(params, { timeoutMs } = {}) {
    const queue = new ChunkQueue();
    const id = this.#send("completion", { ...params, stream: true }, timeoutMs, {
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
    const child = this.child;
    if (!child) return;
    this.#detach(child, new BridgeError("the LiteLLM client was shut down with this request in flight"));
    if (child.exited || child.proc.pid === undefined) return;
    const exited = new Promise((resolve) => child.proc.once("exit", resolve));
    // Keep the event loop alive until the child is gone, even with no request in flight.
    child.proc.ref();
    child.proc.stdin.end();
    child.proc.kill("SIGTERM");
    const killTimer = setTimeout(() => {
      this.logger.warn(`litellm bridge (pid ${child.proc.pid}) ignored SIGTERM for ${this.killGraceMs} ms; sending SIGKILL`);
      child.proc.kill("SIGKILL");
    }, this.killGraceMs);
    await exited;
    clearTimeout(killTimer);
  }

  #send(type, params, timeoutMs, handlers) {
    const id = String(this.nextId++);
    const deadline = timeoutMs ?? this.timeoutMs;
    const entry = { ...handlers, type, timer: null };
    let child;
    try {
      child = this.#ensureChild();
    } catch (error) {
      queueMicrotask(() => handlers.onError(error));
      return id;
    }
    entry.child = child;
    entry.timer = setTimeout(() => this.#timeout(id, deadline), deadline);
    this.pending.set(id, entry);
    child.inFlight += 1;
    this.#updateRef(child);
    const message = params === undefined ? { id, type } : { id, type, params };
    let line;
    try {
      line = JSON.stringify(message) + "\n";
    } catch (error) {
      this.#settle(id);
      queueMicrotask(() => handlers.onError(new TypeError(`request could not be encoded as JSON: ${error.message}`)));
      return id;
    }
    child.proc.stdin.write(line);
    return id;
  }

  #cancel(id) {
    const entry = this.#settle(id);
    if (entry && !entry.child.exited) {
      entry.child.proc.stdin.write(JSON.stringify({ id, type: "cancel" }) + "\n");
    }
  }

  #timeout(id, deadline) {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.#cancel(id);
    entry.onError(new LiteLLMTimeoutError(`LiteLLM request ${id} timed out after ${deadline} ms`));
  }

  /** Removes a request from the table and returns its entry (undefined when already settled). */
  #settle(id) {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    this.pending.delete(id);
    if (entry.child) {
      entry.child.inFlight -= 1;
      this.#updateRef(entry.child);
    }
    return entry;
  }

  /** Keeps Node's event loop alive only while requests wait on the child. */
  #updateRef(child) {
    if (child.exited) return;
    const busy = child.inFlight > 0;
    for (const handle of [child.proc, child.proc.stdout, child.proc.stderr, child.proc.stdin]) {
      if (busy) handle.ref?.();
      else handle.unref?.();
    }
  }

  #ensureChild() {
    if (this.child && !this.child.exited) return this.child;
    const { executable, env, source } = this.python;
    const proc = spawn(executable, ["-u", this.bridgePath], {
      env: { ...process.env, ...env, ...this.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const child = { proc, exited: false, inFlight: 0, fatal: null, stderrTail: [], executable, source };
    this.child = child;

    const splitter = new LineSplitter(
      this.maxMessageBytes,
      (line) => this.#onLine(child, line),
      (size) => this.logger.error(`litellm bridge: dropped a reply of more than ${size} bytes (limit ${this.maxMessageBytes})`),
    );
    proc.stdout.on("data", (chunk) => splitter.push(chunk));

    let stderrRest = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (text) => {
      const lines = (stderrRest + text).split("\n");
      stderrRest = lines.pop();
      for (const line of lines) this.#onStderr(child, line);
    });
    proc.stderr.on("end", () => {
      if (stderrRest) this.#onStderr(child, stderrRest);
      stderrRest = "";
    });

    proc.stdin.on("error", (error) => {
      // EPIPE when the child died; the exit handler rejects the requests.
      if (error.code !== "EPIPE") this.logger.warn(`litellm bridge stdin: ${error.message}`);
    });
    proc.on("error", (error) => {
      const reason =
        error.code === "ENOENT" || error.code === "EACCES"
          ? `python interpreter ${JSON.stringify(executable)} (chosen from ${source}) could not be started (${error.code}): ${interpreterHint(source)}`
          : `python interpreter ${JSON.stringify(executable)} failed: ${error.message}`;
      this.#onExit(child, new BridgeError(reason, { cause: error }));
    });
    proc.on("exit", (code, signal) => {
      if (child.exited) return;
      // No new request goes to this child; the next one starts a new child.
      child.exited = true;
      if (this.child === child) this.child = null;
      // Its last words (stderr, a fatal message) may still be in the pipes: wait for them briefly.
      const drained = Promise.all([proc.stdout, proc.stderr].map((stream) => finished(stream).catch(() => {})));
      const grace = new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS));
      Promise.race([drained, grace]).then(() => {
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        const why = child.fatal ?? child.stderrTail.slice(-5).join("\n");
        this.#rejectAll(child, new BridgeError(`litellm bridge (pid ${proc.pid}) ${how}${why ? `: ${why}` : ""}`));
      });
    });
    return child;
  }

  #onExit(child, error) {
    if (child.exited) return;
    child.exited = true;
    this.#rejectAll(child, error);
  }

  #rejectAll(child, error) {
    const count = this.#detach(child, error);
    if (count > 0) this.logger.error(`${error.message} (${count} request(s) in flight rejected)`);
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

  #onStderr(child, line) {
    child.stderrTail.push(line);
    if (child.stderrTail.length > STDERR_TAIL_LINES) child.stderrTail.shift();
    this.logger.info(`[litellm-bridge ${child.proc.pid}] ${line}`);
  }

  #onLine(child, line) {
    if (line.trim() === "") return;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      this.logger.warn(`litellm bridge: ignoring a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      this.logger.warn(`litellm bridge: ignoring a message that is not an object: ${JSON.stringify(line.slice(0, 200))}`);
      return;
    }
    if (message.type === "ready") {
      this.readyInfo = message;
      return;
    }
    if (message.type === "fatal") {
      child.fatal = String(message.message);
      return;
    }
    const entry = this.pending.get(message.id);
    if (!entry || entry.child !== child) {
      this.logger.info(`litellm bridge: dropping a late or unknown reply (id ${JSON.stringify(message.id)}, type ${JSON.stringify(message.type)})`);
      return;
    }
    switch (message.type) {
      case "chunk":
        if (entry.onChunk) entry.onChunk(message.chunk);
        break;
      case "result":
        this.#settle(message.id);
        entry.onResult(message.response);
        break;
      case "end":
        this.#settle(message.id);
        entry.onResult(undefined);
        break;
      case "error": {
        this.#settle(message.id);
        const details = message.error ?? {};
        entry.onError(details.timeout ? new LiteLLMTimeoutError(String(details.message)) : new ProviderError(details));
        break;
      }
      default:
        this.logger.warn(`litellm bridge: ignoring a message of unknown type ${JSON.stringify(message.type)} for request ${message.id}`);
    }
  }
}

let sharedClient = null;

/** The container-wide client, created on first use with the interpreter `resolvePython()` picks. */
export function getSharedClient() {
  sharedClient ??= new LiteLLMClient();
  return sharedClient;
}
