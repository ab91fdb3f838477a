//! The Python (with litellm) the tests run the bridge on.
//!
//! First match wins: `LITELLM_PYTHON`; the host-arch layer (x86_64 here) built by `cargo xtask layer`
//! (`../layer-build-x86_64/layer/python/bin/python3.11`); otherwise a virtual environment created
//! once under `amplify-lambda-js/.venv-test/` with the litellm version that
//! `litellm-layer/layer.toml` requires. When none can be set up the tests fail with the reason:
//! nothing is skipped.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

import { PACKAGE_ROOT, resolvePython, verifyPythonEnvironment } from "../../common/pythonExec.js";
import { withDirLock } from "./dirLock.mjs";

const VENV = path.join(PACKAGE_ROOT, ".venv-test");
const LOCK = `${VENV}.lock`;
const LAYER_TOML = path.resolve(PACKAGE_ROOT, "..", "litellm-layer", "layer.toml");

/** The `litellm==X` requirement of `litellm-layer/layer.toml`. */
export function litellmRequirement() {
  let text;
  try {
    text = readFileSync(LAYER_TOML, "utf8");
  } catch (error) {
    throw new Error(`cannot read ${LAYER_TOML} to find the litellm version for the test venv: ${error.message}`);
  }
  const match = /^\s*requirements\s*=\s*\[[^\]]*?"(litellm\s*==\s*[^"]+)"/m.exec(text);
  if (!match) throw new Error(`${LAYER_TOML}: [packages] requirements has no pinned "litellm==X" entry for the test venv`);
  return match[1].replace(/\s+/g, "");
}

function withLock(work) {
  return withDirLock(LOCK, "the venv", work);
}

function ensureVenv() {
  const requirement = litellmRequirement();
  const marker = path.join(VENV, ".installed");
  const python = path.join(VENV, "bin", "python");
  if (existsSync(marker) && readFileSync(marker, "utf8") === requirement) return python;
  return withLock(async () => {
    if (existsSync(marker) && readFileSync(marker, "utf8") === requirement) return python;
    const run = (file, args) => {
      try {
        execFileSync(file, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 15 * 60_000 });
      } catch (error) {
        const stderr = error.stderr?.toString().trim().split("\n").slice(-10).join("\n");
        throw new Error(`creating the test venv failed: ${file} ${args.join(" ")}: ${stderr || error.message}`);
      }
    };
    if (!existsSync(python)) run("python3", ["-m", "venv", VENV]);
    run(python, ["-m", "pip", "install", "--quiet", requirement]);
    writeFileSync(marker, requirement);
    return python;
  });
}

let cached = null;

/**
 * Resolves to `{ python, report }`: `python` is the `{executable, source, env}` to hand to the
 * client, `report` what `verifyPythonEnvironment` found (python and litellm versions).
 */
export function testPython() {
  cached ??= (async () => {
    let python;
    if (process.env.LITELLM_PYTHON) {
      python = resolvePython({ env: { LITELLM_PYTHON: process.env.LITELLM_PYTHON } });
    } else {
      const layer = resolvePython({ env: {} });
      python = layer.source === "layer-build" ? layer : { executable: await ensureVenv(), source: "test-venv", env: { LITELLM_LOCAL_MODEL_COST_MAP: "True" } };
    }
    let report;
    try {
      report = await verifyPythonEnvironment({ python, timeout: 120_000 });
    } catch (error) {
      throw new Error(`the test Python ${python.executable} (${python.source}) cannot import litellm: ${error.message}`);
    }
    return { python, report };
  })();
  return cached;
}
