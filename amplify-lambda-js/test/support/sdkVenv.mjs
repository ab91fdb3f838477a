//! The official `openai` Python SDK for the endpoint tests, in a private virtual environment.
//!
//! The version (and every dependency, with hashes) is pinned in test/sdk/requirements.txt and
//! installed from PyPI once into `<repo>/target/test-fixtures/openai-sdk/` (a venv created by the
//! host's `python3 -m venv`; nothing is installed into the host's Python). A marker file records the requirements it was built from;
//! a different pin rebuilds it. A failed install leaves no marker, so the next run starts over.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

import { PACKAGE_ROOT } from "../../common/pythonExec.js";
import { withDirLock } from "./dirLock.mjs";

const REQUIREMENTS = path.join(PACKAGE_ROOT, "test", "sdk", "requirements.txt");
const VENV = path.resolve(PACKAGE_ROOT, "..", "target", "test-fixtures", "openai-sdk");
const LOCK = `${VENV}.lock`;
const MARKER = path.join(VENV, ".installed");

function withLock(work) {
  return withDirLock(LOCK, "the SDK venv", work);
}

function run(file, args) {
  try {
    execFileSync(file, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 10 * 60_000 });
  } catch (error) {
    const stderr = error.stderr?.toString().trim().split("\n").slice(-10).join("\n");
    throw new Error(`creating the openai SDK venv failed: ${file} ${args.join(" ")}: ${stderr || error.message}`);
  }
}

/** Resolves to the venv's python, installing the pinned SDK first when needed. */
export async function sdkPython() {
  const requirements = readFileSync(REQUIREMENTS, "utf8");
  const python = path.join(VENV, "bin", "python");
  const current = () => existsSync(MARKER) && readFileSync(MARKER, "utf8") === requirements;
  if (current()) return python;
  return withLock(async () => {
    if (current()) return python;
    rmSync(VENV, { recursive: true, force: true });
    run("python3", ["-m", "venv", VENV]);
    run(python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes", "--only-binary", ":all:", "-r", REQUIREMENTS]);
    writeFileSync(MARKER, requirements);
    return python;
  });
}
