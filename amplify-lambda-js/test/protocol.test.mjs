//! The client's side of the JSON-lines protocol, against a fake bridge that misbehaves on purpose.

import assert from "node:assert/strict";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { BridgeError, LiteLLMClient, LiteLLMTimeoutError } from "../litellm/litellmClient.js";
import { recordingLogger } from "./support/logger.mjs";

const FAKE_BRIDGE = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "fake_bridge.py");
const clients = [];

function fakeClient(options = {}) {
  const logger = recordingLogger();
  const client = new LiteLLMClient({ python: { executable: "python3", source: "PATH", env: {} }, bridgePath: FAKE_BRIDGE, logger, ...options });
  clients.push(client);
  return { client, logger };
}

after(async () => {
  await Promise.all(clients.map((client) => client.shutdown()));
});

test("malformed lines from the child are logged and ignored; the real answer still arrives", async () => {
  const { client, logger } = fakeClient();
  const response = await client.completion({ behaviour: "garbage" });
  assert.deepEqual(response, { text: "after garbage" });
  const logs = logger.text();
  assert.match(logs, /warn: litellm bridge: ignoring a line that is not JSON: "this is not json"/);
  assert.match(logs, /warn: litellm bridge: ignoring a message that is not an object: "\[1, 2, 3\]"/);
  assert.match(logs, /info: litellm bridge: dropping a late or unknown reply \(id "no-such-request", type "result"\)/);
  assert.match(logs, /warn: litellm bridge: ignoring a message of unknown type "mystery" for request 1/);
  // The child survived all of it.
  assert.deepEqual(await client.completion({ behaviour: "again" }), { text: "plain again" });
});

test("a reply after the deadline is dropped and logged, and resolves nothing", async () => {
  const { client, logger } = fakeClient();
  await assert.rejects(client.completion({ behaviour: "late", delay: 0.5 }, { timeoutMs: 100 }), LiteLLMTimeoutError);
  await logger.waitFor(/dropping a late or unknown reply \(id "1", type "result"\)/);
  assert.equal(client.inFlight, 0);
  assert.deepEqual(await client.completion({ behaviour: "after" }), { text: "plain after" });
});

test("a reply above the size limit is dropped without breaking the stream of lines", async () => {
  const { client, logger } = fakeClient({ maxMessageBytes: 64 * 1024 });
  const response = await client.completion({ behaviour: "oversize", bytes: 1024 * 1024 });
  assert.deepEqual(response, { text: "after oversize" });
  assert.match(logger.text(), /error: litellm bridge: dropped a reply of more than \d+ bytes \(limit 65536\)/);
});

test("a child exiting rejects its requests with the exit status and its last stderr lines", async () => {
  const { client, logger } = fakeClient({ timeoutMs: 120_000 });
  await assert.rejects(client.completion({ behaviour: "exit" }), (error) => {
    assert.ok(error instanceof BridgeError);
    assert.match(error.message, /^litellm bridge \(pid \d+\) exited with status 3: fake bridge: exiting on request$/);
    return true;
  });
  assert.match(logger.text(), /info: \[litellm-bridge \d+\] fake bridge: exiting on request/);
  assert.deepEqual(await client.completion({ behaviour: "restarted" }), { text: "plain restarted" });
});

test("a request that cannot be encoded as JSON is rejected without disturbing others", async () => {
  const { client } = fakeClient();
  const circular = {};
  circular.self = circular;
  await assert.rejects(client.completion({ circular }), /request could not be encoded as JSON/);
  assert.equal(client.inFlight, 0);
  assert.deepEqual(await client.completion({ behaviour: "fine" }), { text: "plain fine" });
});

test("shutdown of a child that ignores SIGTERM ends with SIGKILL after the grace period", async () => {
  const bridgePath = path.join(path.dirname(FAKE_BRIDGE), "ignore_sigterm.py");
  const { client, logger } = fakeClient({ bridgePath, killGraceMs: 200 });
  const rejected = assert.rejects(client.completion({}, { timeoutMs: 60_000 }), /shut down with this request in flight/);
  // Only once the child has installed its handler does SIGTERM get ignored.
  await logger.waitFor(/ignore_sigterm: ready/);
  const pid = client.pid;
  await client.shutdown();
  await rejected;
  assert.match(logger.text(), new RegExp(`warn: litellm bridge \\(pid ${pid}\\) ignored SIGTERM for 200 ms; sending SIGKILL`));
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
});
