//! Finds the Python interpreter of the LiteLLM layer and runs one-shot Python scripts with it.
//!
//! Interpreter choice, first match wins:
//!   1. `LITELLM_PYTHON`, used as given (also under serverless-offline, which sets
//!      `LAMBDA_TASK_ROOT` on a machine without /opt/python);
//!   2. on Lambda (`LAMBDA_TASK_ROOT` or `AWS_EXECUTION_ENV` set): `/opt/python/bin/python3.X`,
//!      the layer unpacked under /opt, with `PYTHONHOME=/opt/python`;
//!   3. a layer built on this machine: `../layer-build-<host arch>/layer/python/bin/python3.X`
//!      next to this package (`cargo xtask layer --arch x86_64`);
//!   4. `python3` from PATH.
//! Off the layer, an inherited `PYTHONHOME` (and a `PYTHONPATH` into /opt/python, as
//! serverless.yml sets them for Lambda) is removed from the child's environment: it would point
//! any other interpreter at the wrong standard library.
//!
//! The minor version `3.X` is never written here: on Lambda it comes from `PYTHONPATH`
//! (`/opt/python/lib/python3.X`, set in serverless.yml from `[python] version` of layer.toml),
//! and for a local layer from its `lib/python3.X` directory.

import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Where the layer sits once Lambda has unpacked it. */
export const LAMBDA_PYTHON_HOME = "/opt/python";

/** The directory holding package.json, index.js, litellm/ and common/. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Lambda's name for the architecture Node runs on (`arm64` or `x86_64`), or null when Lambda has none. */
export function hostLambdaArch(nodeArch = process.arch) {
  if (nodeArch === "x64") return "x86_64";
  if (nodeArch === "arm64") return "arm64";
  return null;
}

/** True when running inside AWS Lambda. */
export function onLambda(env = process.env) {
  return Boolean(env.LAMBDA_TASK_ROOT || env.AWS_EXECUTION_ENV);
}

/** The layer's interpreter name (`python3.X`) named by a `lib/python3.X` path, or null. */
export function interpreterNameOf(libPath) {
  const match = /(?:^|\/)(python3\.\d+)\/?$/.exec(libPath || "");
  return match ? match[1] : null;
}

/** The `python3.X` directory under a local layer's `lib/`, or null when there is none. */
function localInterpreterName(pythonHome) {
  let names = [];
  try {
    names = readdirSync(path.join(pythonHome, "lib"));
  } catch {
    return null;
  }
  return names.map(interpreterNameOf).find(Boolean) ?? null;
}

/**
 * The environment a layer interpreter needs: PYTHONHOME at the layer's `python/` directory and
 * PYTHONPATH at its `lib/python3.X` (where the layer's sitecustomize.py adds site-packages.zip).
 */
function layerEnvironment(pythonHome, interpreterName) {
  return { PYTHONHOME: pythonHome, PYTHONPATH: path.join(pythonHome, "lib", interpreterName) };
}

/**
 * Picks the interpreter (see the module comment) and the environment variables to add for it.
 *
 * Returns `{ executable, source, env }`; `source` says why this interpreter was chosen
 * (`lambda`, `LITELLM_PYTHON`, `layer-build`, `PATH`) and `env` holds only the variables to set.
 */
export function resolvePython({ env = process.env, packageRoot = PACKAGE_ROOT, nodeArch = process.arch } = {}) {
  const common = { LITELLM_LOCAL_MODEL_COST_MAP: env.LITELLM_LOCAL_MODEL_COST_MAP || "True" };
  // `undefined` removes a variable from a child's environment (child_process skips such entries).
  const unlayered = { ...common };
  if (env.PYTHONHOME !== undefined) unlayered.PYTHONHOME = undefined;
  if (typeof env.PYTHONPATH === "string" && env.PYTHONPATH.split(":").some((entry) => entry.startsWith(LAMBDA_PYTHON_HOME))) {
    unlayered.PYTHONPATH = undefined;
  }
  if (env.LITELLM_PYTHON) {
    return { executable: env.LITELLM_PYTHON, source: "LITELLM_PYTHON", env: unlayered };
  }
  if (onLambda(env)) {
    const home = LAMBDA_PYTHON_HOME;
    // `python3` is the layer's symlink to its interpreter, for a PYTHONPATH that names no version.
    const name = interpreterNameOf(env.PYTHONPATH);
    return {
      executable: path.join(home, "bin", name ?? "python3"),
      source: "lambda",
      env: { ...(name ? layerEnvironment(home, name) : { PYTHONHOME: home }), ...common },
    };
  }
  const arch = hostLambdaArch(nodeArch);
  if (arch) {
    const home = path.resolve(packageRoot, "..", `layer-build-${arch}`, "layer", "python");
    const name = localInterpreterName(home);
    const executable = name && path.join(home, "bin", name);
    if (executable && existsSync(executable)) {
      return { executable, source: "layer-build", env: { ...layerEnvironment(home, name), ...common } };
    }
  }
  return { executable: "python3", source: "PATH", env: unlayered };
}

