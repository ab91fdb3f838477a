//! The handler (http/handler.js) with a scripted bridge client: event shapes and their framing,
//! routes, validation, error mapping, Lambda's payload limits, auth and the per-request log line.
//! The real bridge, LiteLLM and the official SDK are in endpoint.test.mjs.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { describe, test } from "node:test";

import { createLogger } from "../common/log.js";
import { loadKeyHashes } from "../http/auth.js";
import { createHandler } from "../http/handler.js";
import { HTTP_INTEGRATION_CONTENT_TYPE, invokeBuffered, invokeFunctionUrl, localAwsLambda } from "../http/streaming.js";
import { BridgeError, LiteLLMTimeoutError, ProviderError } from "../litellm/litellmClient.js";
import { startServer } from "../server.js";

const COMPLETION = {
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "echo",
  choices: [{ index: 0, message: { role: "assistant", content: "hello" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
};
const chunk = (content, extra = {}) => ({ id: "c", object: "chat.completion.chunk", created: 1, model: "echo", choices: [{ index: 0, delta: { content }, finish_reason: null }], ...extra });

/** A bridge client that records its calls and answers as scripted. */
function scriptedClient({ chat = async () => COMPLETION, stream, embeddings, models } = {}) {
  const calls = [];
  return {
    calls,
    pid: 4242,
    readyInfo: { models: ["echo", "embed"] },
    chat: async (params, options) => {
      calls.push({ kind: "chat", params, options });
      return chat(params, options);
    },
    embeddings: async (params, options) => {
      calls.push({ kind: "embeddings", params, options });
      return embeddings ? embeddings(params) : { object: "list", data: [{ object: "embedding", index: 0, embedding: [0.5] }], model: "embed" };
    },
    models: async (options) => {
      calls.push({ kind: "models", options });
      return models ? models() : { object: "list", data: [{ id: "echo", object: "model", created: 0, owned_by: "amplify" }] };
    },
    stream: (params, options) => {
      calls.push({ kind: "stream", params, options });
      return (stream ?? (async function* () {
        yield chunk("hel");
        yield chunk("lo");
      }))(params);
    },
  };
}

function recordingLog() {
  const lines = [];
  const log = createLogger({ write: (line) => lines.push(JSON.parse(line)) });
  return { log, lines };
}

function build({ client = scriptedClient(), env = {}, timeoutMs } = {}) {
  const { log, lines } = recordingLog();
  return { handler: createHandler({ client, env, log, timeoutMs, lambda: localAwsLambda }), client, lines };
}

function jsonError(text) {
  try {
    JSON.parse(text);
  } catch (error) {
    return error.message;
  }
  throw new Error(`${text} is valid JSON`);
}

const body = (extra = {}) => ({ model: "echo", messages: [{ role: "user", content: "hi" }], ...extra });

const v1Event = (payload, { method = "POST", path = "/v1/chat/completions" } = {}) => ({
  resource: "/{proxy+}",
  path,
  httpMethod: method,
  headers: { "Content-Type": "application/json" },
  requestContext: { resourcePath: "/{proxy+}", httpMethod: method, stage: "dev" },
  body: payload === undefined ? null : typeof payload === "string" ? payload : JSON.stringify(payload),
  isBase64Encoded: false,
});

const v2Event = (payload, { method = "POST", path = "/v1/chat/completions", stage = "$default" } = {}) => ({
  version: "2.0",
  routeKey: "$default",
  rawPath: stage === "$default" ? path : `/${stage}${path}`,
  headers: { "content-type": "application/json" },
  requestContext: { domainName: "abc123.execute-api.us-east-1.amazonaws.com", http: { method, path }, stage },
  body: payload === undefined ? undefined : typeof payload === "string" ? payload : JSON.stringify(payload),
  isBase64Encoded: false,
});

const urlEvent = (payload, { method = "POST", path = "/v1/chat/completions", headers = {}, authorizer } = {}) => ({
  version: "2.0",
  routeKey: "$default",
  rawPath: path,
  headers: { "content-type": "application/json", ...headers },
  requestContext: { domainName: "abcdefgh.lambda-url.us-east-1.on.aws", http: { method, path }, stage: "$default", ...(authorizer ? { authorizer } : {}) },
  ...(payload === undefined ? {} : { body: Buffer.from(typeof payload === "string" ? payload : JSON.stringify(payload)).toString("base64") }),
  isBase64Encoded: true,
});

/** A buffered invocation (API Gateway): the proxy result. */
async function invokeApiGateway(handler, event, context = {}) {
  const result = JSON.parse(await invokeBuffered(handler, event, context));
  return { ...result, json: () => JSON.parse(result.body) };
}

/** A Function URL invocation read as raw bytes: the metadata prelude, 8 NUL bytes, the body. */
async function invokeUrlRaw(handler, event, context = {}) {
  const raw = Buffer.from(await invokeBuffered(handler, event, context), "utf8");
  const at = raw.indexOf(Buffer.alloc(8));
  assert.notEqual(at, -1, `no prelude delimiter in ${raw.subarray(0, 200)}`);
  const prelude = JSON.parse(raw.subarray(0, at).toString("utf8"));
  const rest = raw.subarray(at + 8).toString("utf8");
  return { ...prelude, body: rest, json: () => JSON.parse(rest) };
}

describe("event shapes and their framing", () => {
  test("API Gateway v1 and v2 (with a named stage) get the buffered proxy result", async () => {
    const { handler, client } = build();
    for (const event of [v1Event(body()), v2Event(body(), { stage: "dev" })]) {
      const reply = await invokeApiGateway(handler, event);
      assert.equal(reply.statusCode, 200);
      assert.equal(reply.headers["content-type"], "application/json");
      assert.equal(reply.isBase64Encoded, false);
      assert.deepEqual(reply.json(), COMPLETION);
    }
    assert.deepEqual(
      client.calls.map((call) => call.params),
      [body(), body()],
    );
  });

  test("a Function URL event (base64 body) is answered with the streaming prelude", async () => {
    const { handler } = build();
    const reply = await invokeUrlRaw(handler, urlEvent(body()));
    assert.deepEqual({ statusCode: reply.statusCode, headers: reply.headers }, { statusCode: 200, headers: { "content-type": "application/json" } });
    assert.deepEqual(reply.json(), COMPLETION);
  });

  test("stream: true over a Function URL is server-sent events, ending with [DONE]", async () => {
    const { handler, client } = build();
    const reply = await invokeUrlRaw(handler, urlEvent(body({ stream: true })));
    assert.equal(reply.statusCode, 200);
    assert.equal(reply.headers["content-type"], "text/event-stream; charset=utf-8");
    assert.equal(reply.body, `data: ${JSON.stringify(chunk("hel"))}\n\ndata: ${JSON.stringify(chunk("lo"))}\n\ndata: [DONE]\n\n`);
    assert.equal(client.calls[0].kind, "stream");
  });

  test("stream: true over API Gateway is the same events, buffered", async () => {
    const { handler } = build();
    const reply = await invokeApiGateway(handler, v2Event(body({ stream: true })));
    assert.equal(reply.statusCode, 200);
    assert.equal(reply.body, `data: ${JSON.stringify(chunk("hel"))}\n\ndata: ${JSON.stringify(chunk("lo"))}\n\ndata: [DONE]\n\n`);
  });

  test("something that is not an HTTP event is a 400 saying what was expected", async () => {
    const { handler } = build();
    for (const [event, message] of [
      [null, "unsupported event: expected a Function URL or API Gateway (v1 or v2) event object"],
      [{ model: "echo" }, "unsupported event: expected a Function URL or API Gateway (v1 or v2) event with an HTTP method"],
    ]) {
      const reply = await invokeApiGateway(handler, event);
      assert.equal(reply.statusCode, 400);
      assert.deepEqual(reply.json(), { error: { message, type: "invalid_request_error", param: null, code: null } });
    }
  });
});

describe("routes", () => {
  const cases = [
    ["POST", "/v1/chat/completions", 200],
    ["POST", "/chat/completions", 200],
    ["POST", "/v1/chat/completions/", 200],
    ["GET", "/v1/models", 200],
    ["GET", "/v1/models/echo", 200],
    ["POST", "/v1/embeddings", 200],
    ["GET", "/v1/chat/completions", 405, "POST"],
    ["POST", "/v1/models", 405, "GET"],
    ["DELETE", "/v1/models/echo", 405, "GET"],
    ["GET", "/v1/embeddings", 405, "POST"],
    ["POST", "/v1/completions", 404],
    ["GET", "/", 404],
    ["POST", "/v1/responses", 404],
  ];
  for (const [method, path, status, allow] of cases) {
    test(`${method} ${path} is ${status}`, async () => {
      const { handler } = build();
      const payload = path.includes("embeddings") ? { model: "embed", input: "x" } : body();
      const reply = await invokeUrlRaw(handler, urlEvent(method === "POST" ? payload : undefined, { method, path }));
      assert.equal(reply.statusCode, status);
      if (status === 405) {
        assert.equal(reply.headers.allow, allow);
        assert.deepEqual(reply.json(), {
          error: { message: `method ${method} is not allowed on ${path}: use ${allow}`, type: "invalid_request_error", param: null, code: "method_not_allowed" },
        });
      }
      if (status === 404) {
        assert.deepEqual(reply.json(), {
          error: {
            message: `Invalid URL (${method} ${path}): this endpoint serves POST /v1/chat/completions, POST /v1/embeddings and GET /v1/models`,
            type: "invalid_request_error",
            param: null,
            code: "unknown_url",
          },
        });
      }
    });
  }

  test("GET /v1/models/{model} of a model not configured is 404 model_not_found", async () => {
    const { handler } = build();
    const reply = await invokeUrlRaw(handler, urlEvent(undefined, { method: "GET", path: "/v1/models/gpt-5" }));
    assert.equal(reply.statusCode, 404);
    assert.deepEqual(reply.json(), {
      error: { message: "The model `gpt-5` does not exist or you do not have access to it.", type: "invalid_request_error", param: "model", code: "model_not_found" },
    });
  });
});

describe("request validation: 400 naming the field, nothing sent to the bridge", () => {
  const cases = [
    ["no body", undefined, null, "request body is empty: send a JSON object with model and messages"],
    // V8's own words for the syntax error differ between Node versions.
    ["invalid JSON", "{not json", null, `We could not parse the JSON body of your request: ${jsonError("{not json")}. Send a JSON object with model and messages.`],
    ["a JSON array", [1], null, "request body must be a JSON object with model and messages"],
    ["no model", { messages: [{ role: "user", content: "x" }] }, "model", 'field "model" is required and must be a non-empty string: one of the names GET /v1/models lists'],
    ["empty messages", { model: "echo", messages: [] }, "messages", 'field "messages" is required and must be a non-empty array of message objects'],
    ["a bad role", { model: "echo", messages: [{ role: "robot", content: "x" }] }, "messages[0].role", 'messages[0].role must be one of system, developer, user, assistant, tool, function (got "robot")'],
    ["a user message without content", { model: "echo", messages: [{ role: "user" }] }, "messages[0].content", "messages[0].content must be a string or an array of content parts (got undefined)"],
    ["a tool message without its call id", { model: "echo", messages: [{ role: "tool", content: "42" }] }, "messages[0].tool_call_id", "messages[0].tool_call_id must be the id of the tool call this message answers"],
    ["temperature out of range", body({ temperature: 7 }), "temperature", 'field "temperature" must be a number from 0 to 2 (got 7)'],
    ["n too large", body({ n: 500 }), "n", 'field "n" must be an integer from 1 to 128 (got 500)'],
    ["stream not a boolean", body({ stream: "yes" }), "stream", 'field "stream" must be a boolean (got "yes")'],
    ["stream_options without stream", body({ stream_options: { include_usage: true } }), "stream_options", 'field "stream_options" is only allowed when "stream" is true'],
    ["include_usage not a boolean", body({ stream: true, stream_options: { include_usage: "yes" } }), "stream_options", 'field "stream_options" must be an object such as {"include_usage": true} (got {"include_usage":"yes"})'],
    ["metadata with a number", body({ metadata: { a: 1 } }), "metadata", 'field "metadata" must be an object of string values (got {"a":1})'],
    [
      "a caller-chosen endpoint",
      body({ api_base: "http://169.254.169.254" }),
      "api_base",
      'field "api_base" is not accepted: providers, credentials and endpoints are configured in the function\'s model config',
    ],
  ];
  for (const [name, payload, param, message] of cases) {
    test(name, async () => {
      const { handler, client } = build();
      const reply = await invokeUrlRaw(handler, urlEvent(payload));
      assert.equal(reply.statusCode, 400);
      assert.deepEqual(reply.json(), { error: { message, type: "invalid_request_error", param, code: null } });
      assert.deepEqual(client.calls, []);
    });
  }

  test("accepted: tool-call turns without content, legacy functions, metadata, store and unknown fields (forwarded)", async () => {
    const { handler, client } = build();
    const payload = {
      model: "echo",
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{}" } }] },
        { role: "tool", tool_call_id: "call_1", content: "sunny" },
      ],
      functions: [{ name: "weather", parameters: { type: "object" } }],
      metadata: { team: "a" },
      store: false,
      stream: true,
      stream_options: { include_usage: true },
      temperature: null,
      some_new_field: { x: 1 },
    };
    const reply = await invokeUrlRaw(handler, urlEvent(payload));
    assert.equal(reply.statusCode, 200);
    const { temperature, ...forwarded } = payload;
    assert.deepEqual(client.calls[0].params, forwarded);
  });

  test("embeddings: input is checked", async () => {
    const { handler, client } = build();
    const reply = await invokeUrlRaw(handler, urlEvent({ model: "embed", input: [] }, { path: "/v1/embeddings" }));
    assert.equal(reply.statusCode, 400);
    assert.deepEqual(reply.json().error, {
      message: 'field "input" must be a non-empty string, an array of non-empty strings, an array of token ids or an array of token arrays',
      type: "invalid_request_error",
      param: "input",
      code: null,
    });
    const ok = await invokeUrlRaw(handler, urlEvent({ model: "embed", input: [[1, 2], [3]], encoding_format: "base64" }, { path: "/v1/embeddings" }));
    assert.equal(ok.statusCode, 200);
    assert.deepEqual(client.calls.map((call) => call.kind), ["embeddings"]);
  });
});

describe("failures in OpenAI's error shape", () => {
  const SECRET = "provider-secret-value-91c2";

  test("a provider error keeps its status, fields and Retry-After; secrets and request content are redacted", async () => {
    process.env.TEST_PROVIDER_API_KEY = SECRET;
    try {
      const client = scriptedClient({
        chat: async () => {
          throw new ProviderError({ status: 429, type: "rate_limit_error", message: `slow down ${SECRET}: you said what is my salary`, param: null, code: "rate_limit_exceeded", retry_after: "3", ours: false });
        },
      });
      const { handler } = build({ client });
      const reply = await invokeUrlRaw(handler, urlEvent(body({ messages: [{ role: "user", content: "what is my salary" }] })));
      assert.equal(reply.statusCode, 429);
      assert.equal(reply.headers["retry-after"], "3");
      assert.equal(reply.headers["x-should-retry"], undefined);
      assert.deepEqual(reply.json(), {
        error: { message: "slow down [redacted]: you said [request content]", type: "rate_limit_error", param: null, code: "rate_limit_exceeded" },
      });
    } finally {
      delete process.env.TEST_PROVIDER_API_KEY;
    }
  });

  test("our own failure reported by the bridge (a config error) is ours and not retried", async () => {
    const client = scriptedClient({
      chat: async () => {
        throw new ProviderError({ status: 500, type: "config_error", message: "models.yaml: model_list[0] (x): ...", param: null, code: "config_error", retry_after: null, ours: true });
      },
    });
    const { handler } = build({ client });
    const reply = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(reply.statusCode, 500);
    assert.equal(reply.headers["x-should-retry"], "false");
    assert.equal(reply.json().error.type, "config_error");
  });

  test("the bridge being down is a 503 of our own type with Retry-After, never a provider error", async () => {
    const client = scriptedClient({
      chat: async () => {
        throw new BridgeError("the LiteLLM bridge is restarting after repeated failures", { retryAfterMs: 2500 });
      },
    });
    const { handler } = build({ client });
    const reply = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(reply.statusCode, 503);
    assert.equal(reply.headers["retry-after"], "3");
    assert.deepEqual(reply.json(), {
      error: { message: "the LiteLLM bridge is restarting after repeated failures", type: "bridge_unavailable", param: null, code: "bridge_unavailable" },
    });
  });

  test("a model config the bridge cannot use is a 503 the SDK does not retry", async () => {
    const client = scriptedClient({
      chat: async () => {
        throw new BridgeError("the LiteLLM bridge cannot start: its model config is invalid; the function's logs say why", { code: "bridge_misconfigured" });
      },
    });
    const { handler } = build({ client });
    const reply = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(reply.statusCode, 503);
    assert.equal(reply.headers["x-should-retry"], "false");
    assert.equal(reply.headers["retry-after"], undefined);
    assert.deepEqual(reply.json(), {
      error: {
        message: "the LiteLLM bridge cannot start: its model config is invalid; the function's logs say why",
        type: "bridge_unavailable",
        param: null,
        code: "bridge_misconfigured",
      },
    });
  });

  test("the deadline is the configured timeout, capped by Lambda's remaining time minus a second; passing it is a 504", async () => {
    const client = scriptedClient({
      chat: async () => {
        throw new LiteLLMTimeoutError("the request did not complete in time");
      },
    });
    const { handler } = build({ client, timeoutMs: 30_000 });
    const reply = await invokeUrlRaw(handler, urlEvent(body()), { getRemainingTimeInMillis: () => 2_400 });
    assert.equal(client.calls[0].options.timeoutMs, 1_400);
    assert.equal(reply.statusCode, 504);
    assert.deepEqual(reply.json(), { error: { message: "the model did not answer within 1400 ms", type: "timeout", param: null, code: "timeout" } });
  });

  test("an unexpected exception is a 500 without its details", async () => {
    const client = scriptedClient({
      chat: async () => {
        throw new TypeError("cannot read /var/task/secret.js");
      },
    });
    const { handler, lines } = build({ client });
    const reply = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(reply.statusCode, 500);
    assert.deepEqual(reply.json(), {
      error: { message: "the function failed while handling this request; details are in its logs", type: "internal_error", param: null, code: null },
    });
    assert.ok(lines.some((line) => line.level === "error" && line.msg.includes("cannot read /var/task/secret.js")));
  });

  test("an error before the first chunk keeps its status; after it, the stream ends with an error event", async () => {
    const early = scriptedClient({
      stream: async function* () {
        throw new ProviderError({ status: 401, type: "authentication_error", message: "bad key", ours: false });
      },
    });
    const first = await invokeUrlRaw(build({ client: early }).handler, urlEvent(body({ stream: true })));
    assert.equal(first.statusCode, 401);
    assert.equal(first.json().error.type, "authentication_error");

    const late = scriptedClient({
      stream: async function* () {
        yield chunk("hel");
        throw new ProviderError({ status: 500, type: "server_error", message: "upstream broke", ours: false });
      },
    });
    const second = await invokeUrlRaw(build({ client: late }).handler, urlEvent(body({ stream: true })));
    assert.equal(second.statusCode, 200);
    assert.equal(
      second.body,
      `data: ${JSON.stringify(chunk("hel"))}\n\ndata: ${JSON.stringify({ error: { message: "upstream broke", type: "server_error", param: null, code: null } })}\n\n`,
    );
  });
});

describe("Lambda's payload limits", () => {
  const big = (bytes) => ({ ...COMPLETION, choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(bytes) }, finish_reason: "stop" }] });

  test("a request above 6 MB is a 413 and reaches no bridge", async () => {
    const { handler, client } = build();
    const reply = await invokeUrlRaw(handler, urlEvent(body({ messages: [{ role: "user", content: "x".repeat(6 * 1024 * 1024) }] })));
    assert.equal(reply.statusCode, 413);
    assert.match(reply.json().error.message, /^request body is \d+ bytes; Lambda accepts at most 6291456 bytes \(6 MB\): send a shorter conversation$/);
    assert.deepEqual(client.calls, []);
  });

  test("a reply without stream above 6 MB is a clear 500 (not retried) on every route, never a cut body", async () => {
    const client = scriptedClient({ chat: async () => big(6_500_000) });
    for (const invoke of [() => invokeApiGateway(build({ client }).handler, v2Event(body())), () => invokeUrlRaw(build({ client }).handler, urlEvent(body()))]) {
      const reply = await invoke();
      assert.equal(reply.statusCode, 500);
      assert.equal(reply.headers["x-should-retry"], "false");
      assert.match(
        reply.json().error.message,
        /^the reply is larger than Lambda can return \(\d+ bytes; at most 6291456 bytes buffered\): ask for fewer tokens, or use stream: true through the Function URL \(up to 20 MB\)$/,
      );
      assert.equal(reply.json().error.code, "response_too_large");
    }
  });

  test("a stream above 6 MB passes through the Function URL, not through API Gateway", async () => {
    const piece = "z".repeat(1024 * 1024);
    const client = scriptedClient({
      stream: async function* () {
        for (let i = 0; i < 7; i += 1) yield chunk(piece);
      },
    });
    const streamed = await invokeUrlRaw(build({ client }).handler, urlEvent(body({ stream: true })));
    assert.equal(streamed.statusCode, 200);
    assert.ok(streamed.body.endsWith("data: [DONE]\n\n"));
    const buffered = await invokeApiGateway(build({ client }).handler, v2Event(body({ stream: true })));
    assert.equal(buffered.statusCode, 500);
    assert.equal(buffered.json().error.code, "response_too_large");
  });

  test("a stream passing 20 MB ends with an error event instead of [DONE]", async () => {
    const piece = "y".repeat(1024 * 1024);
    const client = scriptedClient({
      stream: async function* () {
        for (let i = 0; i < 25; i += 1) yield chunk(piece);
      },
    });
    const reply = await invokeUrlRaw(build({ client }).handler, urlEvent(body({ stream: true })));
    const events = reply.body.split("\n\n").filter(Boolean);
    assert.equal(events.length, 20);
    assert.ok(Buffer.byteLength(reply.body) <= 20 * 1024 * 1024);
    const last = JSON.parse(events.at(-1).slice("data: ".length));
    assert.equal(last.error.code, "response_too_large");
    assert.match(last.error.message, /^the reply is larger than Lambda can return \(\d+ bytes; at most 20971520 bytes streamed\): ask for fewer tokens$/);
  });
});

