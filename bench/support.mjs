//! Shared pieces of the Node-side benchmarks: the upstream in its own process, a model config
//! pointing at it, the Python to use, and statistics.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { resolvePython } from "../amplify-lambda-js/common/pythonExec.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SERVICE = path.join(ROOT, "amplify-lambda-js");
/** The key the benchmarks give LiteLLM; the local upstream accepts any. */
export const BENCH_KEY = "sk-bench-not-a-real-key";

/**
 * Starts the local OpenAI-compatible upstream (amplify-lambda-js/test/support/openaiServer.mjs) in
 * its own Node process, so its work does not share an event loop with what is measured.
 * Resolves to `{ baseUrl, stop() }`.
 */
export async function startUpstream() {
  const child = spawn(process.execPath, [path.join(ROOT, "bench", "upstream.mjs")], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("bench/upstream.mjs did not print its URL within 10 s")), 10_000);
    child.once("exit", (code) => reject(new Error(`bench/upstream.mjs exited with status ${code} before printing its URL`)));
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line).baseUrl);
    });
  });
  return {
    baseUrl,
    pid: child.pid,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGTERM");
      }),
  };
}

/**
 * Writes a model config serving `bench` (chat) from the upstream; returns `{ path, cleanup() }`.
 * The key comes from the environment, as on Lambda.
 */
export function writeModelsConfig(baseUrl) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-models-"));
  const file = path.join(dir, "models.yaml");
  writeFileSync(
    file,
    [
      "model_list:",
      "  - model_name: bench",
      "    litellm_params:",
      "      model: openai/bench",
      `      api_base: ${JSON.stringify(baseUrl)}`,
      "      api_key: os.environ/BENCH_OPENAI_API_KEY",
      "",
    ].join("\n"),
  );
  return { path: file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The chat request every benchmark sends. */
export const CHAT_BODY = { model: "bench", messages: [{ role: "user", content: "How fast is the bridge?" }], max_tokens: 16 };

/**
 * An API Gateway HTTP API event (payload 2.0) for `POST /v1/chat/completions` with `body`: the
 * handler answers it buffered, so `invokeBuffered` (http/streaming.js) returns the whole reply.
 */
export function chatEvent(body = CHAT_BODY) {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: "/v1/chat/completions",
    rawQueryString: "",
    headers: { "content-type": "application/json", host: "bench.execute-api.us-east-1.amazonaws.com" },
    requestContext: {
      domainName: "bench.execute-api.us-east-1.amazonaws.com",
      http: { method: "POST", path: "/v1/chat/completions", protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "bench" },
      requestId: "bench",
      routeKey: "$default",
      stage: "$default",
    },
    body: JSON.stringify(body),
    isBase64Encoded: false,
  };
}

/** The status of a buffered reply (the API Gateway proxy result `invokeBuffered` returns as text). */
export function replyStatus(payload) {
  try {
    return JSON.parse(payload).statusCode ?? null;
  } catch {
    return null;
  }
}

/** A Lambda context with a request id and 60 s left. */
export function lambdaContext(requestId = "bench") {
  const deadline = Date.now() + 60_000;
  return { awsRequestId: requestId, getRemainingTimeInMillis: () => deadline - Date.now() };
}

export function median(values) {
  return percentile(values, 50);
}

/** The nearest-rank percentile of `values`. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** "load average 1.23 0.98 0.77 on 2 cores": the machine's state while measuring. */
export function machineLoad() {
  const [one, five, fifteen] = os.loadavg().map((value) => value.toFixed(2));
  return `load average ${one} ${five} ${fifteen} on ${os.cpus().length} cores`;
}

export function parseRuns(argv, fallback) {
  const index = argv.indexOf("--runs");
  if (index === -1) return fallback;
  const runs = Number(argv[index + 1]);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs needs a positive integer, got ${JSON.stringify(argv[index + 1])}`);
  return runs;
}

/**
 * The Python the service will run (amplify-lambda-js/common/pythonExec.js: `LITELLM_PYTHON`, else
 * the built host-arch layer); a bare `python3` from PATH is refused, it has no LiteLLM.
 */
export function benchPython() {
  const python = resolvePython();
  if (python.source === "PATH") {
    throw new Error("no LiteLLM Python: set LITELLM_PYTHON or build the layer with `cargo xtask layer --arch x86_64` (cargo xtask bench does one of them)");
  }
  return python;
}