/** The hint every "interpreter not found" message ends with. */
export function interpreterHint(source) {
  if (source === "lambda") {
    return "attach the pythonLiteLLM layer to the function (serverless.yml) so /opt/python exists";
  }
  return "set LITELLM_PYTHON to a Python of the layer's version (layer.toml) that has litellm installed, or build the layer with `cargo xtask layer --arch x86_64`";
}

/** Thrown when a one-shot script exits with an error, times out or cannot start. */
export class PythonExecError extends Error {
  constructor(message, { code = null, signal = null, stdout = "", stderr = "", timedOut = false, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = "PythonExecError";
    this.code = code;
    this.signal = signal;
    this.stdout = stdout;
    this.stderr = stderr;
    this.timedOut = timedOut;
  }
}

function lastLines(text, count) {
  return text.trimEnd().split("\n").slice(-count).join("\n");
}

/**
 * Runs `code` with the layer's interpreter (`python -c code`) and resolves to `{ stdout, stderr }`.
 *
 * Rejects with a `PythonExecError` when the interpreter cannot start, when the script exits with a
 * non-zero status (the message carries the end of its stderr), or after `timeout` milliseconds
 * (the process is killed).
 */
export function runPython(code, { timeout = 30_000, python = resolvePython(), env = {}, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(python.executable, ["-c", code], {
      env: { ...process.env, ...python.env, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const stdout = [];
    const stderr = [];
    let timedOut = false;
    let settled = false;
    const finish = (error, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeout);
    child.stdout.on("data", (chunk) => stdout.push(chunk));
    child.stderr.on("data", (chunk) => stderr.push(chunk));
    child.stdin.on("error", () => {
      // The script may exit without reading its input; the exit status tells what happened.
    });
    child.on("error", (error) => {
      finish(
        new PythonExecError(
          `python interpreter ${JSON.stringify(python.executable)} could not be started (${error.code || error.message}): ${interpreterHint(python.source)}`,
          { cause: error },
        ),
      );
    });
    child.on("close", (code, signal) => {
      const out = Buffer.concat(stdout).toString("utf8");
      const err = Buffer.concat(stderr).toString("utf8");
      if (timedOut) {
        finish(new PythonExecError(`python script timed out after ${timeout} ms and was killed`, { signal, stdout: out, stderr: err, timedOut }));
      } else if (code !== 0) {
        const status = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        finish(new PythonExecError(`python script ${status}: ${lastLines(err, 5) || "(no stderr)"}`, { code, signal, stdout: out, stderr: err }));
      } else {
        finish(null, { stdout: out, stderr: err });
      }
    });
    child.stdin.end(input ?? "");
  });
}

const VERIFY_SCRIPT = `
import json, os, platform, sys
from importlib.metadata import version
import litellm
print(json.dumps({
    "python": platform.python_version(),
    "litellm": version("litellm"),
    "executable": sys.executable,
    "prefix": sys.prefix,
    "machine": platform.machine(),
    "localCostMap": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP") == "True",
}))
`;

/**
 * Imports litellm with the layer's interpreter and reports
 * `{ python, litellm, executable, prefix, machine, localCostMap, source }`.
 */
export async function verifyPythonEnvironment({ timeout = 60_000, python = resolvePython() } = {}) {
  const { stdout } = await runPython(VERIFY_SCRIPT, { timeout, python });
  const line = stdout.trim().split("\n").pop();
  let report;
  try {
    report = JSON.parse(line);
  } catch (error) {
    throw new PythonExecError(`python environment check printed no JSON report (got ${JSON.stringify(line?.slice(0, 200))})`, { stdout, cause: error });
  }
  return { ...report, source: python.source };
}