describe("auth", () => {
  const KEY = "sk-endpoint-test-key";
  const hash = createHash("sha256").update(KEY).digest("hex");

  test("with API keys configured: no key 401, a wrong key 401, the right key passes", async () => {
    const { handler } = build({ env: { API_KEY_SHA256S: `${"0".repeat(64)}, ${hash}` } });
    const none = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().error.code, "missing_api_key");
    const wrong = await invokeUrlRaw(handler, urlEvent(body(), { headers: { authorization: "Bearer sk-wrong" } }));
    assert.equal(wrong.statusCode, 401);
    assert.deepEqual(wrong.json(), { error: { message: "Incorrect API key provided.", type: "invalid_request_error", param: null, code: "invalid_api_key" } });
    const right = await invokeUrlRaw(handler, urlEvent(body(), { headers: { authorization: `Bearer ${KEY}` } }));
    assert.equal(right.statusCode, 200);
  });

  test("a REST API event with only multiValueHeaders carries the key too", async () => {
    const { handler } = build({ env: { API_KEY_SHA256S: hash } });
    const event = { ...v1Event(body()), headers: null, multiValueHeaders: { Authorization: [`Bearer ${KEY}`] } };
    const reply = await invokeApiGateway(handler, event);
    assert.equal(reply.statusCode, 200);
  });

  test("on Lambda without keys, only requests that passed IAM (or an authorizer) are served", async () => {
    const env = { AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x", LAMBDA_TASK_ROOT: "/var/task" };
    const { handler, client } = build({ env });
    const anonymous = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(anonymous.statusCode, 401);
    assert.equal(anonymous.json().error.code, "anonymous_access_refused");
    assert.deepEqual(client.calls, []);
    const signed = await invokeUrlRaw(handler, urlEvent(body(), { authorizer: { iam: { accessKey: "AKIA...", userArn: "arn:aws:iam::1:user/x" } } }));
    assert.equal(signed.statusCode, 200);
  });

  test("hashes from an SSM parameter: GetParameter with decryption, then the same checks", async () => {
    const sent = [];
    const fakeSsm = {
      SSMClient: class {
        async send(command) {
          sent.push(command.input);
          return { Parameter: { Value: `${hash}\n` } };
        }
      },
      GetParameterCommand: class {
        constructor(input) {
          this.input = input;
        }
      },
    };
    const hashes = await loadKeyHashes({ API_KEY_SHA256S_SSM_PARAMETER: "/amplify/api-key-hashes" }, { importSsm: async () => fakeSsm });
    assert.deepEqual(sent, [{ Name: "/amplify/api-key-hashes", WithDecryption: true }]);
    assert.deepEqual(hashes, [Buffer.from(hash, "hex")]);
    await assert.rejects(loadKeyHashes({ API_KEY_SHA256S_SSM_PARAMETER: "/p" }, { importSsm: async () => ({ ...fakeSsm, SSMClient: class { async send() { return { Parameter: { Value: "nope" } }; } } }) }), {
      message: 'SSM parameter /p: "nope" is not a SHA-256 hash (64 hex digits); store sha256(key), e.g. `printf %s "$KEY" | sha256sum`',
    });
    await assert.rejects(loadKeyHashes({ API_KEY_SHA256S_SSM_PARAMETER: "/p" }, { importSsm: async () => Promise.reject(new Error("Cannot find package")) }), {
      message: "API_KEY_SHA256S_SSM_PARAMETER is set but @aws-sdk/client-ssm cannot be loaded (Cannot find package): on Lambda it is part of the runtime; locally set API_KEY_SHA256S instead",
    });
  });

  test("a key hash that is not 64 hex digits is a 500 config error that says how to fix it", async () => {
    const { handler } = build({ env: { API_KEY_SHA256S: "my-plain-key" } });
    const reply = await invokeUrlRaw(handler, urlEvent(body()));
    assert.equal(reply.statusCode, 500);
    assert.deepEqual(reply.json().error, {
      message: 'the function\'s API key configuration cannot be read: API_KEY_SHA256S: "my-plain-key" is not a SHA-256 hash (64 hex digits); store sha256(key), e.g. `printf %s "$KEY" | sha256sum`',
      type: "config_error",
      param: null,
      code: "config_error",
    });
  });
});

