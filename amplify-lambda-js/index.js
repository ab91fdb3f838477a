//! The `chat` Lambda: an OpenAI-compatible chat completions endpoint answered through LiteLLM.
//!
//! Accepts API Gateway REST (v1), HTTP API (v2) and Function URL events carrying a JSON body
//! `{model, messages, stream?, temperature?, max_tokens?, ...}`. Replies with the OpenAI chat
//! completion object; with `stream: true` the reply is the OpenAI server-sent-events body
//! (`data: {chunk}` lines, then `data: [DONE]`), buffered because these event sources do not stream.
//!
//! Status codes: 400 invalid request, 405 not POST, 502 the provider (or LiteLLM) failed (the
//! provider's status is in `error.provider_status`), 504 the deadline passed, 500 the Python
//! bridge is unavailable. Provider credentials and endpoints come from the function's environment
//! (e.g. `OPENAI_API_KEY`, `OPENAI_BASE_URL`), never from the request.

import { redactMessage } from "./common/redact.js";
import { BridgeError, getSharedClient, LiteLLMTimeoutError, ProviderError } from "./litellm/litellmClient.js";

/** Default deadline per request when the Lambda context gives none (override: LITELLM_TIMEOUT_MS). */
const DEFAULT_TIMEOUT_MS = 55_000;
/** Time kept back from the Lambda deadline to send the 504 before Lambda kills the invocation. */
const DEADLINE_MARGIN_MS = 1_000;

const ROLES = new Set(["system", "user", "assistant", "tool", "function", "developer"]);

const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
const isInteger = (value) => Number.isInteger(value);
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** Optional fields passed to LiteLLM, each with its check and what the error message expects. */
const OPTIONAL_FIELDS = {
  stream: [(v) => typeof v === "boolean", "a boolean"],
  temperature: [(v) => isNumber(v) && v >= 0 && v <= 2, "a number from 0 to 2"],
  top_p: [(v) => isNumber(v) && v >= 0 && v <= 1, "a number from 0 to 1"],
  max_tokens: [(v) => isInteger(v) && v > 0, "a positive integer"],
  max_completion_tokens: [(v) => isInteger(v) && v > 0, "a positive integer"],
  n: [(v) => isInteger(v) && v > 0 && v <= 16, "an integer from 1 to 16"],
  stop: [(v) => typeof v === "string" || (Array.isArray(v) && v.length <= 4 && v.every((s) => typeof s === "string")), "a string or up to 4 strings"],
  presence_penalty: [(v) => isNumber(v) && v >= -2 && v <= 2, "a number from -2 to 2"],
  frequency_penalty: [(v) => isNumber(v) && v >= -2 && v <= 2, "a number from -2 to 2"],
  seed: [isInteger, "an integer"],
  user: [(v) => typeof v === "string", "a string"],
  logit_bias: [isObject, "an object"],
  logprobs: [(v) => typeof v === "boolean", "a boolean"],
  top_logprobs: [(v) => isInteger(v) && v >= 0 && v <= 20, "an integer from 0 to 20"],
  response_format: [isObject, "an object"],
  tools: [Array.isArray, "an array"],
  tool_choice: [(v) => typeof v === "string" || isObject(v), "a string or an object"],
  parallel_tool_calls: [(v) => typeof v === "boolean", "a boolean"],
  reasoning_effort: [(v) => typeof v === "string", "a string"],
};

/** Fields that would let a caller choose credentials or endpoints. */
const REFUSED_FIELDS = new Set([
  "api_key",
  "api_base",
  "base_url",
  "api_version",
  "custom_llm_provider",
  "aws_access_key_id",
  "aws_secret_access_key",
  "aws_session_token",
  "aws_region_name",
  "vertex_credentials",
  "extra_headers",
  "headers",
]);

/** A request the caller must fix; becomes a 400. */
class RequestError extends Error {
  constructor(message, statusCode = 400) {
    super(message);
    this.statusCode = statusCode;
  }
}

function jsonResponse(statusCode, body, headers = {}) {
  return {
    statusCode,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    isBase64Encoded: false,
  };
}

function errorResponse(statusCode, type, message, extra = {}) {
  return jsonResponse(statusCode, { error: { message, type, ...extra } });
}

/** Reads method and body from API Gateway v1, v2 and Function URL events. */
export function parseEvent(event) {
  if (!isObject(event)) throw new RequestError("unsupported event: expected an API Gateway (v1 or v2) or Function URL event object");
  let method;
  if (typeof event.httpMethod === "string") {
    method = event.httpMethod; // API Gateway REST API (payload v1).
  } else if (isObject(event.requestContext) && isObject(event.requestContext.http) && typeof event.requestContext.http.method === "string") {
    method = event.requestContext.http.method; // HTTP API (payload v2) and Function URLs.
  } else {
    throw new RequestError("unsupported event: expected an API Gateway (v1 or v2) or Function URL event with an HTTP method");
  }
  method = method.toUpperCase();
  if (method !== "POST") throw new RequestError(`method ${method} is not allowed: send the chat request with POST`, 405);
  if (event.body === undefined || event.body === null || event.body === "") {
    throw new RequestError("request body is empty: send a JSON object with model and messages");
  }
  if (typeof event.body !== "string") throw new RequestError("request body must be a JSON string");
  const text = event.isBase64Encoded ? Buffer.from(event.body, "base64").toString("utf8") : event.body;
  let body;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new RequestError(`request body is not valid JSON: ${error.message}`);
  }
  return { method, body };
}

