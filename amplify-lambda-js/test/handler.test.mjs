//! The `chat` Lambda handler: event shapes, validation, replies and error mapping.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createHandler } from "../index.js";
import { LiteLLMClient } from "../litellm/litellmClient.js";
import { recordingLogger } from "./support/logger.mjs";
import { startOpenAIServer } from "./support/openaiServer.mjs";
import { testPython } from "./support/python.mjs";

// Not in a well-known key format, so only the environment-based redaction can catch it.
const FAKE_KEY = "fake-provider-key-7f3a9c1e";

let server;
let client;
let handler;
const savedEnv = {};

before(async () => {
  const { python } = await testPython();
  server = await startOpenAIServer();
  // On Lambda, provider endpoints and keys come from the function's environment.
  for (const [name, value] of Object.entries({ OPENAI_API_KEY: FAKE_KEY, OPENAI_API_BASE: server.baseUrl })) {
    savedEnv[name] = process.env[name];
    process.env[name] = value;
  }
  client = new LiteLLMClient({ python, logger: recordingLogger() });
  handler = createHandler({ client, logger: recordingLogger() });
});

after(async () => {
  await client?.shutdown();
  await server?.close();
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

const chat = (content, extra = {}) => ({ model: "openai/echo", messages: [{ role: "user", content }], ...extra });

const v1Event = (body, method = "POST") => ({
  resource: "/chat",
  path: "/chat",
  httpMethod: method,
  headers: { "content-type": "application/json" },
  requestContext: { resourcePath: "/chat", httpMethod: method, stage: "dev" },
  body: typeof body === "string" ? body : JSON.stringify(body),
  isBase64Encoded: false,
});

const v2Event = (body, method = "POST") => ({
  version: "2.0",
  routeKey: "POST /chat",
  rawPath: "/chat",
  headers: { "content-type": "application/json" },
  requestContext: { http: { method, path: "/chat" }, stage: "$default" },
  body: typeof body === "string" ? body : JSON.stringify(body),
  isBase64Encoded: false,
});

const functionUrlEvent = (body) => ({
  version: "2.0",
  routeKey: "$default",
  rawPath: "/",
  headers: { "content-type": "application/json" },
  requestContext: { domainName: "abc.lambda-url.us-east-1.on.aws", http: { method: "POST", path: "/" } },
  body: Buffer.from(JSON.stringify(body)).toString("base64"),
  isBase64Encoded: true,
});

const parse = (response) => JSON.parse(response.body);

describe("event shapes", () => {
  for (const [name, makeEvent] of [
    ["API Gateway v1", v1Event],
    ["API Gateway v2", v2Event],
    ["Function URL (base64 body)", functionUrlEvent],
  ]) {
    test(`${name}: answers with an OpenAI chat completion`, async () => {
      const response = await handler(makeEvent(chat(`via ${name}`, { temperature: 0.5, max_tokens: 20 })), {});
      assert.equal(response.statusCode, 200);
      assert.equal(response.headers["content-type"], "application/json");
      const body = parse(response);
      assert.equal(body.object, "chat.completion");
      assert.equal(body.choices[0].message.content, `echo: via ${name}`);
      assert.equal(server.requests.at(-1).authorization, `Bearer ${FAKE_KEY}`);
    });
  }

  test("stream: true returns the server-sent events body, ending with [DONE]", async () => {
    const response = await handler(v2Event(chat("streamed words here", { stream: true })), {});
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["content-type"], "text/event-stream; charset=utf-8");
    const events = response.body.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    const chunks = events.slice(0, -1).map((event) => {
      assert.ok(event.startsWith("data: "), event);
      return JSON.parse(event.slice("data: ".length));
    });
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? "").join(""), "echo: streamed words here");
  });
});

