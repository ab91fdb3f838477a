//! The handler behind index.js: one streaming handler for every route (see index.js for the
//! contract). Built by `createHandler` so tests can give it their own client, environment and logger.

import { beginRequest, logger } from "../common/log.js";
import { onLambda } from "../common/pythonExec.js";
import { modelForLog, redactMessage } from "../common/redact.js";
import { authorize, loadKeyHashes } from "./auth.js";
import { HttpError } from "./errors.js";
import { eventSource, parseJsonBody, readEvent } from "./event.js";
import { ReplyTooLarge, replyWriter, tooLargeError } from "./respond.js";
import { route } from "./routes.js";
import { awslambda } from "./streaming.js";
import { validateChat, validateEmbeddings } from "./validate.js";
import { BridgeError, getSharedClient, LiteLLMTimeoutError, ProviderError } from "../litellm/litellmClient.js";

/** Default deadline per request when the Lambda context gives none (override: LITELLM_TIMEOUT_MS). */
const DEFAULT_TIMEOUT_MS = 55_000;
/** Time kept back from the Lambda deadline to answer 504 before Lambda ends the invocation. */
const DEADLINE_MARGIN_MS = 1_000;

function deadlineFor(context, configured) {
  const remaining = typeof context?.getRemainingTimeInMillis === "function" ? context.getRemainingTimeInMillis() : Infinity;
  return Math.max(100, Math.min(configured, remaining - DEADLINE_MARGIN_MS));
}

/** Strings of the request that must not come back in an error message (providers echo them). */
function requestStrings(params) {
  const strings = [];
  for (const message of Array.isArray(params?.messages) ? params.messages : []) {
    if (typeof message?.content === "string") strings.push(message.content);
    else if (Array.isArray(message?.content)) for (const part of message.content) if (typeof part?.text === "string") strings.push(part.text);
  }
  if (typeof params?.input === "string") strings.push(params.input);
  else if (Array.isArray(params?.input)) for (const item of params.input) if (typeof item === "string") strings.push(item);
  return strings;
}

/**
 * Any failure as `{status, type, message, param, code, retry_after, retry, headers, ours}`.
 *
 * Provider errors keep the provider's status and fields (described by the bridge); our own
 * failures are 500/503/504 with our own type and never claim to come from the provider.
 */
export function describeFailure(error, params, deadline) {
  const redact = (message) => redactMessage(message, { requestStrings: requestStrings(params) });
  if (error instanceof HttpError) {
    return { status: error.status, type: error.type, message: error.message, param: error.param, code: error.code, headers: error.headers, ours: true };
  }
  if (error instanceof ReplyTooLarge) return { ...tooLargeError(error), ours: true };
  if (error instanceof LiteLLMTimeoutError) {
    return { status: 504, type: "timeout", message: `the model did not answer within ${deadline} ms`, param: null, code: "timeout", ours: true };
  }
  if (error instanceof ProviderError) {
    const described = error.error ?? {};
    const status = Number.isInteger(described.status) && described.status >= 400 && described.status <= 599 ? described.status : 502;
    return {
      status,
      type: typeof described.type === "string" ? described.type : "api_error",
      message: redact(typeof described.message === "string" ? described.message : error.message),
      param: typeof described.param === "string" ? described.param : null,
      code: typeof described.code === "string" ? described.code : null,
      retry_after: typeof described.retry_after === "string" ? described.retry_after : null,
      // A config error or a bug in the bridge does not get better by retrying.
      retry: described.ours === true && status >= 500 ? false : null,
      ours: described.ours === true,
    };
  }
  if (error instanceof BridgeError) {
    const status = Number.isInteger(error.status) ? error.status : 503;
    const retryAfter = Number.isFinite(error.retryAfterMs) && error.retryAfterMs > 0 ? String(Math.ceil(error.retryAfterMs / 1000)) : null;
    const tooLarge = error.code === "reply_too_large";
    return {
      status,
      type: tooLarge ? "response_too_large" : "bridge_unavailable",
      message: redact(error.message),
      param: null,
      code: tooLarge ? "response_too_large" : (error.code ?? "bridge_unavailable"),
      retry_after: retryAfter,
      // A model config that cannot be used stays so until it is fixed and redeployed: no retry helps.
      retry: tooLarge || error.code === "bridge_misconfigured" ? false : null,
      ours: true,
    };
  }
  return { status: 500, type: "internal_error", message: "the function failed while handling this request; details are in its logs", param: null, code: null, ours: true };
}

