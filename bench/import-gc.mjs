//! `import litellm` with and without the bridge's GC tuning (collector off during the import,
//! `gc.freeze()` after it), in paired runs: each pair is two fresh interpreters started back to
//! back, in alternating order, so drift on a shared machine hits both alike.
//!
//!   node bench/import-gc.mjs [--runs N]
//!
//! Python: `LITELLM_PYTHON`, else the built host-arch layer (amplify-lambda-js/common/pythonExec.js).
//! Prints a Markdown section: median CPU and wall time of each, and the median of the per-pair ratios.

import { runPython } from "../amplify-lambda-js/common/pythonExec.js";
import { benchPython, machineLoad, median, parseRuns } from "./support.mjs";

const runs = parseRuns(process.argv, 10);
const python = benchPython();

// CPU time is the process's (user + system) from before the import to after it; the interpreter's
// own start-up is outside both measurements.
const script = (tuned) => `
import time
cpu, wall = time.process_time(), time.perf_counter()
${tuned ? "import gc\ngc.disable()" : ""}
import litellm
${tuned ? "gc.freeze()\ngc.enable()" : ""}
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
import json
print(json.dumps({"cpu_ms": cpu * 1000, "wall_ms": wall * 1000}))
`;

async function measure(tuned) {
  const { stdout } = await runPython(script(tuned), { python, timeout: 120_000 });
  return JSON.parse(stdout.trim().split("\n").pop());
}

const load = machineLoad();
const plain = [];
const tuned = [];
// One untimed import first, so both arms start with warm file caches.
await measure(false);
for (let pair = 0; pair < runs; pair += 1) {
  if (pair % 2 === 0) {
    plain.push(await measure(false));
    tuned.push(await measure(true));
  } else {
    tuned.push(await measure(true));
    plain.push(await measure(false));
  }
}
const fmt = (ms) => `${ms.toFixed(0)} ms`;
const cpuRatio = median(plain.map((run, index) => tuned[index].cpu_ms / run.cpu_ms));
const wallRatio = median(plain.map((run, index) => tuned[index].wall_ms / run.wall_ms));
console.log(`### import litellm: GC tuning (${runs} pairs of fresh interpreters, ${python.source}: ${python.executable})\n`);
console.log(`Measured with ${load}.\n`);
console.log("| import | CPU median | wall median |");
console.log("|---|---:|---:|");
console.log(`| plain \`import litellm\` | ${fmt(median(plain.map((r) => r.cpu_ms)))} | ${fmt(median(plain.map((r) => r.wall_ms)))} |`);
console.log(`| gc.disable(); import litellm; gc.freeze(); gc.enable() | ${fmt(median(tuned.map((r) => r.cpu_ms)))} | ${fmt(median(tuned.map((r) => r.wall_ms)))} |`);
console.log(`\nPaired ratio tuned / plain (median of ${runs}): CPU ${cpuRatio.toFixed(2)}× (goal ≤ 0.85×), wall ${wallRatio.toFixed(2)}×.`);
