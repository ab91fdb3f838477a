//! common/log.js: one JSON object per line, one summary line per request, secrets removed.

import assert from "node:assert/strict";
import { test } from "node:test";

import { beginRequest, createLogger } from "../common/log.js";

function capture() {
  const lines = [];
  return { lines, logger: createLogger({ write: (line) => lines.push(line) }) };
}

test("every line is one JSON object with time, level and msg; string fields are redacted", () => {
  const { lines, logger } = capture();
  logger.info("plain message", { child_pid: 42 });
  logger.warn('quote " and newline \n and key sk-proj-abcdefgh12345678', { detail: "Ocp-Apim-Subscription-Key: Zq7RmT2vXy9LpK4w" });
  logger.error("error");
  assert.equal(lines.length, 3);
  for (const line of lines) {
    assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"), `one line: ${JSON.stringify(line)}`);
  }
  const records = lines.map((line) => JSON.parse(line));
  assert.deepEqual(
    records.map(({ time, ...rest }) => {
      assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      return rest;
    }),
    [
      { level: "info", msg: "plain message", child_pid: 42 },
      { level: "warn", msg: 'quote " and newline \n and key sk-[redacted]', detail: "Ocp-Apim-Subscription-Key: [redacted]" },
      { level: "error", msg: "error" },
    ],
  );
});

test("one summary line per request: id, route, model, status, latency, tokens, child pid, cold then warm", () => {
  const { lines, logger } = capture();
  let clock = 1000;
  const now = () => clock;
  const first = beginRequest({ requestId: "req-1", route: "POST /v1/chat/completions", log: logger, now });
  clock += 12.34;
  first.finish({ status: 200, model: "gpt-4o-mini", usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 }, childPid: 77 });
  first.finish({ status: 500 });
  const second = beginRequest({ requestId: "req-2", route: "GET /v1/models", log: logger, now });
  second.finish({ status: 503, error: "bridge_unavailable" });
  const records = lines.map((line) => JSON.parse(line)).map(({ time, ...rest }) => rest);
  assert.deepEqual(records, [
    {
      level: "info",
      msg: "request",
      request_id: "req-1",
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      status: 200,
      latency_ms: 12.3,
      prompt_tokens: 5,
      completion_tokens: 3,
      total_tokens: 8,
      child_pid: 77,
      start: records[0].start,
    },
    {
      level: "error",
      msg: "request",
      request_id: "req-2",
      route: "GET /v1/models",
      model: null,
      status: 503,
      latency_ms: 0,
      prompt_tokens: null,
      completion_tokens: null,
      total_tokens: null,
      child_pid: null,
      start: "warm",
      error: "bridge_unavailable",
    },
  ]);
  // This test file is its own process: the first request it logs is the cold one.
  assert.equal(records[0].start, "cold");
});