/** Checks a chat request and returns the keyword arguments for `litellm.acompletion`. */
export function validateChatRequest(body) {
  if (!isObject(body)) throw new RequestError("request body must be a JSON object with model and messages");
  const { model, messages } = body;
  if (typeof model !== "string" || model.trim() === "") {
    throw new RequestError('field "model" is required and must be a non-empty string such as "openai/gpt-4o-mini"');
  }
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new RequestError('field "messages" is required and must be a non-empty array of {role, content} objects');
  }
  messages.forEach((message, index) => {
    if (!isObject(message)) throw new RequestError(`messages[${index}] must be an object with role and content`);
    if (!ROLES.has(message.role)) {
      throw new RequestError(`messages[${index}].role must be one of ${[...ROLES].join(", ")} (got ${JSON.stringify(message.role)})`);
    }
    const { content } = message;
    const contentOk = typeof content === "string" || Array.isArray(content) || (content === null && message.role === "assistant");
    if (!contentOk) throw new RequestError(`messages[${index}].content must be a string or an array of content parts`);
  });
  const params = { model, messages };
  for (const [name, value] of Object.entries(body)) {
    if (name === "model" || name === "messages") continue;
    if (REFUSED_FIELDS.has(name)) {
      throw new RequestError(`field "${name}" is not accepted: provider credentials and endpoints are configured in the function's environment`);
    }
    const rule = OPTIONAL_FIELDS[name];
    if (!rule) {
      throw new RequestError(`unknown field "${name}": accepted fields are model, messages, ${Object.keys(OPTIONAL_FIELDS).join(", ")}`);
    }
    if (value === null || value === undefined) continue;
    const [check, expected] = rule;
    if (!check(value)) throw new RequestError(`field "${name}" must be ${expected} (got ${JSON.stringify(value)?.slice(0, 80)})`);
    params[name] = value;
  }
  return params;
}

/** Strings of the request that must not come back in an error message. */
function requestStrings(params) {
  const strings = [];
  for (const message of params.messages ?? []) {
    if (typeof message.content === "string") strings.push(message.content);
    else if (Array.isArray(message.content)) {
      for (const part of message.content) if (typeof part?.text === "string") strings.push(part.text);
    }
  }
  return strings;
}

function deadlineFor(context, configured) {
  const remaining = typeof context?.getRemainingTimeInMillis === "function" ? context.getRemainingTimeInMillis() : Infinity;
  return Math.max(100, Math.min(configured, remaining - DEADLINE_MARGIN_MS));
}

function sseBody(chunks) {
  return chunks.map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`).join("") + "data: [DONE]\n\n";
}

/**
 * Builds a handler. Options: `client` (a LiteLLMClient; default: the container-wide one, started
 * on first use), `timeoutMs` (default `LITELLM_TIMEOUT_MS` or 55 s, capped by the Lambda deadline),
 * `maxRetries` (LiteLLM retries per request, default `LITELLM_MAX_RETRIES` or 0), `logger`.
 */
export function createHandler({ client, timeoutMs, maxRetries, logger = console } = {}) {
  const configuredTimeout = timeoutMs ?? (Number(process.env.LITELLM_TIMEOUT_MS) || DEFAULT_TIMEOUT_MS);
  const retries = maxRetries ?? (Number(process.env.LITELLM_MAX_RETRIES) || 0);
  return async function handler(event, context) {
    let params;
    try {
      params = validateChatRequest(parseEvent(event).body);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      const headers = error.statusCode === 405 ? { allow: "POST" } : {};
      return jsonResponse(error.statusCode, { error: { message: error.message, type: "invalid_request_error" } }, headers);
    }
    const bridge = client ?? getSharedClient();
    const deadline = deadlineFor(context, configuredTimeout);
    const request = { ...params, max_retries: retries };
    try {
      if (params.stream) {
        const chunks = [];
        for await (const chunk of bridge.stream(request, { timeoutMs: deadline })) chunks.push(chunk);
        return {
          statusCode: 200,
          headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
          body: sseBody(chunks),
          isBase64Encoded: false,
        };
      }
      const response = await bridge.completion(request, { timeoutMs: deadline });
      return jsonResponse(200, response);
    } catch (error) {
      const message = redactMessage(error.message, { requestStrings: requestStrings(params) });
      if (error instanceof LiteLLMTimeoutError) {
        logger.error(`chat: timeout after ${deadline} ms (model ${params.model})`);
        return errorResponse(504, "timeout", `the model did not answer within ${deadline} ms`);
      }
      if (error instanceof ProviderError) {
        logger.error(`chat: provider error ${error.status ?? "(no status)"} ${error.type} (model ${params.model}): ${message}`);
        return errorResponse(502, "provider_error", message, {
          provider_status: error.status,
          provider: error.provider,
          code: error.type,
        });
      }
      if (error instanceof BridgeError) {
        logger.error(`chat: bridge failure: ${message}`);
        return errorResponse(500, "bridge_error", `the LiteLLM bridge is unavailable: ${message}`);
      }
      throw error;
    }
  };
}

/** The Lambda entry point (`handler: index.handler`). */
export const handler = createHandler();