describe("the per-request log line", () => {
  test("names the route, the configured model, status and tokens; an unknown model is not logged raw", async () => {
    const { handler, lines } = build();
    const reply = await invokeUrlRaw(handler, urlEvent(body()), { awsRequestId: "req-1" });
    // The id also goes to the caller, where OpenAI's SDKs show it as the reply's request id.
    assert.equal(reply.headers["x-request-id"], "req-1");
    const notConfigured = scriptedClient({
      chat: async () => {
        throw new ProviderError({ status: 404, type: "invalid_request_error", code: "model_not_found", message: "The model `sk-leaked` does not exist", ours: true });
      },
    });
    const other = build({ client: notConfigured });
    await invokeUrlRaw(other.handler, urlEvent(body({ model: "sk-leaked-key-1234567" })), { awsRequestId: "req-2" });
    const [first] = lines.filter((line) => line.msg === "request");
    assert.deepEqual(
      { request_id: first.request_id, route: first.route, model: first.model, status: first.status, total_tokens: first.total_tokens, child_pid: first.child_pid },
      { request_id: "req-1", route: "POST /v1/chat/completions", model: "echo", status: 200, total_tokens: 4, child_pid: 4242 },
    );
    const [second] = other.lines.filter((line) => line.msg === "request");
    assert.equal(second.model, "(not configured)");
    assert.equal(second.status, 404);
    assert.ok(!JSON.stringify(other.lines).includes("sk-leaked-key-1234567"));
  });
});

