//! The endpoint end to end: `npm start` (the local server, on the Lambda code path through the
//! streamifyResponse stand-in) against the local upstream, driven by `curl` here and by the
//! official openai Python SDK in test/sdk/test_endpoint.py.
//!
//! The server runs with the bridge's interpreter from `LITELLM_PYTHON` (test/support/python.mjs)
//! and, on purpose, with the `PYTHONHOME`/`PYTHONPATH` serverless.yml sets for Lambda's
//! /opt/python: a local run must not be broken by them.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { PACKAGE_ROOT } from "../common/pythonExec.js";
import { startOpenAIServer } from "./support/openaiServer.mjs";
import { testPython } from "./support/python.mjs";
import { sdkPython } from "./support/sdkVenv.mjs";

const run = promisify(execFile);
const UPSTREAM_KEY = "upstream-test-key-5d1c";
/** How long the server may take to print its first line and to answer its first request (LiteLLM's import). */
const START_TIMEOUT_MS = 90_000;

let upstream;
let server;
let endpoint;
/** A second server whose model config the bridge refuses (its Python child exits at once). */
let misconfigured;
let badConfigDir;

/** Starts `npm start` in its own process group; resolves once it printed `listening on <url>`. */
async function startServer(env) {
  const child = spawn("npm", ["start", "--silent"], { cwd: PACKAGE_ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const output = [];
  child.stderr.on("data", (chunk) => output.push(chunk.toString()));
  const url = await new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error(`npm start printed no "listening on" line within ${START_TIMEOUT_MS} ms: ${text}${output.join("")}`)), START_TIMEOUT_MS);
    child.stdout.on("data", (chunk) => {
      text += chunk.toString();
      const newline = text.indexOf("\n");
      if (newline === -1) return;
      clearTimeout(timer);
      const first = text.slice(0, newline);
      const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
      if (match) resolve(match[1]);
      else reject(new Error(`the first line of npm start was ${JSON.stringify(first)}, not "listening on http://127.0.0.1:<port>"`));
    });
    child.once("exit", (code) => reject(new Error(`npm start exited with status ${code}: ${output.join("")}`)));
  });
  // The rest of stdout (JSON log lines) must keep flowing or the server would block on a full pipe.
  child.stdout.resume();
  return { child, url, output };
}

/** Stops the server's whole process group (npm, node and the Python bridge). */
function stopServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }, 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      resolve();
    }
  });
}

before(async () => {
  const { python } = await testPython();
  upstream = await startOpenAIServer();
  server = await startServer({
    ...process.env,
    PORT: "0",
    MODELS_CONFIG: path.join(PACKAGE_ROOT, "test", "fixtures", "endpoint-models.yaml"),
    UPSTREAM_API_BASE: upstream.baseUrl,
    UPSTREAM_API_KEY: UPSTREAM_KEY,
    LITELLM_PYTHON: python.executable,
    PYTHONHOME: "/opt/python",
    PYTHONPATH: "/opt/python/lib/python3.11",
  });
  endpoint = server.url;
  badConfigDir = mkdtempSync(path.join(tmpdir(), "endpoint-bad-config-"));
  const badConfig = path.join(badConfigDir, "models.yaml");
  writeFileSync(badConfig, "model_list:\n  - model_name: echo\n");
  misconfigured = await startServer({
    ...process.env,
    PORT: "0",
    MODELS_CONFIG: badConfig,
    LITELLM_PYTHON: python.executable,
    PYTHONHOME: "/opt/python",
    PYTHONPATH: "/opt/python/lib/python3.11",
  });
});

after(async () => {
  if (misconfigured) await stopServer(misconfigured.child);
  if (badConfigDir) rmSync(badConfigDir, { recursive: true, force: true });
  if (server) await stopServer(server.child);
  await upstream?.close();
});

