//! The endpoint's routes, as in OpenAI's API <https://platform.openai.com/docs/api-reference>.
//!
//! Paths are accepted with and without the `/v1` prefix, so both `base_url=".../v1"` (the SDKs'
//! convention) and a bare base URL work.

import { HttpError } from "./errors.js";

/** `[method, path, kind]`: `kind` is what the bridge is asked (chat, embeddings, models). */
const ROUTES = [
  ["POST", "/chat/completions", "chat"],
  ["POST", "/embeddings", "embeddings"],
  ["GET", "/models", "models"],
];
/** `GET /v1/models/{model}`: one model of the list. */
const MODEL_PATH = /^\/models\/(.+)$/;

function normalize(path) {
  let normalized = path.replace(/\/{2,}/g, "/");
  if (normalized.length > 1 && normalized.endsWith("/")) normalized = normalized.slice(0, -1);
  if (normalized === "/v1") return "/";
  if (normalized.startsWith("/v1/")) normalized = normalized.slice(3);
  return normalized;
}

/**
 * The route of a request: `{kind, name, model?}` (`name` like `POST /v1/chat/completions`, for logs).
 * Throws 404 for an unknown path and 405 (with an `allow` header) for a known path and another method.
 */
export function route(method, path) {
  const normalized = normalize(path);
  const model = MODEL_PATH.exec(normalized);
  if (model) {
    if (method !== "GET") throw wrongMethod(method, path, ["GET"]);
    return { kind: "model", name: "GET /v1/models/{model}", model: decodeURIComponent(model[1]) };
  }
  const matches = ROUTES.filter(([, routePath]) => routePath === normalized);
  if (matches.length === 0) {
    throw new HttpError(404, `Invalid URL (${method} ${path}): this endpoint serves POST /v1/chat/completions, POST /v1/embeddings and GET /v1/models`, {
      code: "unknown_url",
    });
  }
  const match = matches.find(([routeMethod]) => routeMethod === method);
  if (!match) throw wrongMethod(method, path, matches.map(([routeMethod]) => routeMethod));
  return { kind: match[2], name: `${match[0]} /v1${match[1]}` };
}

function wrongMethod(method, path, allowed) {
  return new HttpError(405, `method ${method} is not allowed on ${path}: use ${allowed.join(" or ")}`, {
    code: "method_not_allowed",
    headers: { allow: allowed.join(", ") },
  });
}
