//! Removes secrets and request content from error messages before they reach a caller or a log.

/** Messages returned to callers are cut to this many characters. */
export const MAX_ERROR_MESSAGE_CHARS = 500;

const SECRET_PATTERNS = [
  // OpenAI-style keys (sk-..., sk-proj-...), Anthropic (sk-ant-...).
  [/\bsk-[A-Za-z0-9_-]{6,}/g, "sk-[redacted]"],
  // Authorization headers.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]"],
  // key=value and "key": "value" pairs whose name says secret.
  [
    /\b((?:x-)?api[_-]?key|authorization|secret(?:[_-]access[_-]key)?|(?:session|access|auth)[_-]?token|password)(["']?\s*[:=]\s*["']?)[^\s"',;}&]+/gi,
    "$1$2[redacted]",
  ],
  // AWS access key ids.
  [/\b(AKIA|ASIA)[0-9A-Z]{16}\b/g, "$1[redacted]"],
  // Google API keys.
  [/\bAIza[0-9A-Za-z_-]{30,}/g, "AIza[redacted]"],
];

/** Environment variables whose values are secrets: FOO_API_KEY, FOO_SECRET, FOO_TOKEN, ... */
const SECRET_ENV_NAME = /(API_KEY|SECRET|TOKEN|PASSWORD|CREDENTIALS?)($|_)/i;

function replaceAll(text, needle, replacement) {
  return needle ? text.split(needle).join(replacement) : text;
}

/**
 * Returns `message` without secrets and without the caller's own content.
 *
 * Removes the values of secret-looking environment variables, any string of `requestStrings`
 * (the request's message contents: provider errors sometimes echo them) of 8 characters or more,
 * and well-known key formats; then cuts the result to `maxChars`.
 */
export function redactMessage(message, { env = process.env, requestStrings = [], maxChars = MAX_ERROR_MESSAGE_CHARS } = {}) {
  let text = String(message ?? "");
  for (const [name, value] of Object.entries(env)) {
    if (SECRET_ENV_NAME.test(name) && typeof value === "string" && value.length >= 8) {
      text = replaceAll(text, value, "[redacted]");
    }
  }
  for (const value of requestStrings) {
    if (typeof value === "string" && value.length >= 8) text = replaceAll(text, value, "[request content]");
  }
  for (const [pattern, replacement] of SECRET_PATTERNS) text = text.replace(pattern, replacement);
  return text.length > maxChars ? `${text.slice(0, maxChars)}... (truncated)` : text;
}
