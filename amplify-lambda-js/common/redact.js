//! Removes secrets and request content from text before it reaches a caller or a log.
//!
//! The same key shapes are removed on the Python side by litellm/bridge.py (`redact_text`); both
//! are checked against one table of cases, test/fixtures/redaction_cases.json.

/** Messages returned to callers are cut to this many characters. */
export const MAX_ERROR_MESSAGE_CHARS = 500;

/** Secret values shorter than this are not searched for: they would match ordinary words. */
const MIN_SECRET_CHARS = 8;

const SECRET_PATTERNS = [
  // OpenAI-style keys (sk-..., sk-proj-...), Anthropic (sk-ant-...).
  [/\bsk-[A-Za-z0-9_-]{6,}/g, "sk-[redacted]"],
  // Authorization headers.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]"],
  // key=value, "key": "value" and header pairs whose name says secret, including Azure API
  // Management's `Ocp-Apim-Subscription-Key` and the `key` query parameter (`?key=`, `&key=`) of
  // Google's APIs.
  [
    /\b((?:x-)?api[_-]?key|ocp-apim-subscription-key|authorization|secret(?:[_-]access[_-]key)?|(?:session|access|auth)[_-]?token|password)(["']?\s*[:=]\s*["']?)[^\s"',;}&]+/gi,
    "$1$2[redacted]",
  ],
  [/([?&;]key=)[^\s"'&#,;}]+/gi, "$1[redacted]"],
  // AWS access key ids.
  [/\b(AKIA|ASIA)[0-9A-Z]{16}\b/g, "$1[redacted]"],
  // Google API keys.
  [/\bAIza[0-9A-Za-z_-]{30,}/g, "AIza[redacted]"],
  // Bare hex keys (Azure OpenAI and API Management keys are 32 hex digits).
  [/\b[0-9a-fA-F]{32,}\b/g, "[redacted hex]"],
];

/** Environment variables whose values are secrets: FOO_API_KEY, FOO_SECRET, FOO_TOKEN, ... */
const SECRET_ENV_NAME = /(API_KEY|SECRET|TOKEN|PASSWORD|CREDENTIALS?|SUBSCRIPTION_KEY)($|_)/i;

/**
 * Names of further environment variables holding secrets: those the model config refers to as
 * `os.environ/NAME` whatever their name. The bridge reports them in its `ready` message.
 */
const configuredSecretNames = new Set();

/** Adds environment variable names whose values must be redacted (from the model config). */
export function addSecretEnvNames(names) {
  for (const name of names ?? []) if (typeof name === "string" && name) configuredSecretNames.add(name);
}

function replaceAll(text, needle, replacement) {
  return needle ? text.split(needle).join(replacement) : text;
}

/** The values of every secret environment variable (by name shape or named by the model config). */
export function secretValues(env = process.env, secretEnvNames = configuredSecretNames) {
  const values = [];
  for (const [name, value] of Object.entries(env)) {
    if ((SECRET_ENV_NAME.test(name) || secretEnvNames.has(name)) && typeof value === "string" && value.length >= MIN_SECRET_CHARS) {
      values.push(value);
    }
  }
  // Longest first, so a secret that contains another is removed whole.
  return values.sort((a, b) => b.length - a.length);
}

/**
 * Returns `text` without secrets: the values of secret environment variables, then the key
 * shapes above. Not cut; for logs (see `redactMessage` for callers).
 */
export function redactSecrets(text, { env = process.env, secretEnvNames = configuredSecretNames } = {}) {
  let result = String(text ?? "");
  for (const value of secretValues(env, secretEnvNames)) result = replaceAll(result, value, "[redacted]");
  for (const [pattern, replacement] of SECRET_PATTERNS) result = result.replace(pattern, replacement);
  return result;
}

/**
 * Returns `message` without secrets and without the caller's own content.
 *
 * Removes any string of `requestStrings` (the request's message contents: provider errors
 * sometimes echo them) of 8 characters or more, then secrets (`redactSecrets`); then cuts the
 * result to `maxChars`.
 */
export function redactMessage(message, { env = process.env, requestStrings = [], maxChars = MAX_ERROR_MESSAGE_CHARS } = {}) {
  let text = String(message ?? "");
  for (const value of requestStrings) {
    if (typeof value === "string" && value.length >= MIN_SECRET_CHARS) text = replaceAll(text, value, "[request content]");
  }
  text = redactSecrets(text, { env });
  return text.length > maxChars ? `${text.slice(0, maxChars)}... (truncated)` : text;
}

/**
 * The model name for a log line: the name when the model config lists it, else a placeholder,
 * because a caller's model string is caller content (it may carry a key or a prompt).
 */
export function modelForLog(model, configuredNames) {
  if (typeof model === "string" && configuredNames && (configuredNames.has?.(model) || configuredNames.includes?.(model))) return model;
  return model === undefined || model === null ? null : "(not configured)";
}
