//! Secrets and request content never reach callers or logs: the same table of cases
//! (test/fixtures/redaction_cases.json) for common/redact.js and for litellm/bridge.py.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { modelForLog, redactMessage, redactSecrets } from "../common/redact.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { cases } = JSON.parse(readFileSync(path.join(HERE, "fixtures", "redaction_cases.json"), "utf8"));

for (const { name, in: input, out, env = {}, secret_env_names: names = [] } of cases) {
  test(`node: ${name}`, () => {
    assert.equal(redactSecrets(input, { env, secretEnvNames: new Set(names) }), out);
  });
}

test("python (bridge.py): every case of the table", () => {
  const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(HERE, "..", "litellm"))})
import bridge
results = []
for case in json.load(sys.stdin)["cases"]:
    secrets = bridge.secret_values(case.get("env", {}), case.get("secret_env_names", []))
    results.append(bridge.redact_text(case["in"], secrets))
print(json.dumps(results))
`;
  const output = execFileSync("python3", ["-c", script], { input: JSON.stringify({ cases }), encoding: "utf8", timeout: 30_000 });
  const results = JSON.parse(output);
  cases.forEach((testCase, index) => assert.equal(results[index], testCase.out, `python: ${testCase.name}`));
});

test("the caller's own message contents are not echoed back", () => {
  const requestStrings = ["my private question about payroll", "hi"];
  assert.equal(
    redactMessage("provider rejected: my private question about payroll (hi)", { env: {}, requestStrings }),
    "provider rejected: [request content] (hi)",
  );
});

test("long messages are cut", () => {
  const message = redactMessage("x".repeat(2000), { env: {}, maxChars: 100 });
  assert.equal(message, `${"x".repeat(100)}... (truncated)`);
});

test("a model string is logged only when the model config lists it", () => {
  assert.equal(modelForLog("gpt-4o-mini", new Set(["gpt-4o-mini"])), "gpt-4o-mini");
  assert.equal(modelForLog("gpt-4o-mini", ["gpt-4o-mini"]), "gpt-4o-mini");
  assert.equal(modelForLog("openai/gpt-4o?key=sk-leaked-123456", ["gpt-4o-mini"]), "(not configured)");
  assert.equal(modelForLog("anything", undefined), "(not configured)");
  assert.equal(modelForLog(null, ["gpt-4o-mini"]), null);
});
