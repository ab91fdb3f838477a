//! The LiteLLM client and the real bridge (litellm/bridge.py with litellm/openai_endpoint.py and
//! LiteLLM itself), against local OpenAI-compatible servers on 127.0.0.1.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { BridgeError, LiteLLMClient, LiteLLMTimeoutError, ProviderError, ReplyTooLargeError } from "../litellm/litellmClient.js";
import { recordingLogger } from "./support/logger.mjs";
import { bigContent, startOpenAIServer } from "./support/openaiServer.mjs";
import { testPython } from "./support/python.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Not in a well-known key shape: only the configured-secret redaction can catch it.
const FAKE_KEY = "plain-provider-credential-7f3a9c";
const KEY_ENV = "TEST_UPSTREAM_CREDENTIAL";

let server;
let python;
let configDir;
const clients = [];

/** A model config serving each `[name, upstream model]` pair from `baseUrl`. */
function writeConfig(name, baseUrl, models, extra = "") {
  const lines = ["model_list:"];
  for (const [modelName, upstreamModel] of models) {
    lines.push(`  - model_name: ${JSON.stringify(modelName)}`, "    litellm_params:", `      model: ${JSON.stringify(`openai/${upstreamModel}`)}`);
    lines.push(`      api_base: ${JSON.stringify(baseUrl)}`, `      api_key: os.environ/${KEY_ENV}`);
  }
  const file = path.join(configDir, `${name}.yaml`);
  writeFileSync(file, `${lines.join("\n")}\n${extra}`);
  return file;
}

function newClient({ config, env = {}, ...options } = {}) {
  const logger = options.logger ?? recordingLogger();
  const client = new LiteLLMClient({ python, logger, env: { MODELS_CONFIG: config, [KEY_ENV]: FAKE_KEY, ...env }, ...options });
  clients.push(client);
  return { client, logger };
}

const chat = (model, content = "hello", extra = {}) => ({ model, messages: [{ role: "user", content }], ...extra });
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

before(async () => {
  ({ python } = await testPython());
  server = await startOpenAIServer();
  configDir = mkdtempSync(path.join(os.tmpdir(), "bridge-test-"));
});

