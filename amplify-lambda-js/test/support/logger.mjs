//! A logger that records what the client and handler log, so tests can check it.

export function recordingLogger() {
  const lines = [];
  const record = (level) => (message, fields = {}) => lines.push({ level, message: String(message), fields });
  return {
    lines,
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
    /** Every recorded message, one per line. */
    text: () => lines.map((line) => `${line.level}: ${line.message}`).join("\n"),
    /** Resolves once a message matching `pattern` was logged (polls; bounded by the test timeout). */
    async waitFor(pattern) {
      while (!lines.some((line) => pattern.test(line.message))) await new Promise((resolve) => setTimeout(resolve, 20));
    },
  };
}
