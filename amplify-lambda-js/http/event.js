//! Reads an HTTP request out of the Lambda events this function answers: Function URLs and API
//! Gateway HTTP APIs (payload format 2.0), and API Gateway REST APIs (payload format 1.0)
//! <https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads>,
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>.

import { HttpError } from "./errors.js";
import { MAX_REQUEST_BYTES } from "./limits.js";

/** Function URL hosts: `<url-id>.lambda-url.<region>.on.aws`. */
const FUNCTION_URL_HOST = /\.lambda-url\.[a-z0-9-]+\.on\.aws$/;

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * Which kind of event this is: `function-url` (answered by streaming), `api-gateway-v2`,
 * `api-gateway-v1` (answered buffered), or null for anything else. Never throws, so even a
 * request refused while it is read is answered in the framing its invoker expects.
 */
export function eventSource(event) {
  if (!isObject(event)) return null;
  if (typeof event.httpMethod === "string") return "api-gateway-v1";
  const context = isObject(event.requestContext) ? event.requestContext : {};
  if (!isObject(context.http) || typeof context.http.method !== "string") return null;
  const domain = typeof context.domainName === "string" ? context.domainName : "";
  return FUNCTION_URL_HOST.test(domain) ? "function-url" : "api-gateway-v2";
}

/**
 * The request in an event: `{source, method, path, headers, body (Buffer or null), authorizer}`.
 *
 * `source` is `function-url` (answered by streaming), `api-gateway-v2` or `api-gateway-v1`
 * (answered buffered). Header names are lower-case. Throws an HttpError 400 for an event of
 * another shape and 413 for a body above Lambda's request limit.
 */
export function readEvent(event) {
  if (!isObject(event)) throw new HttpError(400, "unsupported event: expected a Function URL or API Gateway (v1 or v2) event object");
  const context = isObject(event.requestContext) ? event.requestContext : {};
  const source = eventSource(event);
  let method;
  let path;
  if (source === "api-gateway-v1") {
    method = event.httpMethod;
    path = typeof event.path === "string" ? event.path : "/";
  } else if (source !== null) {
    method = context.http.method;
    path = typeof event.rawPath === "string" ? event.rawPath : typeof context.http.path === "string" ? context.http.path : "/";
    // An HTTP API stage other than $default is the first segment of rawPath.
    const stage = typeof context.stage === "string" ? context.stage : "$default";
    if (source === "api-gateway-v2" && stage !== "$default" && path.startsWith(`/${stage}/`)) path = path.slice(stage.length + 1);
  } else {
    throw new HttpError(400, "unsupported event: expected a Function URL or API Gateway (v1 or v2) event with an HTTP method");
  }
  const headers = {};
  // REST APIs may send only multiValueHeaders; a header given both ways keeps the single value.
  for (const [name, values] of Object.entries(isObject(event.multiValueHeaders) ? event.multiValueHeaders : {})) {
    if (Array.isArray(values) && values.every((value) => typeof value === "string")) headers[name.toLowerCase()] = values.join(",");
  }
  for (const [name, value] of Object.entries(isObject(event.headers) ? event.headers : {})) {
    if (typeof value === "string") headers[name.toLowerCase()] = value;
  }
  return {
    source,
    method: method.toUpperCase(),
    path,
    headers,
    body: readBody(event),
    authorizer: isObject(context.authorizer) ? context.authorizer : null,
    requestId: typeof context.requestId === "string" ? context.requestId : null,
  };
}

function readBody(event) {
  if (event.body === undefined || event.body === null || event.body === "") return null;
  if (typeof event.body !== "string") throw new HttpError(400, "request body must be a string in the event");
  // Checked before decoding, so an oversized body is never copied: base64 is 4 characters per 3 bytes.
  const approximate = event.isBase64Encoded ? Math.floor((event.body.length * 3) / 4) : Buffer.byteLength(event.body, "utf8");
  if (approximate > MAX_REQUEST_BYTES) throw tooLarge(approximate);
  const body = event.isBase64Encoded ? Buffer.from(event.body, "base64") : Buffer.from(event.body, "utf8");
  if (body.length > MAX_REQUEST_BYTES) throw tooLarge(body.length);
  return body;
}

function tooLarge(bytes) {
  return new HttpError(413, `request body is ${bytes} bytes; Lambda accepts at most ${MAX_REQUEST_BYTES} bytes (6 MB): send a shorter conversation`, {
    code: "request_too_large",
  });
}

/** Parses a JSON request body; a missing or malformed body is a 400 saying what to send. */
export function parseJsonBody(body, what) {
  if (body === null) throw new HttpError(400, `request body is empty: send a JSON object ${what}`);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `We could not parse the JSON body of your request: ${error.message}. Send a JSON object ${what}.`);
  }
}
