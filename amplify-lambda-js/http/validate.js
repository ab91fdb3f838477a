//! Checks request bodies where OpenAI's API defines the types
//! (<https://platform.openai.com/docs/api-reference/chat/create>,
//! <https://platform.openai.com/docs/api-reference/embeddings/create>).
//!
//! Fields this module does not know are not refused: they go on to the bridge, which forwards them
//! to the provider (litellm/openai_endpoint.py). Refused are only fields that would let a caller
//! choose credentials or endpoints. A field set to `null` counts as absent, as in OpenAI's API.

import { HttpError } from "./errors.js";

const ROLES = ["system", "developer", "user", "assistant", "tool", "function"];

const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
const isInteger = (value) => Number.isInteger(value);
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const isString = (value) => typeof value === "string";
const isBoolean = (value) => typeof value === "boolean";
const between = (low, high) => (value) => isNumber(value) && value >= low && value <= high;

/** Chat fields with a defined type: `[check, what the message says is expected]`. */
const CHAT_FIELDS = {
  stream: [isBoolean, "a boolean"],
  stream_options: [(v) => isObject(v) && (v.include_usage === undefined || isBoolean(v.include_usage)), "an object such as {\"include_usage\": true}"],
  temperature: [between(0, 2), "a number from 0 to 2"],
  top_p: [between(0, 1), "a number from 0 to 1"],
  max_tokens: [(v) => isInteger(v) && v > 0, "a positive integer"],
  max_completion_tokens: [(v) => isInteger(v) && v > 0, "a positive integer"],
  n: [(v) => isInteger(v) && v >= 1 && v <= 128, "an integer from 1 to 128"],
  stop: [(v) => isString(v) || (Array.isArray(v) && v.length <= 4 && v.every(isString)), "a string or up to 4 strings"],
  presence_penalty: [between(-2, 2), "a number from -2 to 2"],
  frequency_penalty: [between(-2, 2), "a number from -2 to 2"],
  seed: [isInteger, "an integer"],
  user: [isString, "a string"],
  logit_bias: [isObject, "an object mapping token ids to numbers from -100 to 100"],
  logprobs: [isBoolean, "a boolean"],
  top_logprobs: [(v) => isInteger(v) && v >= 0 && v <= 20, "an integer from 0 to 20"],
  response_format: [(v) => isObject(v) && isString(v.type), "an object with a type (text, json_object or json_schema)"],
  tools: [(v) => Array.isArray(v) && v.every(isObject), "an array of tool objects"],
  tool_choice: [(v) => isString(v) || isObject(v), "a string or an object"],
  parallel_tool_calls: [isBoolean, "a boolean"],
  functions: [(v) => Array.isArray(v) && v.every(isObject), "an array of function objects"],
  function_call: [(v) => isString(v) || isObject(v), "a string or an object"],
  metadata: [(v) => isObject(v) && Object.values(v).every(isString), "an object of string values"],
  store: [isBoolean, "a boolean"],
  reasoning_effort: [isString, "a string"],
  modalities: [(v) => Array.isArray(v) && v.every(isString), "an array of strings"],
  service_tier: [isString, "a string"],
};

const EMBEDDING_FIELDS = {
  encoding_format: [(v) => v === "float" || v === "base64", '"float" or "base64"'],
  dimensions: [(v) => isInteger(v) && v > 0, "a positive integer"],
  user: [isString, "a string"],
};

/** Fields that would let a caller choose credentials or endpoints (LiteLLM keyword arguments). */
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

function invalid(message, param) {
  return new HttpError(400, message, { param });
}

const show = (value) => JSON.stringify(value)?.slice(0, 80);

function checkModel(body, what) {
  if (!isObject(body)) throw invalid(`request body must be a JSON object ${what}`, null);
  if (!isString(body.model) || body.model.trim() === "") {
    throw invalid('field "model" is required and must be a non-empty string: one of the names GET /v1/models lists', "model");
  }
}

function checkFields(body, rules) {
  const params = {};
  for (const [name, value] of Object.entries(body)) {
    if (REFUSED_FIELDS.has(name)) {
      throw invalid(`field "${name}" is not accepted: providers, credentials and endpoints are configured in the function's model config`, name);
    }
    if (value === null || value === undefined) continue;
    const rule = rules[name];
    if (rule && !rule[0](value)) throw invalid(`field "${name}" must be ${rule[1]} (got ${show(value)})`, name);
    params[name] = value;
  }
  return params;
}

function checkMessage(message, index) {
  const where = `messages[${index}]`;
  if (!isObject(message)) throw invalid(`${where} must be an object with a role`, where);
  if (!ROLES.includes(message.role)) throw invalid(`${where}.role must be one of ${ROLES.join(", ")} (got ${show(message.role)})`, `${where}.role`);
  const { content } = message;
  const hasContent = isString(content) || Array.isArray(content);
  if (message.role === "assistant") {
    // An assistant turn that called tools may leave content out or null.
    if (content !== undefined && content !== null && !hasContent) {
      throw invalid(`${where}.content must be a string, an array of content parts or null (got ${show(content)})`, `${where}.content`);
    }
    if (message.tool_calls !== undefined && message.tool_calls !== null && !Array.isArray(message.tool_calls)) {
      throw invalid(`${where}.tool_calls must be an array`, `${where}.tool_calls`);
    }
  } else if (!hasContent) {
    throw invalid(`${where}.content must be a string or an array of content parts (got ${show(content)})`, `${where}.content`);
  }
  if (message.role === "tool" && !isString(message.tool_call_id)) {
    throw invalid(`${where}.tool_call_id must be the id of the tool call this message answers`, `${where}.tool_call_id`);
  }
}

/** Checks a chat completions body; returns the parameters for the bridge. */
export function validateChat(body) {
  checkModel(body, "with model and messages");
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    throw invalid('field "messages" is required and must be a non-empty array of message objects', "messages");
  }
  body.messages.forEach(checkMessage);
  const params = checkFields(body, CHAT_FIELDS);
  if (params.stream_options !== undefined && params.stream !== true) {
    throw invalid('field "stream_options" is only allowed when "stream" is true', "stream_options");
  }
  return params;
}

/** Checks an embeddings body; returns the parameters for the bridge. */
export function validateEmbeddings(body) {
  checkModel(body, "with model and input");
  const { input } = body;
  const tokens = (value) => Array.isArray(value) && value.length > 0 && value.every((token) => isInteger(token) && token >= 0);
  const inputOk =
    (isString(input) && input !== "") ||
    (Array.isArray(input) && input.length > 0 && (input.every((item) => isString(item) && item !== "") || tokens(input) || input.every(tokens)));
  if (!inputOk) {
    throw invalid('field "input" must be a non-empty string, an array of non-empty strings, an array of token ids or an array of token arrays', "input");
  }
  return checkFields(body, EMBEDDING_FIELDS);
}
