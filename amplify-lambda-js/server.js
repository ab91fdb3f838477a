//! The local server (`npm start`): serves the Lambda handler over HTTP on 127.0.0.1.
//!
//! Each HTTP request becomes a Function URL event (payload format 2.0) and runs through
//! `invokeFunctionUrl` (http/streaming.js), the same streaming path as a Function URL with invoke
//! mode RESPONSE_STREAM on AWS: the handler, the bridge and the model config are the deployed ones.
//! `PORT` picks the port (default 8080; `0` picks a free one); the first line on stdout is
//! `listening on http://127.0.0.1:<port>`. `MODELS_CONFIG` selects the model config as on Lambda,
//! `LITELLM_PYTHON` the interpreter. Auth is off unless API keys are configured (`API_KEY_SHA256S`).

import { randomUUID } from "node:crypto";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { MAX_REQUEST_BYTES } from "./http/limits.js";
import { invokeFunctionUrl } from "./http/streaming.js";

const HOST = "127.0.0.1";
/** serverless.yml gives the function 60 s; the local context counts down from the same. */
const FUNCTION_TIMEOUT_MS = 60_000;
/** Bodies above this are not read at all (the handler refuses anything above 6 MB with a 413). */
const READ_LIMIT_BYTES = MAX_REQUEST_BYTES + 1024 * 1024;
/** Function URLs pass these content types as text; anything else is base64-encoded. */
const TEXT_TYPES = /^(text\/|application\/(json|[\w.+-]*\+json|xml|x-www-form-urlencoded|javascript))/i;
/** The local stand-in's Function URL id; the host has the Function URL shape the handler checks. */
const URL_ID = "local";

function parsePort(text) {
  if (text === undefined || text === "") return 8080;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be an integer from 0 to 65535 (0 picks a free port), got ${JSON.stringify(text)}`);
  }
  return port;
}

/** A Function URL event for an HTTP request <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads>. */
export function functionUrlEvent(req, body, requestId) {
  const url = new URL(req.url, "http://localhost");
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(",") : value;
  const cookies = headers.cookie ? headers.cookie.split(/;\s*/).filter(Boolean) : undefined;
  delete headers.cookie;
  const query = {};
  for (const [name, value] of url.searchParams) query[name] = name in query ? `${query[name]},${value}` : value;
  const text = body.length === 0 || TEXT_TYPES.test(headers["content-type"] ?? "");
  const now = new Date();
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    ...(cookies ? { cookies } : {}),
    headers,
    ...(Object.keys(query).length > 0 ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: "anonymous",
      apiId: URL_ID,
      domainName: `${URL_ID}.lambda-url.local.on.aws`,
      domainPrefix: URL_ID,
      http: { method: req.method, path: url.pathname, protocol: `HTTP/${req.httpVersion}`, sourceIp: req.socket.remoteAddress, userAgent: headers["user-agent"] ?? "" },
      requestId,
      routeKey: "$default",
      stage: "$default",
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(body.length > 0 ? { body: text ? body.toString("utf8") : body.toString("base64") } : {}),
    isBase64Encoded: body.length > 0 && !text,
  };
}

function lambdaContext(requestId) {
  const deadline = Date.now() + FUNCTION_TIMEOUT_MS;
  return {
    awsRequestId: requestId,
    functionName: "amplify-lambda-js-local-chat",
    functionVersion: "$LATEST",
    memoryLimitInMB: "1024",
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > READ_LIMIT_BYTES) {
        req.pause();
        reject(Object.assign(new Error("too large"), { size }));
        return;
      }
      parts.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });
}

/** Starts the server; resolves to the `http.Server` once it listens. `handler` may be a promise of it. */
export async function startServer({ handler, port = 8080, host = HOST, log = console } = {}) {
  const server = http.createServer(async (req, res) => {
    const requestId = randomUUID();
    let body;
    try {
      body = await readBody(req);
    } catch (error) {
      if (error.size) {
        res.writeHead(413, { "content-type": "application/json", connection: "close" });
        res.end(
          JSON.stringify({
            error: { message: `request body is larger than ${MAX_REQUEST_BYTES} bytes (6 MB), Lambda's limit: send a shorter conversation`, type: "invalid_request_error", param: null, code: "request_too_large" },
          }),
        );
      } else res.destroy();
      return;
    }
    try {
      await invokeFunctionUrl(await handler, functionUrlEvent(req, body, requestId), lambdaContext(requestId), res);
    } catch (error) {
      log.error(`local server: the handler failed: ${error?.stack ?? error}`);
    }
  });
  // Server-sent events may pause longer than Node's default timeouts between chunks.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}

async function main() {
  const port = parsePort(process.env.PORT);
  // Imported after the listening line, which must be the first line on stdout: the handler module
  // starts the bridge as it loads, and its log lines go to stdout too. Requests wait for it.
  let resolveHandler;
  const handler = new Promise((resolve) => {
    resolveHandler = resolve;
  });
  const server = await startServer({ handler, port });
  process.stdout.write(`listening on http://${HOST}:${server.address().port}\n`);
  resolveHandler((await import("./index.js")).handler);
  // litellm/startup.js (loaded with index.js) stops the bridge and exits on SIGINT and SIGTERM;
  // here the server stops taking requests.
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.once(signal, () => {
      server.close();
      server.closeAllConnections();
    });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((error) => {
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(1);
  });
}