describe("the Function URL stand-in over HTTP (server.js)", () => {
  // Buffering would never release the gate: the timeout turns that into a failure.
  test("the first event reaches the client before the handler writes the second", { timeout: 10_000 }, async () => {
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    const client = scriptedClient({
      stream: async function* () {
        yield chunk("first");
        await gate;
        yield chunk("second");
      },
    });
    const { handler } = build({ client });
    const server = await startServer({ handler, port: 0, log: { error() {} } });
    try {
      const { port } = server.address();
      const received = await new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/v1/chat/completions", headers: { "content-type": "application/json" } }, (res) => {
          const parts = [];
          res.setEncoding("utf8");
          res.on("data", (text) => {
            parts.push(text);
            // Only once the first event is here may the handler go on.
            if (parts.length === 1) release();
          });
          res.on("end", () => resolve({ status: res.statusCode, type: res.headers["content-type"], parts }));
        });
        req.on("error", reject);
        req.end(JSON.stringify(body({ stream: true })));
      });
      assert.equal(received.status, 200);
      assert.equal(received.type, "text/event-stream; charset=utf-8");
      assert.equal(received.parts[0], `data: ${JSON.stringify(chunk("first"))}\n\n`);
      assert.equal(received.parts.join(""), `data: ${JSON.stringify(chunk("first"))}\n\ndata: ${JSON.stringify(chunk("second"))}\n\ndata: [DONE]\n\n`);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });

  test("a caller that goes away does not bring the server down", { timeout: 10_000 }, async () => {
    let finished;
    const done = new Promise((resolve) => {
      finished = resolve;
    });
    const handler = localAwsLambda.streamifyResponse(async (_event, stream) => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      stream.write("too late", (error) => finished(error?.code ?? "written"));
      stream.end();
    });
    const server = await startServer({ handler, port: 0, log: { error() {} } });
    try {
      const req = http.request({ host: "127.0.0.1", port: server.address().port, method: "POST", path: "/v1/chat/completions" });
      req.on("error", () => {});
      req.end("{}");
      setTimeout(() => req.destroy(), 50);
      assert.equal(await done, "ERR_STREAM_DESTROYED");
      const reply = await fetch(`http://127.0.0.1:${server.address().port}/nowhere`);
      assert.equal(reply.status, 200);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });

  test("HttpResponseStream writes the prelude exactly: JSON, 8 NUL bytes, then the body", async () => {
    const handler = localAwsLambda.streamifyResponse(async (_event, stream) => {
      const out = localAwsLambda.HttpResponseStream.from(stream, { statusCode: 201, headers: { "x-a": "b" }, cookies: ["c=d"] });
      assert.equal(out.getContentType(), HTTP_INTEGRATION_CONTENT_TYPE);
      out.write("body");
      out.end();
    });
    const raw = await invokeBuffered(handler, {}, {});
    assert.equal(raw, `{"statusCode":201,"headers":{"x-a":"b"},"cookies":["c=d"]}${"\0".repeat(8)}body`);
  });

  test("a handler that fails before writing is a 502, as from a Function URL", async () => {
    const handler = localAwsLambda.streamifyResponse(async () => {
      throw new Error("boom");
    });
    const server = http.createServer((req, res) => invokeFunctionUrl(handler, {}, {}, res).catch(() => {}));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const reply = await fetch(`http://127.0.0.1:${server.address().port}/`);
      assert.equal(reply.status, 502);
      assert.deepEqual(await reply.json(), { Message: "Internal Server Error" });
    } finally {
      server.close();
    }
  });
});
