//! Interpreter choice, one-shot scripts and the environment check of common/pythonExec.js.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";

import { hostLambdaArch, PythonExecError, resolvePython, runPython, verifyPythonEnvironment } from "../common/pythonExec.js";
import { testPython } from "./support/python.mjs";

const scratch = mkdtempSync(path.join(tmpdir(), "pythonexec-test-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A package root next to which a fake `layer-build-<arch>` of CPython `version` exists. */
function fakeRepo(arch, version = "3.11") {
  const repo = mkdtempSync(path.join(scratch, "repo-"));
  const packageRoot = path.join(repo, "amplify-lambda-js");
  mkdirSync(packageRoot);
  const home = path.join(repo, `layer-build-${arch}`, "layer", "python");
  mkdirSync(path.join(home, "bin"), { recursive: true });
  mkdirSync(path.join(home, "lib", `python${version}`), { recursive: true });
  writeFileSync(path.join(home, "bin", `python${version}`), "");
  return { repo, packageRoot };
}

test("on Lambda the layer under /opt/python is used unless LITELLM_PYTHON is set", () => {
  const layerPath = { PYTHONPATH: "/opt/python/lib/python3.11" };
  for (const env of [{ LAMBDA_TASK_ROOT: "/var/task", ...layerPath }, { AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x", PYTHONHOME: "/elsewhere", ...layerPath }]) {
    assert.deepEqual(resolvePython({ env }), {
      executable: "/opt/python/bin/python3.11",
      source: "lambda",
      env: { PYTHONHOME: "/opt/python", PYTHONPATH: "/opt/python/lib/python3.11", LITELLM_LOCAL_MODEL_COST_MAP: "True" },
    });
  }
});

test("LITELLM_PYTHON wins over Lambda detection, and the layer's PYTHONHOME and PYTHONPATH are removed", () => {
  // serverless-offline sets LAMBDA_TASK_ROOT; serverless.yml's environment sets the layer's paths.
  const env = { LITELLM_PYTHON: "/venv/bin/python", LAMBDA_TASK_ROOT: "/tmp/x", PYTHONHOME: "/opt/python", PYTHONPATH: "/opt/python/lib/python3.11" };
  assert.deepEqual(resolvePython({ env }), {
    executable: "/venv/bin/python",
    source: "LITELLM_PYTHON",
    env: { LITELLM_LOCAL_MODEL_COST_MAP: "True", PYTHONHOME: undefined, PYTHONPATH: undefined },
  });
  // A PYTHONPATH of the user's own is kept.
  assert.equal("PYTHONPATH" in resolvePython({ env: { LITELLM_PYTHON: "p", PYTHONPATH: "/home/me/lib" } }).env, false);
});

test("the minor version comes from the layer's PYTHONPATH on Lambda and from its lib/ locally", () => {
  for (const version of ["3.12", "3.13"]) {
    const env = { LAMBDA_TASK_ROOT: "/var/task", PYTHONPATH: `/opt/python/lib/python${version}` };
    assert.deepEqual(resolvePython({ env }), {
      executable: `/opt/python/bin/python${version}`,
      source: "lambda",
      env: { PYTHONHOME: "/opt/python", PYTHONPATH: `/opt/python/lib/python${version}`, LITELLM_LOCAL_MODEL_COST_MAP: "True" },
    });
    const { repo, packageRoot } = fakeRepo("x86_64", version);
    const home = path.join(repo, "layer-build-x86_64", "layer", "python");
    assert.deepEqual(resolvePython({ env: {}, packageRoot, nodeArch: "x64" }), {
      executable: path.join(home, "bin", `python${version}`),
      source: "layer-build",
      env: { PYTHONHOME: home, PYTHONPATH: path.join(home, "lib", `python${version}`), LITELLM_LOCAL_MODEL_COST_MAP: "True" },
    });
  }
  // Without a PYTHONPATH naming a version, the layer's `python3` symlink is run.
  assert.deepEqual(resolvePython({ env: { LAMBDA_TASK_ROOT: "/var/task" } }), {
    executable: "/opt/python/bin/python3",
    source: "lambda",
    env: { PYTHONHOME: "/opt/python", LITELLM_LOCAL_MODEL_COST_MAP: "True" },
  });
});

test("LITELLM_PYTHON wins over a built layer", () => {
  const { packageRoot } = fakeRepo("x86_64");
  assert.deepEqual(resolvePython({ env: { LITELLM_PYTHON: "/custom/python" }, packageRoot, nodeArch: "x64" }), {
    executable: "/custom/python",
    source: "LITELLM_PYTHON",
    env: { LITELLM_LOCAL_MODEL_COST_MAP: "True" },
  });
});

test("a layer built for the host arch is used with PYTHONHOME and PYTHONPATH set", () => {
  for (const [nodeArch, arch] of [["x64", "x86_64"], ["arm64", "arm64"]]) {
    const { repo, packageRoot } = fakeRepo(arch);
    const home = path.join(repo, `layer-build-${arch}`, "layer", "python");
    assert.deepEqual(resolvePython({ env: {}, packageRoot, nodeArch }), {
      executable: path.join(home, "bin", "python3.11"),
      source: "layer-build",
      env: { PYTHONHOME: home, PYTHONPATH: path.join(home, "lib", "python3.11"), LITELLM_LOCAL_MODEL_COST_MAP: "True" },
    });
  }
});

test("a layer for the other arch is not used; python3 from PATH is the last resort", () => {
  const { packageRoot } = fakeRepo("arm64");
  const chosen = resolvePython({ env: {}, packageRoot, nodeArch: "x64" });
  assert.equal(chosen.executable, "python3");
  assert.equal(chosen.source, "PATH");
  assert.equal(hostLambdaArch("ia32"), null);
});

test("an explicit LITELLM_LOCAL_MODEL_COST_MAP is kept", () => {
  assert.equal(resolvePython({ env: { LITELLM_PYTHON: "p", LITELLM_LOCAL_MODEL_COST_MAP: "False" } }).env.LITELLM_LOCAL_MODEL_COST_MAP, "False");
});

const hostPython = { executable: "python3", source: "PATH", env: {} };

test("runPython returns stdout and stderr and passes the layer environment", async () => {
  const result = await runPython("import os, sys; print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP']); print('warn', file=sys.stderr)", {
    python: { ...hostPython, env: { LITELLM_LOCAL_MODEL_COST_MAP: "True" } },
  });
  assert.equal(result.stdout, "True\n");
  assert.equal(result.stderr, "warn\n");
});

test("runPython rejects a failing script with the end of its stderr", async () => {
  await assert.rejects(runPython("raise SystemExit('broken on purpose')", { python: hostPython }), (error) => {
    assert.ok(error instanceof PythonExecError);
    assert.equal(error.message, "python script exited with status 1: broken on purpose");
    assert.equal(error.code, 1);
    return true;
  });
});

test("runPython kills a script that runs past its timeout", async () => {
  await assert.rejects(runPython("import time; time.sleep(60)", { python: hostPython, timeout: 300 }), (error) => {
    assert.ok(error instanceof PythonExecError);
    assert.equal(error.message, "python script timed out after 300 ms and was killed");
    assert.equal(error.timedOut, true);
    return true;
  });
});

test("runPython names a missing interpreter and says how to fix it", async () => {
  await assert.rejects(runPython("print(1)", { python: { executable: "/nonexistent/python3.11", source: "lambda", env: {} } }), (error) => {
    assert.ok(error instanceof PythonExecError);
    assert.equal(
      error.message,
      'python interpreter "/nonexistent/python3.11" could not be started (ENOENT): attach the pythonLiteLLM layer to the function (serverless.yml) so /opt/python exists',
    );
    return true;
  });
});

test("verifyPythonEnvironment reports python and litellm of the test interpreter", async () => {
  const { python } = await testPython();
  const report = await verifyPythonEnvironment({ python, timeout: 120_000 });
  assert.match(report.python, /^3\.11\.\d+$/);
  assert.match(report.litellm, /^\d+\.\d+\.\d+/);
  assert.equal(typeof report.executable, "string");
  assert.equal(report.localCostMap, true);
  assert.equal(report.source, python.source);
});

test("verifyPythonEnvironment fails clearly where litellm is missing", async () => {
  const bare = mkdtempSync(path.join(scratch, "bare-"));
  // This sitecustomize makes `import litellm` fail whatever the interpreter has installed.
  writeFileSync(path.join(bare, "sitecustomize.py"), "import sys\nsys.modules['litellm'] = None\n");
  await assert.rejects(verifyPythonEnvironment({ python: { executable: "python3", source: "PATH", env: { PYTHONPATH: bare } } }), (error) => {
    assert.ok(error instanceof PythonExecError);
    assert.match(error.message, /^python script exited with status 1: .*ModuleNotFoundError: import of litellm halted; None in sys.modules/s);
    return true;
  });
});
