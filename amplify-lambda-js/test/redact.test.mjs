//! Secrets and request content never reach callers through error messages.

import assert from "node:assert/strict";
import { test } from "node:test";

import { redactMessage } from "../common/redact.js";

test("well-known key formats and authorization headers are removed", () => {
  const cases = [
    ["Incorrect API key provided: sk-proj-abcdefgh12345678.", "Incorrect API key provided: sk-[redacted]."],
    ["header Authorization: Bearer abc.def-123", "header Authorization: [redacted] [redacted]"],
    ["sent Bearer abc.def-123", "sent Bearer [redacted]"],
    ['{"api_key": "hunter2hunter2", "x": 1}', '{"api_key": "[redacted]", "x": 1}'],
    ["url?api-key=XYZ123&model=a", "url?api-key=[redacted]&model=a"],
    ["aws AKIAIOSFODNN7EXAMPLE failed", "aws AKIA[redacted] failed"],
    ["google AIzaSyA1234567890abcdefghijklmnopqrstu", "google AIza[redacted]"],
  ];
  for (const [input, expected] of cases) assert.equal(redactMessage(input, { env: {} }), expected);
});

test("values of secret environment variables are removed, other values kept", () => {
  const env = { ANTHROPIC_API_KEY: "ant-secret-value-123", MY_SERVICE_TOKEN: "tok-987654321", REGION: "us-east-1" };
  assert.equal(
    redactMessage("key ant-secret-value-123 token tok-987654321 region us-east-1", { env }),
    "key [redacted] token [redacted] region us-east-1",
  );
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