/** Runs a streaming chat: the first chunk decides the status, later failures end the stream with an error event. */
async function streamChat(bridge, params, reply, options, failure) {
  const chunks = bridge.stream(params, options);
  const iterator = chunks[Symbol.asyncIterator]();
  let usage = null;
  let first;
  try {
    first = await iterator.next();
  } catch (error) {
    await iterator.return?.();
    throw error;
  }
  const events = reply.events();
  try {
    for (let item = first; !item.done; item = await iterator.next()) {
      if (item.value?.usage) usage = item.value.usage;
      await events.send(item.value);
    }
    await events.done();
  } catch (error) {
    await iterator.return?.();
    const described = failure(error);
    await events.fail(described);
    return { usage, described };
  }
  return { usage, described: null };
}

/**
 * Builds the handler. Options: `client` (default: the container-wide LiteLLM client), `timeoutMs`
 * (default `LITELLM_TIMEOUT_MS` or 55 s, capped by the Lambda deadline), `env`, `log` (for the
 * per-request JSON line; default common/log.js), `lambda` (`awslambda`; default the runtime's, or
 * the local stand-in).
 */
export function createHandler({ client, timeoutMs, env = process.env, log = logger, lambda = awslambda } = {}) {
  const configuredTimeout = timeoutMs ?? (Number(env.LITELLM_TIMEOUT_MS) || DEFAULT_TIMEOUT_MS);
  const lambdaRuntime = onLambda(env) && !env.IS_OFFLINE;
  let keyHashes = null;
  const keys = () => (keyHashes ??= loadKeyHashes(env));

  return lambda.streamifyResponse(async (event, responseStream, context) => {
    const bridge = client ?? getSharedClient();
    const requestId = typeof context?.awsRequestId === "string" ? context.awsRequestId : null;
    const deadline = deadlineFor(context, configuredTimeout);
    const reply = replyWriter(responseStream, eventSource(event) === "function-url", lambda, { requestId });
    let request = null;
    try {
      request = readEvent(event);
    } catch (error) {
      const described = describeFailure(error, null, deadline);
      await reply.error(described);
      beginRequest({ requestId, route: "(unreadable request)", log }).finish({ status: described.status, error: described.type });
      return;
    }
    let target = null;
    let routeError = null;
    try {
      target = route(request.method, request.path);
    } catch (error) {
      routeError = error;
    }
    // The raw path is caller content: only a matched route is logged.
    const routeName = target?.name ?? `${request.method} (no route)`;
    const summary = beginRequest({ requestId, route: routeName, log });
    let params = null;
    let model = null;
    let usage = null;
    let errorType;
    const failure = (error) => describeFailure(error, params, deadline);
    try {
      if (routeError) throw routeError;
      let hashes;
      try {
        hashes = await keys();
      } catch (error) {
        keyHashes = null;
        throw new HttpError(500, `the function's API key configuration cannot be read: ${error.message}`, { type: "config_error", code: "config_error" });
      }
      authorize(request, { hashes, onLambda: lambdaRuntime });
      const options = { timeoutMs: deadline, requestId };
      if (target.kind === "models" || target.kind === "model") {
        const list = await bridge.models(options);
        if (target.kind === "models") await reply.json(200, list);
        else {
          const found = Array.isArray(list?.data) ? list.data.find((item) => item?.id === target.model) : undefined;
          if (!found) throw new HttpError(404, `The model \`${target.model}\` does not exist or you do not have access to it.`, { param: "model", code: "model_not_found" });
          await reply.json(200, found);
        }
      } else if (target.kind === "embeddings") {
        params = validateEmbeddings(parseJsonBody(request.body, "with model and input"));
        model = params.model;
        const result = await bridge.embeddings(params, options);
        usage = result?.usage ?? null;
        await reply.json(200, result);
      } else {
        params = validateChat(parseJsonBody(request.body, "with model and messages"));
        model = params.model;
        if (params.stream) {
          const outcome = await streamChat(bridge, params, reply, options, failure);
          usage = outcome.usage;
          if (outcome.described) errorType = outcome.described.type;
        } else {
          const result = await bridge.chat(params, options);
          usage = result?.usage ?? null;
          await reply.json(200, result);
        }
      }
    } catch (error) {
      const described = failure(error);
      errorType = described.type;
      if (described.status >= 500 && !(error instanceof ProviderError && !described.ours)) {
        log.error(`${routeName}: ${described.type}: ${redactMessage(error?.stack ?? error?.message ?? String(error), { maxChars: 4000 })}`, { request_id: requestId });
      }
      if (reply.status === null) {
        // Writing fails only when the caller is gone; there is no one left to tell.
        await reply.error(described).catch((writeError) => log.warn(`${routeName}: the error reply could not be written: ${writeError.message}`, { request_id: requestId }));
      }
    } finally {
      const configured = model !== null && reply.status !== null && reply.status < 400 ? [model] : bridge.readyInfo?.models;
      summary.finish({
        status: reply.status,
        model: modelForLog(model, configured),
        usage,
        childPid: bridge.pid ?? null,
        ...(errorType ? { error: errorType } : {}),
      });
    }
  });
}