describe("invalid requests get a 400 that says what is wrong", () => {
  const cases = [
    ["no body", { ...v2Event(""), body: undefined }, "request body is empty: send a JSON object with model and messages"],
    ["invalid JSON", v2Event("{not json"), /^request body is not valid JSON: /],
    ["a JSON array", v2Event([1]), "request body must be a JSON object with model and messages"],
    ["no model", v2Event({ messages: [{ role: "user", content: "x" }] }), 'field "model" is required and must be a non-empty string such as "openai/gpt-4o-mini"'],
    ["empty messages", v2Event({ model: "openai/echo", messages: [] }), 'field "messages" is required and must be a non-empty array of {role, content} objects'],
    [
      "a bad role",
      v2Event({ model: "openai/echo", messages: [{ role: "robot", content: "x" }] }),
      'messages[0].role must be one of system, user, assistant, tool, function, developer (got "robot")',
    ],
    ["missing content", v2Event({ model: "openai/echo", messages: [{ role: "user" }] }), "messages[0].content must be a string or an array of content parts"],
    ["temperature out of range", v2Event(chat("x", { temperature: 7 })), 'field "temperature" must be a number from 0 to 2 (got 7)'],
    ["max_tokens not an integer", v2Event(chat("x", { max_tokens: "ten" })), 'field "max_tokens" must be a positive integer (got "ten")'],
    ["stream not a boolean", v1Event(chat("x", { stream: "yes" })), 'field "stream" must be a boolean (got "yes")'],
    ["an unknown field", v1Event(chat("x", { colour: "blue" })), /^unknown field "colour": accepted fields are model, messages, stream, temperature, /],
    [
      "a caller-chosen endpoint",
      v1Event(chat("x", { api_base: "http://169.254.169.254" })),
      'field "api_base" is not accepted: provider credentials and endpoints are configured in the function\'s environment',
    ],
    ["an event that is not HTTP", { model: "openai/echo", messages: [] }, "unsupported event: expected an API Gateway (v1 or v2) or Function URL event with an HTTP method"],
    ["no event at all", null, "unsupported event: expected an API Gateway (v1 or v2) or Function URL event object"],
  ];
  for (const [name, event, expected] of cases) {
    test(name, async () => {
      const before = server.requests.length;
      const response = await handler(event, {});
      assert.equal(response.statusCode, 400);
      const { error } = parse(response);
      assert.equal(error.type, "invalid_request_error");
      if (typeof expected === "string") assert.equal(error.message, expected);
      else assert.match(error.message, expected);
      assert.equal(server.requests.length, before, "nothing reached the provider");
    });
  }

  test("a GET gets a 405 with Allow: POST", async () => {
    const response = await handler(v1Event(chat("x"), "GET"), {});
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, "POST");
    assert.equal(parse(response).error.message, "method GET is not allowed: send the chat request with POST");
  });
});

describe("failures are mapped to 502, 504 and 500", () => {
  test("a provider error is a 502 with the provider status and a redacted message", async () => {
    const question = "what is my colleague's salary?";
    const message = encodeURIComponent(`Incorrect API key provided: ${FAKE_KEY}. You asked: ${question}`);
    const response = await handler(v2Event(chat(question, { model: `openai/echo?status=401&message=${message}` })), {});
    assert.equal(response.statusCode, 502);
    const { error } = parse(response);
    assert.equal(error.type, "provider_error");
    assert.equal(error.provider_status, 401);
    assert.equal(error.provider, "openai");
    assert.equal(error.code, "AuthenticationError");
    assert.match(error.message, /Incorrect API key provided: \[redacted\]\. You asked: \[request content\]/);
    assert.ok(!response.body.includes(FAKE_KEY), response.body);
    assert.ok(!response.body.includes(question), response.body);
  });

  test("a rate limit is a 502 carrying 429", async () => {
    const response = await handler(v2Event(chat("x", { model: "openai/echo?status=429" })), {});
    assert.equal(response.statusCode, 502);
    assert.equal(parse(response).error.provider_status, 429);
  });

  test("a request past the configured deadline is a 504", async () => {
    const slowHandler = createHandler({ client, timeoutMs: 300, logger: recordingLogger() });
    const response = await slowHandler(v2Event(chat("x", { model: "openai/echo?delay=3000" })), {});
    assert.equal(response.statusCode, 504);
    assert.deepEqual(parse(response).error, { message: "the model did not answer within 300 ms", type: "timeout" });
  });

  test("the deadline leaves a second of the Lambda's remaining time to answer", async () => {
    const response = await handler(v2Event(chat("x", { model: "openai/echo?delay=3000" })), { getRemainingTimeInMillis: () => 1_400 });
    assert.equal(response.statusCode, 504);
    assert.equal(parse(response).error.message, "the model did not answer within 400 ms");
  });

  test("a missing interpreter is a 500 that says how to fix it, with no unhandled rejection", async () => {
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    const broken = new LiteLLMClient({ python: { executable: "/opt/python/bin/python3.11-missing", source: "lambda", env: {} }, logger: recordingLogger() });
    try {
      const response = await createHandler({ client: broken, logger: recordingLogger() })(v2Event(chat("x")), {});
      assert.equal(response.statusCode, 500);
      assert.deepEqual(parse(response).error, {
        type: "bridge_error",
        message:
          'the LiteLLM bridge is unavailable: python interpreter "/opt/python/bin/python3.11-missing" (chosen from lambda) could not be started (ENOENT): ' +
          "attach the pythonLiteLLM layer to the function (serverless.yml) so /opt/python exists",
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      await broken.shutdown();
    }
  });
});
