//! A local OpenAI-compatible chat completions server for tests and benchmarks (127.0.0.1 only).
//!
//! `POST /v1/chat/completions` answers "echo: <last message content>". The model name carries
//! options as a query string, e.g. `openai/echo?delay=500&status=429&size=10485760`:
//!   delay=MS     wait before answering;
//!   status=CODE  fail with this HTTP status and an OpenAI-style error body (message=TEXT sets it);
//!   size=BYTES   answer with exactly BYTES characters of a known pattern (see `bigContent`).
//! Requests with `"stream": true` get server-sent events, one chunk per word.

import http from "node:http";

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
  return {
    name,
    delay: Number(options.get("delay") ?? 0),
    status: options.has("status") ? Number(options.get("status")) : null,
    size: options.has("size") ? Number(options.get("size")) : null,
    message: options.get("message"),
  };
}

/**
 * Starts the server on an ephemeral port of 127.0.0.1.
 *
 * Returns `{ url, baseUrl, requests, expectRequests(count), close() }`: `baseUrl` is the `/v1` URL
 * to give LiteLLM as `api_base`; `requests` records `{model, authorization, stream}` of every
 * request; `expectRequests(count)` resolves once `count` more requests have arrived.
 */
export async function startOpenAIServer() {
  const requests = [];
  let waiters = [];
  let counter = 0;
  const timers = new Set();
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on("data", (chunk) => parts.push(chunk));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
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
      const record = { model: body.model, authorization: req.headers.authorization, stream: Boolean(body.stream) };
      requests.push(record);
      waiters = waiters.filter((waiter) => {
        if (requests.length < waiter.target) return true;
        waiter.resolve();
        return false;
      });
      const options = parseModel(body.model);
      const answer = () => respond(res, body, options, ++counter);
      if (options.delay > 0) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer();
        }, options.delay);
        timers.add(timer);
      } else {
        answer();
      }
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;
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

function respond(res, body, options, number) {
  if (res.destroyed) return;
  if (options.status !== null) {
    res.writeHead(options.status, { "content-type": "application/json" });
    const message = options.message ?? `the test server was asked to fail with status ${options.status}`;
    res.end(JSON.stringify({ error: { message, type: "test_error", code: String(options.status) } }));
    return;
  }
  const content = options.size !== null ? bigContent(options.size) : `echo: ${lastContent(body.messages)}`;
  const id = `chatcmpl-test-${number}`;
  const created = Math.floor(Date.now() / 1000);
  const usage = { prompt_tokens: 5, completion_tokens: content.split(" ").length, total_tokens: 5 + content.split(" ").length };
  if (body.stream) {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const words = content.split(/(?<= )/);
    const chunk = (delta, finish) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: body.model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    res.write(`data: ${JSON.stringify(chunk({ role: "assistant", content: "" }, null))}\n\n`);
    for (const word of words) res.write(`data: ${JSON.stringify(chunk({ content: word }, null))}\n\n`);
    res.write(`data: ${JSON.stringify(chunk({}, "stop"))}\n\n`);
    res.end("data: [DONE]\n\n");
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(
    JSON.stringify({
      id,
      object: "chat.completion",
      created,
      model: body.model,
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
      usage,
    }),
  );
}
