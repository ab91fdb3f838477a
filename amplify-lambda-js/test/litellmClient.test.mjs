//! The LiteLLM client and the real bridge, against a local OpenAI-compatible server.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { BridgeError, LiteLLMClient, LiteLLMTimeoutError, ProviderError } from "../litellm/litellmClient.js";
import { recordingLogger } from "./support/logger.mjs";
import { bigContent, startOpenAIServer } from "./support/openaiServer.mjs";
import { testPython } from "./support/python.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FAKE_KEY = "sk-test-0123456789abcdef";

let server;
let python;
const clients = [];

function newClient(options = {}) {
  const logger = options.logger ?? recordingLogger();
  const client = new LiteLLMClient({ python, logger, ...options });
  clients.push(client);
  return { client, logger };
}

function request(model, content = "hello", extra = {}) {
  return {
    model: `openai/${model}`,
    messages: [{ role: "user", content }],
    api_base: server.baseUrl,
    api_key: FAKE_KEY,
    max_retries: 0,
    ...extra,
  };
}

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

before(async () => {
  ({ python } = await testPython());
  server = await startOpenAIServer();
});

after(async () => {
  await Promise.all(clients.map((client) => client.shutdown()));
  await server?.close();
});

describe("completion through the real bridge", () => {
  // One child serves the whole suite, as one child serves a whole Lambda container.
  let shared;
  before(() => {
    shared = newClient();
  });
  test("answers an OpenAI-compatible completion and passes the api key", async () => {
    const { client } = shared;
    const response = await client.completion(request("echo", "hello bridge"));
    assert.equal(response.object, "chat.completion");
    assert.equal(response.choices[0].message.role, "assistant");
    assert.equal(response.choices[0].message.content, "echo: hello bridge");
    assert.deepEqual([response.usage.prompt_tokens, response.usage.completion_tokens], [5, 3]);
    assert.equal(server.requests.at(-1).authorization, `Bearer ${FAKE_KEY}`);
  });

  test("health reports the interpreter and litellm versions", async () => {
    const { client } = shared;
    const health = await client.health();
    const { report } = await testPython();
    assert.equal(health.litellm, report.litellm);
    assert.equal(health.python, report.python);
    assert.equal(health.pid, client.pid);
  });

  test("streams chunks as an async iterator", async () => {
    const { client } = shared;
    const chunks = [];
    for await (const chunk of client.stream(request("echo", "one two three"))) chunks.push(chunk);
    assert.ok(chunks.length >= 4, `expected a chunk per word, got ${chunks.length}`);
    assert.ok(chunks.every((chunk) => chunk.object === "chat.completion.chunk"));
    const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text, "echo: one two three");
    assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
    assert.equal(server.requests.at(-1).stream, true);
  });

  test("leaving a stream early cancels it and the client keeps working", async () => {
    const { client } = shared;
    const stream = client.stream(request("echo", "a b c d e f g h"));
    for await (const chunk of stream) {
      assert.equal(chunk.object, "chat.completion.chunk");
      break;
    }
    assert.equal(client.inFlight, 0);
    const response = await client.completion(request("echo", "still here"));
    assert.equal(response.choices[0].message.content, "echo: still here");
  });

  test("50 concurrent requests are each answered with their own reply", async () => {
    const { client } = shared;
    await client.health();
    const pid = client.pid;
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, index) =>
        // Varying delays make the server answer out of order.
        client.completion(request(`echo?delay=${(index * 37) % 200}`, `request number ${index}`)),
      ),
    );
    replies.forEach((reply, index) => assert.equal(reply.choices[0].message.content, `echo: request number ${index}`));
    assert.equal(client.pid, pid, "all 50 requests were served by one child");
    assert.equal(client.inFlight, 0);
  });

  test("a provider error is rejected with the provider status, without the api key", async () => {
    const { client } = shared;
    const message = encodeURIComponent(`Incorrect API key provided: ${FAKE_KEY}`);
    await assert.rejects(client.completion(request(`echo?status=401&message=${message}`)), (error) => {
      assert.ok(error instanceof ProviderError, `expected ProviderError, got ${error}`);
      assert.equal(error.status, 401);
      assert.equal(error.provider, "openai");
      assert.equal(error.type, "AuthenticationError");
      assert.match(error.message, /Incorrect API key provided/);
      assert.ok(!error.message.includes(FAKE_KEY), `key leaked: ${error.message}`);
      return true;
    });
  });

  test("a 10 MB response arrives whole", async () => {
    const { client } = shared;
    const size = 10 * 1024 * 1024;
    const response = await client.completion(request(`big?size=${size}`));
    const content = response.choices[0].message.content;
    assert.equal(content.length, size);
    assert.equal(sha256(content), sha256(bigContent(size)));
  });
});