after(async () => {
  await Promise.all(clients.map((client) => client.shutdown()));
  await server?.close();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

describe("the real bridge", () => {
  // One child serves the whole suite, as one child serves a whole Lambda container.
  let shared;
  before(async () => {
    const config = writeConfig("main", server.baseUrl, [
      ["echo", "echo"],
      ["slow", "echo?delay=3000"],
      ["unauthorized", `echo?status=401&message=${encodeURIComponent(`Incorrect API key provided: ${FAKE_KEY}`)}`],
      ["big-buffered", `big?size=${7 * 1024 * 1024}`],
      ["big-ok", `big?size=${5 * 1024 * 1024}`],
      ...Array.from({ length: 5 }, (_, index) => [`delay-${index}`, `echo?delay=${index * 40}`]),
    ]);
    shared = newClient({ config });
    assert.equal(await shared.client.waitReady(60_000), true, "the bridge became ready");
  });

  test("ready reports the import and warm-up, and that the GC was frozen", () => {
    const info = shared.client.readyInfo;
    assert.equal(info.type, "ready");
    assert.ok(info.frozen_objects > 10_000, `gc.freeze() moved ${info.frozen_objects} objects`);
    assert.ok(info.import_ms > 0 && info.warm_ms >= 0 && info.cpu_ms > 0, JSON.stringify(info));
    assert.deepEqual(info.models.slice(0, 3), ["echo", "slow", "unauthorized"]);
    assert.deepEqual(info.secret_env_names, [KEY_ENV]);
  });

  test("answers a chat completion through the configured model, with the configured key", async () => {
    const response = await shared.client.chat(chat("echo", "hello bridge"), { requestId: "req-chat" });
    assert.equal(response.object, "chat.completion");
    assert.equal(response.choices[0].message.content, "echo: hello bridge");
    assert.equal(server.requests.at(-1).authorization, `Bearer ${FAKE_KEY}`);
  });

  test("health reports the interpreter and litellm versions", async () => {
    const health = await shared.client.health();
    const { report } = await testPython();
    assert.equal(health.litellm, report.litellm);
    assert.equal(health.python, report.python);
    assert.equal(health.pid, shared.client.pid);
  });

  test("streams chunks as an async iterator; leaving early cancels and the child keeps serving", async () => {
    const chunks = [];
    for await (const chunk of shared.client.stream(chat("echo", "one two three"))) chunks.push(chunk);
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? "").join(""), "echo: one two three");
    for await (const chunk of shared.client.stream(chat("echo", "a b c d e f g h"))) {
      assert.equal(chunk.object, "chat.completion.chunk");
      break;
    }
    assert.equal(shared.client.inFlight, 0);
    assert.equal((await shared.client.chat(chat("echo", "still here"))).choices[0].message.content, "echo: still here");
  });

  test("concurrent requests are each answered with their own reply by one child", async () => {
    const pid = shared.client.pid;
    const replies = await Promise.all(Array.from({ length: 20 }, (_, index) => shared.client.chat(chat(`delay-${index % 5}`, `request number ${index}`))));
    replies.forEach((reply, index) => assert.equal(reply.choices[0].message.content, `echo: request number ${index}`));
    assert.equal(shared.client.pid, pid);
  });

  test("a provider error keeps the provider's status; the configured key never comes back", async () => {
    await assert.rejects(shared.client.chat(chat("unauthorized")), (error) => {
      assert.ok(error instanceof ProviderError, `expected ProviderError, got ${error}`);
      assert.equal(error.status, 401);
      assert.match(error.message, /Incorrect API key provided/);
      assert.ok(!error.message.includes(FAKE_KEY), `key leaked: ${error.message}`);
      return true;
    });
  });

  test("a reply over Lambda's 6 MB buffered limit fails at once; the child stays", async () => {
    const pid = shared.client.pid;
    await assert.rejects(shared.client.chat(chat("big-buffered")), (error) => {
      assert.ok(error instanceof ReplyTooLargeError, `expected ReplyTooLargeError, got ${error}`);
      assert.match(error.message, /^the reply is \d+ bytes, over Lambda's limit of 6291456 bytes for a buffered response; ask for fewer tokens \(max_tokens\) or stream it$/);
      return true;
    });
    assert.equal(shared.client.pid, pid);
    const content = (await shared.client.chat(chat("big-ok"))).choices[0].message.content;
    assert.equal(sha256(content), sha256(bigContent(5 * 1024 * 1024)));
  });

  test("the same 7 MB reply streamed stays under the 20 MB streamed limit and arrives whole", async () => {
    let text = "";
    for await (const chunk of shared.client.stream(chat("big-buffered"))) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text.length, 7 * 1024 * 1024);
    assert.equal(sha256(text), sha256(bigContent(7 * 1024 * 1024)));
  });

  test("a request past its deadline is rejected; one missed deadline does not replace the child", async () => {
    const pid = shared.client.pid;
    await assert.rejects(shared.client.chat(chat("slow"), { timeoutMs: 300 }), LiteLLMTimeoutError);
    assert.equal((await shared.client.chat(chat("echo", "next one"))).choices[0].message.content, "echo: next one");
    assert.equal(shared.client.pid, pid);
  });

  test("every bridge log line arrives as a record: no plain text from the bridge itself", async () => {
    const bridgeLines = shared.logger.lines.filter((line) => line.fields?.source === "bridge");
    assert.ok(bridgeLines.some((line) => /^ready in \d+ ms/.test(line.message)), shared.logger.text());
    // Plain (non-JSON) stderr lines are logged without a `logger` field and only come from native code.
    const ready = bridgeLines.find((line) => /^ready in/.test(line.message));
    assert.equal(typeof ready.fields.child_pid, "number");
  });
});

describe("thaw: one retry for connection-level failures, none for provider replies", () => {
  let upstream;
  let calls;
  before(async () => {
    calls = { reset: 0, bad: 0 };
    upstream = http.createServer((req, res) => {
      const parts = [];
      req.on("data", (part) => parts.push(part));
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(parts).toString("utf8"));
        if (body.model === "reset-once") {
          calls.reset += 1;
          // The first request finds its connection reset, as an idle connection closed while the
          // Lambda was frozen would be.
          if (calls.reset === 1) return req.socket.resetAndDestroy();
        } else if (body.model === "bad-request") {
          calls.bad += 1;
          res.writeHead(400, { "content-type": "application/json" });
          return res.end(JSON.stringify({ error: { message: "messages[0] is malformed", type: "invalid_request_error", param: "messages", code: null } }));
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "chatcmpl-thaw",
            object: "chat.completion",
            created: 1,
            model: body.model,
            choices: [{ index: 0, message: { role: "assistant", content: "after the reset" }, finish_reason: "stop" }],
            usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 },
          }),
        );
      });
    });
    await new Promise((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  });
  after(() => {
    upstream?.closeAllConnections();
    upstream?.close();
  });

  test("a connection reset is retried once and succeeds; a provider 400 is sent once", async () => {
    const baseUrl = `http://127.0.0.1:${upstream.address().port}/v1`;
    const config = writeConfig("thaw", baseUrl, [
      ["reset-once", "reset-once"],
      ["bad-request", "bad-request"],
    ]);
    const { client } = newClient({ config });
    const response = await client.chat(chat("reset-once"));
    assert.equal(response.choices[0].message.content, "after the reset");
    assert.equal(calls.reset, 2, "one failed attempt and one retry");
    await assert.rejects(client.chat(chat("bad-request")), (error) => {
      assert.ok(error instanceof ProviderError, `expected ProviderError, got ${error}`);
      assert.equal(error.status, 400);
      assert.equal(error.message, "messages[0] is malformed");
      return true;
    });
    assert.equal(calls.bad, 1, "a provider's 400 is not retried");
  });
});

