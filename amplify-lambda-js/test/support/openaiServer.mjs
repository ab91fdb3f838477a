//! A local OpenAI-compatible upstream for tests and benchmarks (127.0.0.1 only).
//!
//! `POST /v1/chat/completions` answers "echo: <last message content>"; `POST /v1/embeddings`
//! answers a deterministic vector per input. The model name carries options as a query string,
//! e.g. `echo?delay=500&status=429&retry_after=7`:
//!   delay=MS         wait before answering;
//!   status=CODE      fail with this HTTP status and an OpenAI-style error body (message=, type=,
//!                    code=, param= set its fields; retry_after=S adds a Retry-After header);
//!   size=BYTES       answer with exactly BYTES characters of a known pattern (see `bigContent`);
//!   pause=MS         streaming: wait this long between chunks.
//! Chat also follows the request: `n` choices; with `tools` (and no tool result yet) a call of the
//! first tool with arguments `{"echo": <content>}`, after a `tool` message "tool said: <content>";
//! `response_format` json_object gives `{"echo": <content>}`, json_schema an object with each
//! required string property set to the echo; `stream_options.include_usage` a final usage chunk.
//!
//! Run as a script (`node openaiServer.mjs`), it prints `listening on http://127.0.0.1:<port>`
//! and serves until stopped; `GET /_calls` reports `{count, requests}` (each request without its
//! body, with `fields`, the body's top-level field names) so tests in another process can count
//! upstream calls and see what was forwarded.

import http from "node:http";
import { fileURLToPath } from "node:url";

/** The content a `size=BYTES` model answers with. */
export function bigContent(bytes) {
  const pattern = "0123456789abcdef";
  return pattern.repeat(Math.ceil(bytes / pattern.length)).slice(0, bytes);
}

function lastContent(messages) {
  const last = Array.isArray(messages) ? messages[messages.length - 1] : undefined;
  return typeof last?.content === "string" ? last.content : JSON.stringify(last?.content ?? null);
}

function parseModel(model) {
  const [name, query = ""] = String(model).split("?", 2);
  const options = new URLSearchParams(query);
  const number = (key, fallback = null) => (options.has(key) ? Number(options.get(key)) : fallback);
  return {
    name,
    delay: number("delay", 0),
    pause: number("pause", 0),
    status: number("status"),
    size: number("size"),
    retryAfter: options.get("retry_after"),
    message: options.get("message"),
    type: options.get("type"),
    code: options.get("code"),
    param: options.get("param"),
  };
}

/** A deterministic 8-dimensional vector for a text. */
function vector(text) {
  const values = [];
  for (let i = 0; i < 8; i += 1) {
    let hash = 2166136261 ^ i;
    for (const char of String(text)) hash = Math.imul(hash ^ char.codePointAt(0), 16777619);
    values.push(((hash >>> 0) % 2000) / 1000 - 1);
  }
  return values;
}

/**
 * Starts the server on an ephemeral port of 127.0.0.1.
 *
 * Returns `{ url, baseUrl, requests, expectRequests(count), close() }`: `baseUrl` is the `/v1` URL
 * to give LiteLLM as `api_base`; `requests` records `{path, model, authorization, stream, chunkTimes, body}` of
 * every request; `expectRequests(count)` resolves once `count` more requests have arrived.
 */