describe("failures", () => {
  test("a child killed mid-request rejects every request in flight at once; the next request starts a new child", async () => {
    // The deadline is long: a rejection caused by the timeout would be a LiteLLMTimeoutError.
    const { client, logger } = newClient({ timeoutMs: 120_000 });
    await client.health();
    const firstPid = client.pid;
    const arrived = server.expectRequests(3);
    const inFlight = [1, 2, 3].map((n) => client.completion(request("slow?delay=60000", `slow ${n}`)));
    await arrived;
    assert.equal(client.inFlight, 3);
    process.kill(firstPid, "SIGKILL");
    const results = await Promise.allSettled(inFlight);
    for (const result of results) {
      assert.equal(result.status, "rejected");
      assert.ok(result.reason instanceof BridgeError, `expected BridgeError, got ${result.reason}`);
      assert.match(result.reason.message, new RegExp(`litellm bridge \\(pid ${firstPid}\\) was killed by SIGKILL`));
    }
    assert.equal(client.inFlight, 0);
    assert.match(logger.text(), /3 request\(s\) in flight rejected/);

    const response = await client.completion(request("echo", "after the crash"));
    assert.equal(response.choices[0].message.content, "echo: after the crash");
    assert.notEqual(client.pid, firstPid);
  });

  test("a request past its deadline is rejected; the bridge drops it and keeps serving", async () => {
    const { client } = newClient({ timeoutMs: 120_000 });
    await client.health();
    const pid = client.pid;
    await assert.rejects(client.completion(request("slow?delay=3000", "too slow"), { timeoutMs: 300 }), (error) => {
      assert.ok(error instanceof LiteLLMTimeoutError, `expected LiteLLMTimeoutError, got ${error}`);
      assert.match(error.message, /timed out after 300 ms/);
      return true;
    });
    assert.equal(client.inFlight, 0);
    const response = await client.completion(request("echo", "next one"));
    assert.equal(response.choices[0].message.content, "echo: next one");
    assert.equal(client.pid, pid, "a timeout does not restart the child");
  });

  test("a library printing to stdout during a request cannot corrupt the protocol", async () => {
    const noisyDir = path.join(HERE, "fixtures", "noisy");
    const pythonPath = [noisyDir, python.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
    const { client, logger } = newClient({ env: { PYTHONPATH: pythonPath, LITELLM_BRIDGE_IMPORTS: "noisy_stdout" } });
    // Request "1" of this client is the one the noise pretends to answer.
    const response = await client.completion(request("echo", "through the noise"));
    assert.equal(response.choices?.[0]?.message?.content, "echo: through the noise");
    assert.equal(response.forged, undefined);
    await logger.waitFor(/fd 1 during request/);
    const logs = logger.text();
    assert.match(logs, /noisy_stdout: imported/);
    assert.match(logs, /noisy_stdout: print during request/);
    assert.match(logs, /noisy_stdout: sys.__stdout__ during request/);
    assert.match(logs, /noisy_stdout: fd 1 during request/);
  });

  test("a missing interpreter gives a clear error and no unhandled rejection", async () => {
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { client } = newClient({ python: { executable: "/nonexistent/python3.11", source: "LITELLM_PYTHON", env: {} } });
      for (const attempt of [1, 2]) {
        await assert.rejects(client.completion(request("echo", `attempt ${attempt}`)), (error) => {
          assert.ok(error instanceof BridgeError, `expected BridgeError, got ${error}`);
          assert.equal(
            error.message,
            'python interpreter "/nonexistent/python3.11" (chosen from LITELLM_PYTHON) could not be started (ENOENT): ' +
              "set LITELLM_PYTHON to a Python of the layer's version (layer.toml) that has litellm installed, or build the layer with `cargo xtask layer --arch x86_64`",
          );
          return true;
        });
      }
      await client.shutdown();
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("a bridge that cannot start reports why", async () => {
    const { client } = newClient({ env: { LITELLM_BRIDGE_IMPORTS: "no_such_module_for_the_bridge" } });
    await assert.rejects(client.completion(request("echo")), (error) => {
      assert.ok(error instanceof BridgeError, `expected BridgeError, got ${error}`);
      assert.match(error.message, /exited with status 1: the bridge could not start: ModuleNotFoundError: No module named 'no_such_module_for_the_bridge'/);
      return true;
    });
  });

  test("shutdown rejects requests in flight and stops the child", async () => {
    const { client } = newClient();
    await client.health();
    const pid = client.pid;
    const arrived = server.expectRequests(1);
    const rejected = assert.rejects(client.completion(request("slow?delay=60000")), /shut down with this request in flight/);
    await arrived;
    await client.shutdown();
    await rejected;
    assert.equal(client.pid, null);
    assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
  });

  test("the bridge exits by itself when its stdin closes, as when the Node process goes away", async () => {
    const { client } = newClient();
    await client.health();
    const { proc } = client.child;
    const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
    proc.stdin.end();
    assert.deepEqual(await exited, { code: 0, signal: null });
  });
});