describe("logs", () => {
  test("with LiteLLM's verbose logging on, prompts and replies stay out of the logs unless LOG_MESSAGE_CONTENTS=1", async () => {
    const config = writeConfig("verbose", server.baseUrl, [["echo", "echo"]]);
    const prompt = "the secret plan is to ship on friday";
    const run = async (env) => {
      const { client, logger } = newClient({ config, env: { LITELLM_LOG: "DEBUG", ...env } });
      const reply = await client.chat(chat("echo", prompt), { requestId: "req-verbose" });
      assert.equal(reply.choices[0].message.content, `echo: ${prompt}`);
      await client.shutdown();
      return logger;
    };
    const quiet = await run({});
    assert.ok(quiet.lines.length > 0);
    assert.doesNotMatch(quiet.text(), /secret plan/);
    // The same run with contents enabled shows the check above can fail.
    const loud = await run({ LOG_MESSAGE_CONTENTS: "1" });
    assert.match(loud.text(), /secret plan/);
    assert.ok(loud.lines.some((line) => line.fields?.request_id === "req-verbose"), "bridge lines carry the request id");
  });

  test("a library printing to stdout cannot corrupt the protocol; its lines become log records", async () => {
    const config = writeConfig("noisy", server.baseUrl, [["echo", "echo"]]);
    const noisyDir = path.join(HERE, "fixtures", "noisy");
    const pythonPath = [noisyDir, python.env.PYTHONPATH].filter(Boolean).join(path.delimiter);
    const { client, logger } = newClient({ config, env: { PYTHONPATH: pythonPath, LITELLM_BRIDGE_IMPORTS: "noisy_stdout" } });
    const response = await client.chat(chat("echo", "through the noise"));
    assert.equal(response.choices?.[0]?.message?.content, "echo: through the noise");
    assert.equal(response.forged, undefined);
    await logger.waitFor(/fd 1 during request/);
    const logs = logger.text();
    assert.match(logs, /noisy_stdout: imported/);
    assert.match(logs, /noisy_stdout: print during request/);
    assert.match(logs, /noisy_stdout: sys.__stdout__ during request/);
  });
});

describe("startup failures", () => {
  test("a bad model config is a clear error naming the file; callers get no details; no restart pays the import again", async () => {
    const config = path.join(configDir, "bad.yaml");
    writeFileSync(config, "model_list:\n  - model_name: broken\n");
    const { client, logger } = newClient({ config });
    assert.equal(await client.waitReady(30_000), false);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      await assert.rejects(client.chat(chat("broken")), (error) => {
        assert.ok(error instanceof BridgeError, `expected BridgeError, got ${error}`);
        assert.equal(error.message, "the LiteLLM bridge cannot start: its model config is invalid; the function's logs say why");
        assert.equal(error.code, "bridge_misconfigured");
        assert.doesNotMatch(error.message, /bad\.yaml/);
        return true;
      });
    }
    // The config cannot change under a running process: one child tried it, none is started again.
    assert.equal(await client.waitReady(1_000), false);
    assert.equal(client.spawnCount, 1);
    assert.equal(client.pid, null);
    assert.match(logger.text(), /the bridge is not restarted until the config is fixed and the process restarted/);
    assert.match(logger.text(), new RegExp(`the model config cannot be used: ${config.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: model_list\\[0\\] \\(broken\\): litellm_params must be a mapping`));
  });

  test("a missing interpreter gives a clear error in the logs and no unhandled rejection", async () => {
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { client, logger } = newClient({ python: { executable: "/nonexistent/python3.11", source: "LITELLM_PYTHON", env: {} } });
      await assert.rejects(client.chat(chat("echo")), (error) => {
        assert.ok(error instanceof BridgeError, `expected BridgeError, got ${error}`);
        assert.equal(error.message, "the LiteLLM bridge could not start: its Python interpreter is missing or not executable");
        assert.equal(
          error.detail,
          'python interpreter "/nonexistent/python3.11" (chosen from LITELLM_PYTHON) could not be started (ENOENT): ' +
            "set LITELLM_PYTHON to a Python of the layer's version (layer.toml) that has litellm installed, or build the layer with `cargo xtask layer --arch x86_64`",
        );
        return true;
      });
      assert.match(logger.text(), /could not be started \(ENOENT\)/);
      await client.shutdown();
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
