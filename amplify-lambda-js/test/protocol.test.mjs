//! The client's side of the JSON-lines protocol and its failure handling, against stand-ins for
//! the bridge that misbehave on purpose (test/fixtures/*.py, run by the system python3).

import assert from "node:assert/strict";
import path from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { BridgeError, LiteLLMClient, LiteLLMTimeoutError, ReplyTooLargeError } from "../litellm/litellmClient.js";
import { recordingLogger } from "./support/logger.mjs";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");
const FAKE_BRIDGE = path.join(FIXTURES, "fake_bridge.py");
const clients = [];

function fakeClient(options = {}) {
  const logger = recordingLogger();
  const client = new LiteLLMClient({ python: { executable: "python3", source: "PATH", env: {} }, bridgePath: FAKE_BRIDGE, logger, ...options });
  clients.push(client);
  return { client, logger };
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

after(async () => {
  await Promise.all(clients.map((client) => client.shutdown()));
});

test("malformed lines from the child are logged and ignored; the real answer still arrives", async () => {
  const { client, logger } = fakeClient();
  const response = await client.chat({ behaviour: "garbage" });
  assert.deepEqual(response, { text: "after garbage" });
  const logs = logger.text();
  assert.match(logs, /warn: litellm bridge: ignoring a line that is not JSON: "this is not json"/);
  assert.match(logs, /warn: litellm bridge: ignoring a message that is not an object: "\[1, 2, 3\]"/);
  assert.match(logs, /info: litellm bridge: dropping a late or unknown reply \(id "no-such-request", type "result"\)/);
  assert.match(logs, /warn: litellm bridge: ignoring a message of unknown type "mystery" for request 1/);
  // The child survived all of it.
  assert.deepEqual(await client.chat({ behaviour: "again" }), { text: "plain again" });
});

test("a reply after the deadline is dropped and logged, and resolves nothing", async () => {
  const { client, logger } = fakeClient();
  await assert.rejects(client.chat({ behaviour: "late", delay: 0.5 }, { timeoutMs: 100 }), LiteLLMTimeoutError);
  await logger.waitFor(/dropping a late or unknown reply \(id "1", type "result"\)/);
  assert.equal(client.inFlight, 0);
  assert.deepEqual(await client.chat({ behaviour: "after" }), { text: "plain after" });
});

test("the bridge's log lines reach the logger as records with the request id; plain stderr lines too", async () => {
  const { client, logger } = fakeClient();
  assert.deepEqual(await client.chat({ behaviour: "log", request_id: "lambda-req-1" }, { requestId: "lambda-req-1" }), { text: "logged" });
  await logger.waitFor(/a plain line from native code/);
  const pid = client.pid;
  const json = logger.lines.find((line) => line.message === "a JSON line from the bridge");
  assert.deepEqual(json, {
    level: "warn",
    message: "a JSON line from the bridge",
    fields: { source: "bridge", child_pid: pid, request_id: "lambda-req-1", logger: "LiteLLM" },
  });
  const plain = logger.lines.find((line) => line.message === "a plain line from native code");
  assert.deepEqual(plain, { level: "info", message: "a plain line from native code", fields: { source: "bridge", child_pid: pid } });
});

test("a child that misses two deadlines in a row is replaced", async () => {
  const { client, logger } = fakeClient();
  await client.waitReady(10_000);
  const first = client.pid;
  await assert.rejects(client.chat({ behaviour: "silent" }, { timeoutMs: 100 }), LiteLLMTimeoutError);
  assert.equal(client.pid, first, "one missed deadline alone does not replace an answering child");
  await assert.rejects(client.chat({ behaviour: "silent" }, { timeoutMs: 100 }), LiteLLMTimeoutError);
  assert.notEqual(client.pid, first);
  assert.match(logger.text(), new RegExp(`error: litellm bridge \\(pid ${first}\\) missed 2 request deadlines in a row; replacing it`));
  assert.deepEqual(await client.chat({ behaviour: "fresh" }), { text: "plain fresh" });
  await sleep(50);
  assert.equal(alive(first), false, "the replaced child is gone");
});

test("a stuck child (no answer to the liveness ping) is killed and replaced; its requests fail at once", async () => {
  const { client, logger } = fakeClient({ pingIntervalMs: 100, pingTimeoutMs: 300 });
  await client.waitReady(10_000);
  const first = client.pid;
  const started = Date.now();
  await assert.rejects(client.chat({ behaviour: "hang", delay: 600 }, { timeoutMs: 60_000 }), (error) => {
    assert.ok(error instanceof BridgeError, `expected BridgeError, got ${error}`);
    assert.equal(error.message, "the LiteLLM bridge stopped answering and was restarted");
    assert.equal(error.status, 503);
    assert.equal(error.code, "bridge_restarted");
    return true;
  });
  assert.ok(Date.now() - started < 5_000, "rejected long before the request's deadline");
  assert.match(logger.text(), new RegExp(`litellm bridge \\(pid ${first}\\) did not answer a liveness ping within 300 ms; replacing it`));
  assert.deepEqual(await client.chat({ behaviour: "next" }), { text: "plain next" });
  assert.notEqual(client.pid, first);
  await sleep(50);
  assert.equal(alive(first), false);
});

test("a crash loop backs off exponentially with a clear 503; stderr goes to the logs, never to callers", async () => {
  const { client, logger } = fakeClient({ bridgePath: path.join(FIXTURES, "crash_at_start.py"), backoffBaseMs: 400, backoffMaxMs: 800 });
  const attempt = () => client.chat({ behaviour: "x" }).then(
    () => assert.fail("the request cannot succeed"),
    (error) => error,
  );
  // First failure: no backoff, the next request starts a child at once.
  const first = await attempt();
  assert.ok(first instanceof BridgeError);
  assert.match(first.message, /^the LiteLLM bridge exited with status 1 with this request in flight$/);
  assert.doesNotMatch(first.message, /Traceback|secret-path/);
  assert.match(first.detail, /crash_at_start: Traceback \(most recent call last\): \/opt\/python\/lib\/secret-path\.py/);
  assert.equal(client.spawnCount, 1);
  // Second failure: from now on the client waits 400 ms, then 800 ms (the cap), between starts.
  await attempt();
  assert.equal(client.spawnCount, 2);
  const backingOff = await attempt();
  assert.equal(client.spawnCount, 2, "no child is started while backing off");
  assert.equal(backingOff.status, 503);
  assert.equal(backingOff.code, "bridge_restarting");
  assert.match(backingOff.message, /^the LiteLLM bridge failed to start 2 times in a row; the next attempt is in 0\.\d s$/);
  assert.ok(backingOff.retryAfterMs > 0 && backingOff.retryAfterMs <= 400, `retry after ${backingOff.retryAfterMs}`);
  await sleep(backingOff.retryAfterMs + 20);
  await attempt();
  assert.equal(client.spawnCount, 3);
  const capped = await attempt();
  assert.equal(capped.code, "bridge_restarting");
  assert.ok(capped.retryAfterMs > 400 && capped.retryAfterMs <= 800, `retry after ${capped.retryAfterMs}`);
  await sleep(capped.retryAfterMs + 20);
  await attempt();
  assert.equal(client.spawnCount, 4);
  const stillCapped = await attempt();
  assert.ok(stillCapped.retryAfterMs > 400 && stillCapped.retryAfterMs <= 800, `retry after ${stillCapped.retryAfterMs}`);
  assert.match(logger.text(), /info: crash_at_start: Traceback/);
  assert.match(logger.text(), /warn: litellm bridge failed to start 4 times in a row; next start in 800 ms/);
});

test("writes wait for drain and the queue is bounded: a request that does not fit is a 503 at once", async () => {
  const maxQueuedBytes = 1024 * 1024;
  const { client } = fakeClient({ bridgePath: path.join(FIXTURES, "no_read.py"), maxQueuedBytes, pingIntervalMs: 60_000 });
  await client.waitReady(10_000);
  const big = "x".repeat(200 * 1024);
  const outcomes = [];
  for (let index = 0; index < 12; index += 1) {
    const pending = client.chat({ big }, { timeoutMs: 60_000 });
    pending.catch(() => {});
    outcomes.push(
      await Promise.race([
        pending.then(
          () => "answered",
          (error) => error,
        ),
        sleep(50).then(() => "waiting"),
      ]),
    );
    assert.ok(client.queuedBytes <= maxQueuedBytes, `${client.queuedBytes} bytes queued`);
  }
  const refused = outcomes.filter((outcome) => outcome instanceof BridgeError);
  assert.ok(outcomes.slice(0, 4).every((outcome) => outcome === "waiting"), "the first requests wait in the queue");
  assert.ok(refused.length >= 4, `expected refusals once ${maxQueuedBytes} bytes wait, got ${refused.length}`);
  assert.equal(refused[0].status, 503);
  assert.equal(refused[0].code, "bridge_overloaded");
  assert.match(refused[0].message, /^the LiteLLM bridge is not keeping up: \d+ bytes wait to be written to it \(limit 1048576\)$/);
});

test("an over-cap reply fails its request at once, long before the deadline, and resets the child", async () => {
  const { client, logger } = fakeClient({ bufferedReplyBytes: 64 * 1024 });
  await client.waitReady(10_000);
  const first = client.pid;
  const started = Date.now();
  // The child writes 200 KB of a 1 MB reply line, then stalls for a minute.
  await assert.rejects(client.chat({ behaviour: "oversize", first: 200 * 1024, bytes: 1024 * 1024 }, { timeoutMs: 60_000 }), (error) => {
    assert.ok(error instanceof ReplyTooLargeError, `expected ReplyTooLargeError, got ${error}`);
    assert.equal(error.status, 500);
    assert.equal(error.code, "reply_too_large");
    assert.match(error.message, /^the reply is \d+ bytes, over Lambda's limit of 65536 bytes for a buffered response; ask for fewer tokens \(max_tokens\) or stream it$/);
    return true;
  });
  assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms`);
  assert.match(logger.text(), new RegExp(`litellm bridge \\(pid ${first}\\) broke the reply cap`));
  assert.deepEqual(await client.chat({ behaviour: "after" }), { text: "plain after" });
  assert.notEqual(client.pid, first);
});

test("a too_large message from the bridge fails the request and keeps the child", async () => {
  const { client } = fakeClient();
  await assert.rejects(client.chat({ behaviour: "too_large" }), (error) => {
    assert.ok(error instanceof ReplyTooLargeError);
    assert.equal(error.message, "the reply is 7000000 bytes, over Lambda's limit of 6291456 bytes for a buffered response; ask for fewer tokens (max_tokens) or stream it");
    return true;
  });
  const pid = client.pid;
  assert.deepEqual(await client.chat({ behaviour: "still" }), { text: "plain still" });
  assert.equal(client.pid, pid);
});

test("a child exiting rejects its requests; the next request starts a new child", async () => {
  const { client, logger } = fakeClient({ timeoutMs: 120_000 });
  await assert.rejects(client.chat({ behaviour: "exit" }), (error) => {
    assert.ok(error instanceof BridgeError);
    assert.equal(error.message, "the LiteLLM bridge exited with status 3 with this request in flight");
    assert.match(error.detail, /^litellm bridge \(pid \d+\) exited with status 3: fake bridge: exiting on request$/);
    return true;
  });
  assert.match(logger.text(), /info: fake bridge: exiting on request/);
  assert.deepEqual(await client.chat({ behaviour: "restarted" }), { text: "plain restarted" });
});

test("a request that cannot be encoded as JSON, or is too large, is rejected without disturbing others", async () => {
  const { client } = fakeClient({ maxRequestBytes: 1000 });
  const circular = {};
  circular.self = circular;
  await assert.rejects(client.chat({ circular }), /request could not be encoded as JSON/);
  await assert.rejects(client.chat({ big: "x".repeat(2000) }), (error) => {
    assert.equal(error.status, 413);
    assert.match(error.message, /^the request is \d+ bytes; the limit is 1000$/);
    return true;
  });
  assert.equal(client.inFlight, 0);
  assert.deepEqual(await client.chat({ behaviour: "fine" }), { text: "plain fine" });
});

test("shutdown of a child that ignores SIGTERM ends with SIGKILL after the grace period", async () => {
  const bridgePath = path.join(FIXTURES, "ignore_sigterm.py");
  const { client, logger } = fakeClient({ bridgePath, killGraceMs: 200 });
  const rejected = assert.rejects(client.chat({}, { timeoutMs: 60_000 }), /shut down with this request in flight/);
  // Only once the child has installed its handler does SIGTERM get ignored.
  await logger.waitFor(/ignore_sigterm: ready/);
  const pid = client.pid;
  await client.shutdown();
  await rejected;
  assert.match(logger.text(), new RegExp(`warn: litellm bridge \\(pid ${pid}\\) ignored SIGTERM for 200 ms; sending SIGKILL`));
  assert.equal(alive(pid), false);
});
