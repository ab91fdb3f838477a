//! The function process as Lambda runs it (test/fixtures/serve_once.mjs loads index.js): the bridge
//! is ready when module load ends, every line the process writes is JSON, and signals leave no
//! Python process behind.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { startOpenAIServer } from "./support/openaiServer.mjs";
import { testPython } from "./support/python.mjs";

const SERVE_ONCE = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "serve_once.mjs");
let server;
let python;
let dir;
let config;

before(async () => {
  ({ python } = await testPython());
  server = await startOpenAIServer();
  dir = mkdtempSync(path.join(os.tmpdir(), "startup-test-"));
  config = path.join(dir, "models.yaml");
  writeFileSync(
    config,
    `model_list:\n  - model_name: echo\n    litellm_params:\n      model: openai/echo\n      api_base: ${JSON.stringify(server.baseUrl)}\n      api_key: os.environ/STARTUP_TEST_KEY\n`,
  );
});

after(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts serve_once.mjs; resolves once it printed its `answered` line. */
async function serveOnce(env = {}) {
  // The import takes ~3 s on a calm machine, far longer on a busy one: wait as long as it takes
  // (the 9 s default bound has a test of its own).
  const base = { LITELLM_PYTHON: python.executable, ...python.env, MODELS_CONFIG: config, STARTUP_TEST_KEY: "startup-test-key-123", LITELLM_INIT_WAIT_MS: "120000" };
  const child = spawn(process.execPath, [SERVE_ONCE], {
    env: { ...process.env, ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = { stdout: "", stderr: "" };
  child.stdout.setEncoding("utf8").on("data", (text) => (output.stdout += text));
  child.stderr.setEncoding("utf8").on("data", (text) => (output.stderr += text));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 90_000;
  while (!output.stdout.includes('"step":"answered"')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`serve_once.mjs did not answer (exit ${child.exitCode}):\n${output.stdout}\n${output.stderr}`);
    }
    await sleep(50);
  }
  const records = output.stdout.trim().split("\n").map((line) => JSON.parse(line));
  const probe = (step) => records.find((record) => record.probe && record.step === step);
  return { child, output, exited, loaded: probe("loaded"), answered: probe("answered") };
}

/** True while `pid` exists and is not a zombie waiting for a parent that will not reap it. */
function running(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

async function waitGone(pid, ms) {
  const deadline = Date.now() + ms;
  while (running(pid) && Date.now() < deadline) await sleep(20);
  return !running(pid);
}

test("the bridge is ready when module load ends; the first call does not start Python", async () => {
  const { child, exited, loaded, answered } = await serveOnce();
  try {
    assert.equal(loaded.ready, true, JSON.stringify(loaded));
    assert.equal(loaded.startup.mode, "eager");
    assert.equal(loaded.startup.ready, true);
    assert.equal(loaded.spawns, 1);
    assert.equal(typeof loaded.pid, "number");
    assert.equal(answered.status, 200);
    assert.equal(answered.body.choices[0].message.content, "echo: first call");
    assert.equal(answered.spawns, 1, "the first call started no Python");
    assert.equal(answered.pid, loaded.pid);
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
});

test("when the bridge is not ready within the bound, module load ends and the first call waits for the same child", async () => {
  const { child, exited, loaded, answered } = await serveOnce({ LITELLM_INIT_WAIT_MS: "50" });
  try {
    assert.equal(loaded.ready, false);
    assert.equal(loaded.startup.budgetMs, 50);
    assert.ok(loaded.loaded_ms < 5_000, `module load took ${loaded.loaded_ms} ms`);
    assert.equal(loaded.spawns, 1);
    assert.equal(answered.status, 200);
    assert.deepEqual([answered.spawns, answered.pid], [1, loaded.pid]);
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
});

test("with LITELLM_START=lazy the first call starts Python (what the eager start avoids)", async () => {
  const { child, exited, loaded, answered } = await serveOnce({ LITELLM_START: "lazy" });
  try {
    assert.deepEqual([loaded.ready, loaded.pid, loaded.spawns], [false, null, 0]);
    assert.equal(answered.status, 200);
    assert.equal(answered.spawns, 1);
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
});

test("every line the function process writes is JSON; the request has one summary line with its id", async () => {
  const { child, exited, output } = await serveOnce();
  child.kill("SIGTERM");
  await exited;
  const lines = `${output.stdout}\n${output.stderr}`.split("\n").filter((line) => line.trim() !== "");
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not JSON: ${line}`);
  const records = lines.map((line) => JSON.parse(line)).filter((record) => !record.probe);
  assert.ok(records.some((record) => record.source === "bridge" && /^ready in \d+ ms/.test(record.msg)), "the bridge's own lines are forwarded");
  const summaries = records.filter((record) => record.msg === "request");
  assert.equal(summaries.length, 1, JSON.stringify(summaries));
  const { time, latency_ms: latency, child_pid: childPid, ...summary } = summaries[0];
  assert.ok(latency > 0 && Number.isInteger(childPid), JSON.stringify(summaries[0]));
  assert.deepEqual(summary, {
    level: "info",
    msg: "request",
    request_id: "req-first",
    route: "POST /v1/chat/completions",
    model: "echo",
    status: 200,
    prompt_tokens: 5,
    completion_tokens: 3,
    total_tokens: 8,
    start: "cold",
  });
  const logged = lines.filter((line) => !JSON.parse(line).probe).join("\n");
  assert.doesNotMatch(logged, /first call/, "message contents are not logged");
  assert.doesNotMatch(logged, /startup-test-key-123/, "the configured key is not logged");
});

test("SIGTERM to Node stops the bridge first; no Python process is left behind", async () => {
  const { child, exited, loaded } = await serveOnce();
  assert.ok(running(loaded.pid));
  child.kill("SIGTERM");
  const { code, signal } = await exited;
  assert.deepEqual({ code, signal }, { code: 143, signal: null });
  assert.equal(running(loaded.pid), false, `bridge ${loaded.pid} outlived Node`);
});

test("SIGKILL to Node takes the bridge with it (PR_SET_PDEATHSIG): no orphan", async () => {
  const { child, exited, loaded } = await serveOnce();
  child.kill("SIGKILL");
  await exited;
  assert.equal(await waitGone(loaded.pid, 5_000), true, `bridge ${loaded.pid} was orphaned`);
});
