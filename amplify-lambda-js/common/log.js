//! Structured logs: every line the service writes is one JSON object.
//!
//! On Lambda, whatever a function writes to stdout or stderr becomes a CloudWatch log event, one
//! per line; JSON lines can be queried field by field (CloudWatch Logs Insights). Each request gets
//! one summary line (`beginRequest(...).finish(...)`); the bridge's own lines are forwarded with the
//! same request id (litellm/litellmClient.js). Message contents (prompts, replies) are never
//! logged unless `LOG_MESSAGE_CONTENTS=1` is set, which also lets LiteLLM's own debug logging
//! through (litellm/bridge.py).

import { redactSecrets } from "./redact.js";

/** True when the function is configured to log message contents (off by default). */
export function logContentsEnabled(env = process.env) {
  return ["1", "true", "yes"].includes(String(env.LOG_MESSAGE_CONTENTS ?? "").toLowerCase());
}

/** Log lines longer than this are cut (CloudWatch keeps 256 KB per event). */
const MAX_LOG_MESSAGE_CHARS = 16 * 1024;

function clean(value) {
  if (typeof value === "string") {
    const text = redactSecrets(value);
    return text.length > MAX_LOG_MESSAGE_CHARS ? `${text.slice(0, MAX_LOG_MESSAGE_CHARS)}... (truncated)` : text;
  }
  return value;
}

/**
 * A logger writing one JSON object per line: `{"time", "level", "msg", ...fields}`.
 *
 * `fields` of each call and the logger's `base` fields are added to the line; string values are
 * redacted (common/redact.js). `write` receives each finished line (default: process.stdout, the
 * stream Lambda sends to CloudWatch as is).
 */
export function createLogger({ write = (line) => process.stdout.write(line), base = {} } = {}) {
  const emit = (level) => (message, fields = {}) => {
    const record = { time: new Date().toISOString(), level, msg: clean(message) };
    for (const [name, value] of Object.entries({ ...base, ...fields })) {
      if (value !== undefined && !(name in record)) record[name] = clean(value);
    }
    let line;
    try {
      line = JSON.stringify(record);
    } catch (error) {
      line = JSON.stringify({ time: record.time, level, msg: `a log line could not be encoded as JSON: ${error.message}` });
    }
    write(`${line}\n`);
  };
  return {
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    /** A logger adding `fields` to every line. */
    child: (fields) => createLogger({ write, base: { ...base, ...fields } }),
  };
}

/** The process-wide logger. */
export const logger = createLogger();

let requestsBegun = 0;

/** Token counts of an OpenAI `usage` object, or nulls. */
function tokenCounts(usage) {
  const count = (value) => (Number.isInteger(value) && value >= 0 ? value : null);
  return {
    prompt_tokens: count(usage?.prompt_tokens),
    completion_tokens: count(usage?.completion_tokens),
    total_tokens: count(usage?.total_tokens),
  };
}

/**
 * Starts the summary line of one request; call `finish` once it is answered.
 *
 * `requestId` is Lambda's request id (`context.awsRequestId`), `route` e.g.
 * `POST /v1/chat/completions`. The first request of the process is `cold`, later ones `warm`.
 * `finish({status, model, usage, childPid, error})` writes
 * `{"msg": "request", request_id, route, model, status, latency_ms, prompt_tokens,
 * completion_tokens, total_tokens, child_pid, start}`: `model` must be the name as configured
 * (see `modelForLog` in common/redact.js), never the caller's raw string; `error` is the error
 * type, not its message.
 */
export function beginRequest({ requestId = null, route = null, log = logger, now = () => performance.now() } = {}) {
  const started = now();
  const start = requestsBegun === 0 ? "cold" : "warm";
  requestsBegun += 1;
  let finished = false;
  return {
    start,
    finish({ status = null, model = null, usage = null, childPid = null, error = undefined } = {}) {
      if (finished) return;
      finished = true;
      const fields = {
        request_id: requestId,
        route,
        model,
        status,
        latency_ms: Math.round((now() - started) * 10) / 10,
        ...tokenCounts(usage),
        child_pid: childPid,
        start,
      };
      if (error !== undefined) fields.error = error;
      (Number.isInteger(status) && status >= 500 ? log.error : log.info)("request", fields);
    },
  };
}