async function curl(...args) {
  const { stdout } = await run("curl", ["--silent", "--show-error", "--max-time", "60", ...args], { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** `curl -i`: the status, the headers (lower-case names) and the body. */
async function curlFull(...args) {
  const text = await curl("--include", ...args);
  const at = text.indexOf("\r\n\r\n");
  const [statusLine, ...headerLines] = text.slice(0, at).split("\r\n");
  const headers = Object.fromEntries(headerLines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]));
  return { status: Number(statusLine.split(" ")[1]), headers, body: text.slice(at + 4) };
}

const chatBody = (extra = {}) => JSON.stringify({ model: "echo", messages: [{ role: "user", content: "hi from curl" }], ...extra });

describe("curl", () => {
  test("a completion", async () => {
    const reply = await curlFull(`${endpoint}/v1/chat/completions`, "-H", "content-type: application/json", "-d", chatBody());
    assert.equal(reply.status, 200);
    assert.equal(reply.headers["content-type"], "application/json");
    const body = JSON.parse(reply.body);
    assert.equal(body.object, "chat.completion");
    assert.equal(body.choices[0].message.content, "echo: hi from curl");
  });

  test("a stream of server-sent events ending with [DONE]", async () => {
    const reply = await curlFull("--no-buffer", `${endpoint}/v1/chat/completions`, "-d", chatBody({ stream: true }));
    assert.equal(reply.status, 200);
    assert.equal(reply.headers["content-type"], "text/event-stream; charset=utf-8");
    const events = reply.body.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    const text = events
      .slice(0, -1)
      .map((event) => JSON.parse(event.replace(/^data: /, "")))
      .map((chunk) => chunk.choices[0]?.delta?.content ?? "")
      .join("");
    assert.equal(text, "echo: hi from curl");
  });

  test("the models list", async () => {
    const body = JSON.parse(await curl(`${endpoint}/v1/models`));
    assert.equal(body.object, "list");
    assert.deepEqual(
      body.data.slice(0, 3).map((model) => [model.id, model.object]),
      [
        ["echo", "model"],
        ["slow-stream", "model"],
        ["embed", "model"],
      ],
    );
  });

  test("a provider's 429 keeps its status and Retry-After", async () => {
    const reply = await curlFull(`${endpoint}/v1/chat/completions`, "-d", chatBody({ model: "fail-429" }));
    assert.equal(reply.status, 429);
    assert.equal(reply.headers["retry-after"], "7");
    assert.deepEqual(JSON.parse(reply.body), {
      error: { message: "the test server was asked to fail with status 429", type: "test_error", param: null, code: "429" },
    });
  });

  test("malformed JSON, wrong method, unknown path, unknown model, over-size request", async () => {
    const calls = upstream.requests.length;
    const malformed = await curlFull(`${endpoint}/v1/chat/completions`, "-d", "{not json");
    assert.equal(malformed.status, 400);
    assert.match(JSON.parse(malformed.body).error.message, /^We could not parse the JSON body of your request: .+\. Send a JSON object with model and messages\.$/);

    const wrongMethod = await curlFull("-X", "PUT", `${endpoint}/v1/embeddings`);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, "POST");

    const unknownPath = await curlFull(`${endpoint}/v1/completions`, "-d", "{}");
    assert.equal(unknownPath.status, 404);
    assert.deepEqual(JSON.parse(unknownPath.body), {
      error: {
        message: "Invalid URL (POST /v1/completions): this endpoint serves POST /v1/chat/completions, POST /v1/embeddings and GET /v1/models",
        type: "invalid_request_error",
        param: null,
        code: "unknown_url",
      },
    });

    const unknownModel = await curlFull(`${endpoint}/v1/chat/completions`, "-d", chatBody({ model: "bedrock/anthropic.claude-v2" }));
    assert.equal(unknownModel.status, 404);
    assert.equal(JSON.parse(unknownModel.body).error.code, "model_not_found");

    const bodyFile = path.join(mkdtempSync(path.join(tmpdir(), "endpoint-test-")), "big.json");
    writeFileSync(bodyFile, JSON.stringify({ model: "echo", messages: [{ role: "user", content: "x".repeat(6 * 1024 * 1024) }] }));
    try {
      const oversize = await curlFull(`${endpoint}/v1/chat/completions`, "-H", "content-type: application/json", "-H", "expect:", "--data-binary", `@${bodyFile}`);
      assert.equal(oversize.status, 413);
      assert.equal(JSON.parse(oversize.body).error.code, "request_too_large");
    } finally {
      rmSync(path.dirname(bodyFile), { recursive: true, force: true });
    }
    assert.equal(upstream.requests.length, calls);
  });
});

test("the official openai Python SDK against the local server (test/sdk/test_endpoint.py)", async () => {
  const python = await sdkPython();
  const script = path.join(PACKAGE_ROOT, "test", "sdk", "test_endpoint.py");
  const child = spawn(python, [script], {
    env: { PATH: process.env.PATH, ENDPOINT_URL: endpoint, UPSTREAM_URL: upstream.url, UPSTREAM_API_KEY: UPSTREAM_KEY, MISCONFIGURED_URL: misconfigured.url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const code = await new Promise((resolve) => child.once("exit", resolve));
  assert.equal(code, 0, `test/sdk/test_endpoint.py failed:\n${output}`);
  assert.match(output, /^Ran \d+ tests in /m);
});
