//! The Python side's own tests, run with the bridge's interpreter so they see LiteLLM exactly as
//! the bridge does: test/py/test_openai_endpoint.py (config checks with whole messages, error
//! mapping of real LiteLLM exceptions, retries) and test/py/test_bridge_handle.py (every request
//! gets one answer, even when the error mapper fails).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";

import { PACKAGE_ROOT } from "../common/pythonExec.js";
import { testPython } from "./support/python.mjs";

for (const name of ["test_openai_endpoint.py", "test_bridge_handle.py"]) {
  test(`test/py/${name} passes`, async () => {
    const { python } = await testPython();
    const script = path.join(PACKAGE_ROOT, "test", "py", name);
    const child = spawn(python.executable, [script], { env: { ...process.env, ...python.env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 0, `test/py/${name} failed:\n${output}`);
    assert.match(output, /^Ran \d+ tests? in .*\n\nOK/m);
  });
}
