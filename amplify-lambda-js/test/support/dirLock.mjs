//! One lock for the test support that builds shared environments (the litellm venv, the openai SDK
//! venv): a directory created atomically with mkdir, so parallel test files build each one once.

import { mkdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const STALE_LOCK_MS = 15 * 60_000;

/** Runs `work` while holding the lock directory `lock`; `what` names what it builds, for errors. */
export async function withDirLock(lock, what, work) {
  mkdirSync(path.dirname(lock), { recursive: true });
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
      if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) {
        throw new Error(`${lock} is older than 15 minutes: another test run died while creating ${what}; delete it and rerun`);
      }
      if (Date.now() - started > STALE_LOCK_MS) throw new Error(`timed out waiting for ${lock}`);
      await sleep(500);
    }
  }
  try {
    return await work();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
