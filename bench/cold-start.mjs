//! Cold start of the chat function: a fresh Node process imports the handler module and calls the
//! handler once, with the bridge started eagerly at module load (what ships) or lazily on the first
//! request (`LITELLM_START=lazy`). Runs alternate between the two.
//!
//!   node bench/cold-start.mjs [--runs N]
//!
//! Reports module-load time (on Lambda: the init phase, full CPU, up to 10 s) and handler call →
//! first response (on Lambda: the first invocation, billed, with the memory setting's CPU share).
//! The upstream is the local OpenAI-compatible server, in its own process.

import { spawn } from "node:child_process";
import path from "node:path";

import { benchPython, BENCH_KEY, machineLoad, median, parseRuns, ROOT, startUpstream, writeModelsConfig } from "./support.mjs";

const runs = parseRuns(process.argv, 5);
const python = benchPython();
const upstream = await startUpstream();
const config = writeModelsConfig(upstream.baseUrl);

function probe(mode) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, "bench", "cold-start-probe.mjs")], {
      // Module load may wait for the bridge as long as the import takes: on Lambda the init phase
      // has the full CPU (~3 s for the import); a busy machine here can take far longer than the
      // 9 s the function allows by default, which would measure the machine, not the design.
      env: { ...process.env, LITELLM_START: mode, LITELLM_INIT_WAIT_MS: "180000", MODELS_CONFIG: config.path, BENCH_OPENAI_API_KEY: BENCH_KEY },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (text) => (stdout += text));
    child.stderr.on("data", (text) => (stderr += text));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      // The service logs JSON lines to stdout too: the probe's result is the last line.
      const last = stdout.trim().split("\n").pop();
      let result;
      try {
        result = JSON.parse(last);
      } catch {
        result = null;
      }
      if (code !== 0 || !result || result.status !== 200) {
        reject(new Error(`cold-start probe (${mode}) failed (status ${code ?? signal}): ${stderr.slice(-2000) || stdout.slice(-2000)}`));
      } else resolve(result);
    });
  });
}

const results = { eager: [], lazy: [] };
const load = machineLoad();
try {
  for (let run = 0; run < runs; run += 1) {
    for (const mode of run % 2 === 0 ? ["eager", "lazy"] : ["lazy", "eager"]) results[mode].push(await probe(mode));
  }
} finally {
  config.cleanup();
  await upstream.stop();
}

const fmt = (ms) => `${ms.toFixed(0)} ms`;
const list = (values) => values.map((ms) => ms.toFixed(0)).join(", ");
console.log(`### cold start: eager vs lazy bridge start (${runs} fresh Node processes each, alternating)\n`);
console.log(`Measured with ${load}; Node ${process.version}; Python ${python.source} (${python.executable}); local upstream in its own process; module load waits for the bridge without the 9 s bound (LITELLM_INIT_WAIT_MS=180000).\n`);
console.log("| start | module load (init) median | handler → first response median | first response, runs (ms) |");
console.log("|---|---:|---:|---|");
for (const mode of ["eager", "lazy"]) {
  const rows = results[mode];
  console.log(
    `| ${mode} | ${fmt(median(rows.map((r) => r.module_load_ms)))} | ${fmt(median(rows.map((r) => r.first_response_ms)))} | ${list(rows.map((r) => r.first_response_ms))} |`,
  );
}
const eager = median(results.eager.map((r) => r.first_response_ms));
console.log(`\nHandler → first response after an eager start: ${fmt(eager)} (goal ≤ 150 ms).`);
