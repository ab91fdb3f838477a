//! Writes replies to the response stream of a streaming handler (http/streaming.js).
//!
//! A Function URL event is answered by streaming: the status and headers go out in the metadata
//! prelude, then the body as it is produced; server-sent events reach the caller as LiteLLM yields
//! them. API Gateway events are answered with the buffered proxy result
//! (`{statusCode, headers, body}` as JSON, the whole payload at once), so server-sent events are
//! collected first. Either way a reply above Lambda's limit (6 MB buffered, 20 MB streamed) is an
//! error the caller can read, never a truncated body.

import { errorBody, errorHeaders } from "./errors.js";
import { MAX_BUFFERED_RESPONSE_BYTES, MAX_STREAMED_RESPONSE_BYTES } from "./limits.js";

/** Bytes kept back from the streamed limit for the error event that ends an over-size stream. */
const STREAM_ERROR_RESERVE = 4 * 1024;

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" };

/** The reply is larger than Lambda lets the function return. */
export class ReplyTooLarge extends Error {
  constructor(bytes, limit, streamed) {
    const hint = streamed ? "ask for fewer tokens" : "ask for fewer tokens, or use stream: true through the Function URL (up to 20 MB)";
    super(`the reply is larger than Lambda can return (${bytes} bytes; at most ${limit} bytes ${streamed ? "streamed" : "buffered"}): ${hint}`);
    this.name = "ReplyTooLarge";
  }
}

/** A reply that the caller can read: status 500, ours, not worth retrying. */
export function tooLargeError(error) {
  return { status: 500, type: "response_too_large", message: error.message, param: null, code: "response_too_large", retry: false };
}

function write(stream, data) {
  return new Promise((resolve, reject) => {
    if (stream.destroyed) {
      reject(new Error("the response stream was closed"));
      return;
    }
    const onError = (error) => reject(error);
    stream.once("error", onError);
    const done = () => {
      stream.off("error", onError);
      resolve();
    };
    if (stream.write(data)) done();
    else stream.once("drain", done);
  });
}

function end(stream) {
  return new Promise((resolve) => {
    if (stream.writableEnded) resolve();
    else stream.end(resolve);
  });
}

/**
 * A reply writer for one invocation: `json(status, body, headers)`, `error(described)`, and
 * `events()` for server-sent events. `streaming` is true for Function URL events.
 */
export function replyWriter(responseStream, streaming, awslambda, { requestId = null } = {}) {
  let bytesSent = 0;
  // OpenAI's SDKs expose this header as the reply's request id (`_request_id`); here it is Lambda's.
  const common = requestId ? { "x-request-id": requestId } : {};

  async function buffered(statusCode, headers, body) {
    const payload = JSON.stringify({ statusCode, headers: { ...headers, ...common }, body, isBase64Encoded: false });
    const size = Buffer.byteLength(payload, "utf8");
    if (size > MAX_BUFFERED_RESPONSE_BYTES) throw new ReplyTooLarge(size, MAX_BUFFERED_RESPONSE_BYTES, false);
    await write(responseStream, payload);
    await end(responseStream);
  }

  // A reply without `stream` is one JSON document, held whole by the bridge and here: Lambda's
  // buffered limit applies to it on every route; only server-sent events get the streamed limit.
  async function streamed(statusCode, headers, body) {
    const size = Buffer.byteLength(body, "utf8");
    if (size > MAX_BUFFERED_RESPONSE_BYTES) throw new ReplyTooLarge(size, MAX_BUFFERED_RESPONSE_BYTES, false);
    const stream = awslambda.HttpResponseStream.from(responseStream, { statusCode, headers: { ...headers, ...common } });
    await write(stream, body);
    await end(stream);
  }

  const writer = {
    streaming,
    /** The status sent (set once a reply has started). */
    status: null,

    async json(status, body, headers = {}) {
      const allHeaders = { "content-type": "application/json", ...headers };
      const text = JSON.stringify(body);
      writer.status = status;
      try {
        await (streaming ? streamed : buffered)(status, allHeaders, text);
      } catch (error) {
        if (!(error instanceof ReplyTooLarge)) throw error;
        await writer.error(tooLargeError(error));
      }
    },

    /** Answers a described error (`{status, type, message, param, code, retry_after, retry}`). */
    async error(described) {
      const headers = errorHeaders({ retryAfter: described.retry_after, retry: described.retry, headers: described.headers });
      writer.status = described.status;
      const text = JSON.stringify(errorBody(described));
      if (streaming) {
        const stream = awslambda.HttpResponseStream.from(responseStream, { statusCode: described.status, headers: { ...headers, ...common } });
        await write(stream, text);
        await end(stream);
      } else {
        await buffered(described.status, headers, text);
      }
    },

    /**
     * Starts a server-sent events reply (status 200): returns `{send(object), fail(described), done()}`.
     * `send` throws ReplyTooLarge once the reply would pass Lambda's limit; the caller then stops
     * the upstream and calls `fail`, which ends the stream with an error event (streamed) or turns
     * the whole reply into an error (buffered: nothing was sent yet).
     */
    events() {
      writer.status = 200;
      if (streaming) {
        const stream = awslambda.HttpResponseStream.from(responseStream, { statusCode: 200, headers: { ...SSE_HEADERS, ...common } });
        const limit = MAX_STREAMED_RESPONSE_BYTES - STREAM_ERROR_RESERVE;
        return {
          async send(object) {
            const event = `data: ${JSON.stringify(object)}\n\n`;
            const size = Buffer.byteLength(event, "utf8");
            if (bytesSent + size > limit) throw new ReplyTooLarge(bytesSent + size, MAX_STREAMED_RESPONSE_BYTES, true);
            bytesSent += size;
            await write(stream, event);
          },
          // The status line is gone: an `error` event is how OpenAI reports a failure mid-stream
          // (the SDKs raise it as an APIError).
          async fail(described) {
            await write(stream, `data: ${JSON.stringify(errorBody(described))}\n\n`);
            await end(stream);
          },
          async done() {
            await write(stream, "data: [DONE]\n\n");
            await end(stream);
          },
        };
      }
      const events = [];
      const limit = MAX_BUFFERED_RESPONSE_BYTES - 1024;
      return {
        async send(object) {
          const event = `data: ${JSON.stringify(object)}\n\n`;
          // The body is sent inside a JSON string: count its escaped size.
          const size = JSON.stringify(event).length;
          if (bytesSent + size > limit) throw new ReplyTooLarge(bytesSent + size, MAX_BUFFERED_RESPONSE_BYTES, false);
          bytesSent += size;
          events.push(event);
        },
        async fail(described) {
          await writer.error(described);
        },
        async done() {
          events.push("data: [DONE]\n\n");
          await buffered(200, SSE_HEADERS, events.join(""));
        },
      };
    },
  };
  return writer;
}
