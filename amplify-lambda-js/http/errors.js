//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with an HTTP status
//! <https://platform.openai.com/docs/guides/error-codes>.

/** An error answered to the caller as is: status, OpenAI error fields and extra headers. */
export class HttpError extends Error {
  constructor(status, message, { type = "invalid_request_error", param = null, code = null, headers = {} } = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
    this.headers = headers;
  }
}

/** The JSON body of an error reply. */
export function errorBody({ message, type, param = null, code = null }) {
  return { error: { message, type, param, code } };
}

/**
 * Headers for an error reply. `x-should-retry: false` tells the OpenAI SDKs not to retry a status
 * they would otherwise retry (5xx) when retrying cannot help, e.g. a reply too large for Lambda.
 */
export function errorHeaders({ retryAfter = null, retry = null, headers = {} } = {}) {
  const result = { "content-type": "application/json", ...headers };
  if (retryAfter) result["retry-after"] = String(retryAfter);
  if (retry === false) result["x-should-retry"] = "false";
  return result;
}
