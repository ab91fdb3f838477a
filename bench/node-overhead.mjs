//! Warm per-request overhead of the chat Lambda: handler -> bridge -> LiteLLM -> local server,
//! against a direct HTTP call from Node to the same local OpenAI-compatible server.
//!
//!   node bench/node-overhead.mjs [--requests N] [--warmup N]
//!
//! Python: LITELLM_PYTHON, else the built host-arch layer, else the test venv (see
//! amplify-lambda-js/test/support/python.mjs). Prints a Markdown table of p50/p90/p99 latencies.

import http from "node:http";
import { parseArgs } from "node:util";

import { runPython } from "../amplify-lambda-js/common/pythonExec.js";
import { createHandler } from "../amplify-lambda-js/index.js";
import { LiteLLMClient } from "../amplify-lambda-js/litellm/litellmClient.js";
import { startOpenAIServer } from "../amplify-lambda-js/test/support/openaiServer.mjs";
import { testPython } from "../amplify-lambda-js/test/support/python.mjs";

const { values: options } = parseArgs({
  options: { requests: { type: "string", default: "300" }, warmup: { type: "string", default: "50" } },
});
const REQUESTS = Number(options.requests);
const WARMUP = Number(options.warmup);
if (!(REQUESTS >= 1 && WARMUP >= 0)) throw new Error("--requests must be a positive number and --warmup a number >= 0");

const quiet = { info() {}, warn: console.warn, error: console.error };
const body = { model: "openai/bench", messages: [{ role: "user", content: "How fast is the bridge?" }], max_tokens: 16 };

const server = await startOpenAIServer();
process.env.OPENAI_API_BASE = server.baseUrl;
process.env.OPENAI_API_KEY = "sk-bench-not-a-real-key";
const { python, report } = await testPython();
const client = new LiteLLMClient({ python, logger: quiet });
const handler = createHandler({ client, logger: quiet });

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const payload = JSON.stringify({ ...body, model: "bench" });
function direct() {
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${server.baseUrl}/chat/completions`,
      { method: "POST", agent, headers: { "content-type": "application/json", authorization: "Bearer sk-bench", "content-length": Buffer.byteLength(payload) } },
      (response) => {
        const parts = [];
        response.on("data", (part) => parts.push(part));
        response.on("end", () => {
          const reply = JSON.parse(Buffer.concat(parts).toString("utf8"));
          if (response.statusCode !== 200 || !reply.choices) reject(new Error(`direct call failed: ${response.statusCode}`));
          else resolve(reply);
        });
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}

const event = {
  version: "2.0",
  routeKey: "POST /chat",
  rawPath: "/chat",
  requestContext: { http: { method: "POST", path: "/chat" } },
  body: JSON.stringify(body),
  isBase64Encoded: false,
};
const context = { getRemainingTimeInMillis: () => 60_000 };
async function viaHandler() {
  const response = await handler(event, context);
  if (response.statusCode !== 200) throw new Error(`handler answered ${response.statusCode}: ${response.body}`);
  return response;
}

async function viaClient() {
  return client.completion({ ...body, max_retries: 0 });
}

const coldStart = performance.now();
await viaHandler();
const coldMs = performance.now() - coldStart;

async function bridgeOnly() {
  return client.health();
}

const paths = {
  "direct HTTP (node:http, keep-alive)": direct,
  "bridge round trip only (health, no LiteLLM)": bridgeOnly,
  "client -> bridge -> LiteLLM": viaClient,
  "handler -> bridge -> LiteLLM": viaHandler,
};
const samples = Object.fromEntries(Object.keys(paths).map((name) => [name, []]));
for (let round = 0; round < WARMUP + REQUESTS; round += 1) {
  // Interleaved, so drift on a shared machine hits every path alike.
  for (const [name, run] of Object.entries(paths)) {
    const start = performance.now();
    await run();
    const elapsed = performance.now() - start;
    if (round >= WARMUP) samples[name].push(elapsed);
  }
}

// The floor set by LiteLLM itself: litellm.acompletion timed inside Python, no Node and no bridge.
const IN_PROCESS = `
import asyncio, json, sys, time
import litellm
litellm.suppress_debug_info = True
async def one():
    return await litellm.acompletion(model="openai/bench", messages=${JSON.stringify(body.messages)}, max_tokens=16,
                                     api_base=${JSON.stringify(server.baseUrl)}, api_key="sk-bench", max_retries=0)
async def main():
    for _ in range(${WARMUP}):
        await one()
    samples = []
    for _ in range(${REQUESTS}):
        start = time.perf_counter()
        await one()
        samples.append((time.perf_counter() - start) * 1000)
    print(json.dumps(samples))
asyncio.run(main())
`;
const inProcess = await runPython(IN_PROCESS, { python, timeout: 600_000 });
samples["litellm.acompletion inside Python (no Node, no bridge)"] = JSON.parse(inProcess.stdout.trim().split("\n").pop());

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const stats = Object.fromEntries(
  Object.entries(samples).map(([name, values]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return [name, { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), mean: values.reduce((a, b) => a + b, 0) / values.length }];
  }),
);

const fmt = (ms) => ms.toFixed(2);
const directStats = stats["direct HTTP (node:http, keep-alive)"];
const handlerStats = stats["handler -> bridge -> LiteLLM"];
console.log(`Node ${process.version}, Python ${report.python} (${python.source}: ${report.executable}), litellm ${report.litellm}`);
console.log(`${REQUESTS} measured requests per path after ${WARMUP} warm-up rounds, sequential; cold start (spawn + import litellm + first request): ${fmt(coldMs)} ms\n`);
console.log("| path | p50 ms | p90 ms | p99 ms | mean ms |");
console.log("|---|---:|---:|---:|---:|");
for (const [name, s] of Object.entries(stats)) console.log(`| ${name} | ${fmt(s.p50)} | ${fmt(s.p90)} | ${fmt(s.p99)} | ${fmt(s.mean)} |`);
console.log(
  `| **added by handler + bridge + LiteLLM** | **${fmt(handlerStats.p50 - directStats.p50)}** | ${fmt(handlerStats.p90 - directStats.p90)} | ${fmt(handlerStats.p99 - directStats.p99)} | ${fmt(handlerStats.mean - directStats.mean)} |`,
);

agent.destroy();
await client.shutdown();
await server.close();