export async function startOpenAIServer({ port = 0 } = {}) {
  const requests = [];
  let waiters = [];
  let counter = 0;
  const timers = new Set();
  const sleep = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on("data", (chunk) => parts.push(chunk));
    req.on("end", async () => {
      if (req.method === "GET" && req.url === "/_calls") {
        res.writeHead(200, { "content-type": "application/json" });
        // Bodies can be megabytes: only their top-level fields are reported.
        const summary = requests.map(({ body, ...rest }) => ({ ...rest, fields: Object.keys(body ?? {}).sort() }));
        res.end(JSON.stringify({ count: requests.length, requests: summary }));
        return;
      }
      const route = req.method === "POST" ? { "/v1/chat/completions": "chat", "/v1/embeddings": "embeddings" }[req.url] : undefined;
      if (!route) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}`, type: "not_found" } }));
        return;
      }
      let body;
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8"));
      } catch {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "invalid JSON", type: "invalid_request_error" } }));
        return;
      }
      // chunkTimes: when each streamed chunk was written (ms since the epoch).
      const record = { path: req.url, model: body.model, authorization: req.headers.authorization, stream: Boolean(body.stream), chunkTimes: [], body };
      requests.push(record);
      waiters = waiters.filter((waiter) => {
        if (requests.length < waiter.target) return true;
        waiter.resolve();
        return false;
      });
      const options = parseModel(body.model);
      if (options.delay > 0) await sleep(options.delay);
      if (res.destroyed) return;
      counter += 1;
      if (options.status !== null) fail(res, options);
      else if (route === "embeddings") embed(res, body);
      else await respond(res, body, options, counter, sleep, record);
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    baseUrl: `${url}/v1`,
    requests,
    expectRequests: (count = 1) => {
      const target = requests.length + count;
      return new Promise((resolve) => waiters.push({ target, resolve }));
    },
    close: () =>
      new Promise((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function fail(res, options) {
  const headers = { "content-type": "application/json" };
  if (options.retryAfter) headers["retry-after"] = options.retryAfter;
  res.writeHead(options.status, headers);
  const message = options.message ?? `the test server was asked to fail with status ${options.status}`;
  res.end(JSON.stringify({ error: { message, type: options.type ?? "test_error", param: options.param, code: options.code ?? String(options.status) } }));
}

function embed(res, body) {
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  const data = inputs.map((input, index) => {
    const values = vector(typeof input === "string" ? input : JSON.stringify(input));
    const embedding = body.encoding_format === "base64" ? Buffer.from(new Float32Array(values).buffer).toString("base64") : values;
    return { object: "embedding", index, embedding };
  });
  const tokens = inputs.reduce((sum, input) => sum + String(input).split(" ").length, 0);
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ object: "list", data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }));
}

/** The assistant message for a chat request (content or a tool call). */
function answer(body, options, choice) {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const text = lastContent(messages);
  const last = messages[messages.length - 1];
  if (options.size !== null) return { role: "assistant", content: bigContent(options.size) };
  if (Array.isArray(body.tools) && body.tools.length > 0 && last?.role !== "tool") {
    const name = body.tools[0]?.function?.name ?? "tool";
    return {
      role: "assistant",
      content: null,
      tool_calls: [{ id: `call_${choice}_${name}`, type: "function", function: { name, arguments: JSON.stringify({ echo: text }) } }],
    };
  }
  if (last?.role === "tool") return { role: "assistant", content: `tool said: ${text}` };
  const format = body.response_format;
  if (format?.type === "json_object") return { role: "assistant", content: JSON.stringify({ echo: `echo: ${text}` }) };
  if (format?.type === "json_schema") {
    const schema = format.json_schema?.schema ?? {};
    const object = {};
    for (const key of schema.required ?? Object.keys(schema.properties ?? {})) object[key] = `echo: ${text}`;
    return { role: "assistant", content: JSON.stringify(object) };
  }
  const suffix = choice > 0 ? ` (choice ${choice})` : "";
  return { role: "assistant", content: `echo: ${text}${suffix}` };
}

async function respond(res, body, options, number, sleep, record) {
  const count = Number.isInteger(body.n) && body.n > 0 ? body.n : 1;
  const choices = Array.from({ length: count }, (_, index) => answer(body, options, index));
  const id = `chatcmpl-test-${number}`;
  const created = Math.floor(Date.now() / 1000);
  const completionTokens = choices.reduce((sum, message) => sum + String(message.content ?? "").split(" ").length, 0);
  const usage = { prompt_tokens: 5, completion_tokens: completionTokens, total_tokens: 5 + completionTokens };
  const finish = (message) => (message.tool_calls ? "tool_calls" : "stop");
  if (!body.stream) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id,
        object: "chat.completion",
        created,
        model: body.model,
        choices: choices.map((message, index) => ({ index, message, logprobs: null, finish_reason: finish(message) })),
        usage,
      }),
    );
    return;
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const chunk = (index, delta, finishReason) => ({
    id,
    object: "chat.completion.chunk",
    created,
    model: body.model,
    choices: [{ index, delta, logprobs: null, finish_reason: finishReason }],
  });
  const events = [];
  choices.forEach((message, index) => {
    if (message.tool_calls) {
      events.push(chunk(index, { role: "assistant", content: "" }, null));
      events.push(chunk(index, { tool_calls: message.tool_calls.map((call, at) => ({ index: at, ...call })) }, null));
    } else {
      // With pauses the first chunk carries text too, so no layer can hold it back as empty.
      const words = String(message.content).split(/(?<= )/);
      if (options.pause > 0) events.push(chunk(index, { role: "assistant", content: words.shift() }, null));
      else events.push(chunk(index, { role: "assistant", content: "" }, null));
      for (const word of words) events.push(chunk(index, { content: word }, null));
    }
    events.push(chunk(index, {}, finish(message)));
  });
  if (body.stream_options?.include_usage) events.push({ id, object: "chat.completion.chunk", created, model: body.model, choices: [], usage });
  for (const [at, event] of events.entries()) {
    if (at > 0 && options.pause > 0) await sleep(options.pause);
    if (res.destroyed) return;
    record.chunkTimes.push(Date.now());
    res.write(`data: ${JSON.stringify(event)}\n\n`);
  }
  res.end("data: [DONE]\n\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const server = await startOpenAIServer({ port: Number(process.env.PORT ?? 0) });
  process.stdout.write(`listening on ${server.url}\n`);
  const stop = () => server.close().then(() => process.exit(0));
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
