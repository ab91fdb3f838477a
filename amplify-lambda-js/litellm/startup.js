//! Starts the LiteLLM bridge while the function's module loads, so Lambda's init phase pays for
//! `import litellm`.
//!
//! Lambda runs a function's initialization code (module load, including a top-level `await` in an
//! ES module) for up to 10 s with the full CPU, while the handler later runs with the memory
//! setting's share of a vCPU (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>).
//! So this module spawns the container-wide child at load and awaits its readiness at top level,
//! bounded by `READY_BUDGET_MS` so initialization never passes 10 s: when LiteLLM is not ready by
//! then, initialization ends anyway and the first request waits for the same child.
//!
//! `LITELLM_INIT_WAIT_MS` changes the bound (e.g. for a provisioned-concurrency function, whose
//! initialization may take longer, or a slow test machine). `LITELLM_START=lazy` skips all this
//! (the child then starts on the first request): only for comparing the two in
//! `bench/cold-start.mjs`.
//!
//! It also passes SIGTERM and SIGINT on to the child (SIGTERM, then SIGKILL after a grace period)
//! before the process exits, so no Python process outlives Node.

import { logger } from "../common/log.js";
import { getSharedClient } from "./litellmClient.js";

/** How long module load waits for the bridge: below Lambda's 10 s init limit, with room for the rest. */
export const READY_BUDGET_MS = 9_000;

function readyBudget(value) {
  if (value === undefined || value === "") return READY_BUDGET_MS;
  const ms = Number(value);
  if (Number.isInteger(ms) && ms >= 0) return ms;
  logger.error(`LITELLM_INIT_WAIT_MS=${JSON.stringify(value)} is not a whole number of milliseconds; waiting ${READY_BUDGET_MS} ms`);
  return READY_BUDGET_MS;
}

/** The client every handler of this container uses. */
export const client = getSharedClient();

function startMode(value) {
  if (value === undefined || value === "" || value === "eager") return "eager";
  if (value === "lazy") return "lazy";
  logger.error(`LITELLM_START=${JSON.stringify(value)} is not eager or lazy; starting eagerly`);
  return "eager";
}

/** What happened at module load: `{mode, ready, waitedMs, pid}`. */
export const startup = {
  mode: startMode(process.env.LITELLM_START),
  budgetMs: readyBudget(process.env.LITELLM_INIT_WAIT_MS),
  ready: false,
  waitedMs: 0,
  pid: null,
};

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 };
for (const signal of Object.keys(SIGNAL_EXIT_CODES)) {
  process.once(signal, () => {
    logger.info(`received ${signal}: stopping the LiteLLM bridge`, { child_pid: client.pid });
    client
      .shutdown()
      .catch((error) => logger.error(`stopping the LiteLLM bridge failed: ${error.message}`))
      .finally(() => process.exit(SIGNAL_EXIT_CODES[signal]));
  });
}

if (startup.mode === "eager") {
  const started = performance.now();
  startup.ready = await client.waitReady(startup.budgetMs);
  startup.waitedMs = Math.round(performance.now() - started);
  startup.pid = client.pid;
  if (startup.ready) {
    logger.info(`LiteLLM bridge ready during init in ${startup.waitedMs} ms`, { child_pid: client.pid, bridge: client.readyInfo });
  } else if (client.pid !== null) {
    logger.warn(`LiteLLM bridge not ready after ${startup.waitedMs} ms of init; the first request waits for it`, { child_pid: client.pid });
  } else {
    logger.error("LiteLLM bridge could not start during init; requests will report why", { detail: client.lastFailure });
  }
}
