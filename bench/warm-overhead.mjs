//! Warm overhead per request: the chat handler (handler → bridge → LiteLLM → upstream) against a
//! direct HTTP call from Node to the same upstream, as paired per-request differences.
//!
//!   node bench/warm-overhead.mjs [--runs N] [--warmup N]
//!
//! Each round makes one direct call and one handler call (alternating which goes first) and keeps
//! their difference; the report gives the median and p99 of those differences. The upstream (the
//! local OpenAI-compatible server) runs in its own process; the handler is called in this process
//! the way a Function URL calls it (http/streaming.js), with the bridge started at module load.

import http from "node:http";

import { benchPython, BENCH_KEY, CHAT_BODY, chatEvent, lambdaContext, machineLoad, median, parseRuns, percentile, replyStatus, SERVICE, startUpstream, writeModelsConfig } from "./support.mjs";

const runs = parseRuns(process.argv, 300);
const warmupIndex = process.argv.indexOf("--warmup");
const warmup = warmupIndex === -1 ? 30 : Number(process.argv[warmupIndex + 1]);
const python = benchPython();

const upstream = await startUpstream();
const config = writeModelsConfig(upstream.baseUrl);
process.env.MODELS_CONFIG = config.path;
process.env.BENCH_OPENAI_API_KEY = BENCH_KEY;
// The service's per-request log lines would be part of what is measured on Lambda too; here they
// go to stdout, so keep them out of the report by sending stdout to stderr while measuring.
const writeStdout = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);

const { handler } = await import(`${SERVICE}/index.js`);
const { client } = await import(`${SERVICE}/litellm/startup.js`);
const { invokeBuffered } = await import(`${SERVICE}/http/streaming.js`);

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const payload = JSON.stringify({ ...CHAT_BODY, model: "bench" });
function direct() {
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${upstream.baseUrl}/chat/completions`,
      { method: "POST", agent, headers: { "content-type": "application/json", authorization: `Bearer ${BENCH_KEY}`, "content-length": Buffer.byteLength(payload) } },
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

let counter = 0;
async function viaHandler() {
  const reply = await invokeBuffered(handler, chatEvent(), lambdaContext(`warm-${counter++}`));
  const status = replyStatus(reply);
  if (status !== 200) throw new Error(`handler answered ${status}: ${reply.slice(0, 500)}`);
}

async function timed(run) {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

const load = machineLoad();
const differences = [];
const directTimes = [];
const handlerTimes = [];
// The bridge's own share: a health round trip (Node -> bridge -> Node, no LiteLLM).
const bridgeTimes = [];
try {
  for (let round = 0; round < warmup + runs; round += 1) {
    let directMs;
    let handlerMs;
    if (round % 2 === 0) {
      directMs = await timed(direct);
      handlerMs = await timed(viaHandler);
    } else {
      handlerMs = await timed(viaHandler);
      directMs = await timed(direct);
    }
    const bridgeMs = await timed(() => client.health());
    if (round >= warmup) {
      bridgeTimes.push(bridgeMs);
      differences.push(handlerMs - directMs);
      directTimes.push(directMs);
      handlerTimes.push(handlerMs);
    }
  }
} finally {
  agent.destroy();
  config.cleanup();
  await upstream.stop();
}
process.stdout.write = writeStdout;

const fmt = (ms) => ms.toFixed(2);
console.log(`### warm overhead per request: handler vs direct HTTP (${runs} paired requests after ${warmup} warm-up rounds)\n`);
console.log(`Measured with ${load}; Node ${process.version}; Python ${python.source} (${python.executable}); upstream in its own process.\n`);
console.log("| path | p50 ms | p99 ms |");
console.log("|---|---:|---:|");
console.log(`| direct HTTP (node:http, keep-alive) | ${fmt(median(directTimes))} | ${fmt(percentile(directTimes, 99))} |`);
console.log(`| handler → bridge → LiteLLM | ${fmt(median(handlerTimes))} | ${fmt(percentile(handlerTimes, 99))} |`);
console.log(`| bridge round trip alone (health, no LiteLLM) | ${fmt(median(bridgeTimes))} | ${fmt(percentile(bridgeTimes, 99))} |`);
console.log(`| **paired difference (overhead)** | **${fmt(median(differences))}** | **${fmt(percentile(differences, 99))}** |`);
console.log(`\nGoal on a calm machine: overhead p50 ≤ 3 ms, p99 ≤ 10 ms.`);
process.exit(0);
