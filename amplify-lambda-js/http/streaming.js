//! Lambda response streaming, and a faithful local stand-in for it.
//!
//! On Lambda the Node.js runtime provides the global `awslambda` with `streamifyResponse(handler)`
//! and `HttpResponseStream.from(stream, {statusCode, headers, cookies})`
//! <https://docs.aws.amazon.com/lambda/latest/dg/config-rs-write-functions.html>. A streaming handler
//! is `async (event, responseStream, context)`; `HttpResponseStream.from` sets the stream's content
//! type to `application/vnd.awslambda.http-integration-response` and writes, before the first body
//! byte, the JSON metadata prelude followed by 8 NUL bytes. A Function URL (invoke mode
//! RESPONSE_STREAM) turns the prelude into the HTTP status line and headers and sends the rest of
//! the bytes as the body as they are written. A buffered invocation (API Gateway, the Invoke API)
//! receives all the bytes at the end as the payload.
//!
//! Off Lambda, `awslambda` below is a stand-in with the same API and the same framing:
//! `invokeFunctionUrl` decodes the prelude exactly as a Function URL does and writes to a Node HTTP
//! response as bytes arrive, and `invokeBuffered` collects the payload, so the local server and the
//! tests run the Lambda code path.

import { Writable } from "node:stream";

/** The content type that marks a metadata prelude. */
export const HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response";
/** The NUL bytes between the prelude and the body. */
const PRELUDE_DELIMITER = Buffer.alloc(8);
/** The runtime's marker on a streaming handler. */
const HANDLER_STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const STREAM_RESPONSE = "response";
/** A prelude longer than this is refused, as a Function URL would (its headers must be small). */
const MAX_PRELUDE_BYTES = 64 * 1024;

/** Marks `handler` as a response-streaming handler; it is called as `(event, responseStream, context)`. */
function streamifyResponse(handler) {
  handler[HANDLER_STREAMING] = STREAM_RESPONSE;
  return handler;
}

/** True for a handler wrapped by `streamifyResponse`. */
export function isStreamingHandler(handler) {
  return handler?.[HANDLER_STREAMING] === STREAM_RESPONSE;
}

const HttpResponseStream = {
  /** Makes `stream` start with the metadata prelude (status, headers, cookies) and returns it. */
  from(stream, prelude) {
    stream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    const metadata = JSON.stringify(prelude);
    stream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(PRELUDE_DELIMITER);
    };
    return stream;
  },
};

/** What this module provides when the Lambda runtime's `awslambda` global is absent. */
export const localAwsLambda = Object.freeze({ streamifyResponse, HttpResponseStream });

/** The runtime's `awslambda` on Lambda, else the local stand-in. */
export const awslambda = globalThis.awslambda ?? localAwsLambda;

/**
 * The response stream handed to a streaming handler: a Writable with `setContentType`, which calls
 * `_onBeforeFirstWrite` before its first bytes, and passes bytes to `sink` (`write(buffer)` returning
 * a promise resolved once the bytes are handed on, `end()`), waiting for each write (backpressure).
 */
class ResponseStream extends Writable {
  constructor(sink) {
    super();
    this.sink = sink;
    this.contentType = "application/octet-stream";
    this.started = false;
    this._onBeforeFirstWrite = null;
  }

  setContentType(contentType) {
    if (this.started) throw new Error("setContentType must be called before the first write to the response stream");
    this.contentType = contentType;
  }

  getContentType() {
    return this.contentType;
  }

  async #start() {
    if (this.started) return;
    this.started = true;
    this.sink.begin(this.contentType);
    if (typeof this._onBeforeFirstWrite === "function") {
      const parts = [];
      this._onBeforeFirstWrite((chunk) => parts.push(Buffer.from(chunk)));
      for (const part of parts) await this.sink.write(part);
    }
  }

  _write(chunk, _encoding, callback) {
    this.#start()
      .then(() => this.sink.write(chunk))
      .then(() => callback(), callback);
  }

  _final(callback) {
    this.#start()
      .then(() => this.sink.end())
      .then(() => callback(), callback);
  }
}

/** Splits the prelude from the body, as a Function URL does with a streamed integration response. */
class PreludeDecoder {
  constructor(onHead, onBody) {
    this.onHead = onHead;
    this.onBody = onBody;
    this.pending = Buffer.alloc(0);
    this.decoded = false;
  }

  async push(chunk) {
    if (this.decoded) return this.onBody(chunk);
    this.pending = Buffer.concat([this.pending, chunk]);
    const at = this.pending.indexOf(PRELUDE_DELIMITER);
    if (at === -1) {
      if (this.pending.length > MAX_PRELUDE_BYTES) throw new Error(`the response prelude exceeds ${MAX_PRELUDE_BYTES} bytes`);
      return undefined;
    }
    let prelude;
    try {
      prelude = JSON.parse(this.pending.subarray(0, at).toString("utf8"));
    } catch (error) {
      throw new Error(`the response prelude is not JSON: ${error.message}`);
    }
    const rest = this.pending.subarray(at + PRELUDE_DELIMITER.length);
    this.decoded = true;
    this.pending = null;
    this.onHead(prelude);
    if (rest.length > 0) return this.onBody(rest);
    return undefined;
  }
}

function writeTo(res, chunk) {
  return new Promise((resolve, reject) => {
    if (res.destroyed) {
      reject(new Error("the client closed the connection"));
      return;
    }
    if (res.write(chunk)) resolve();
    else {
      const onDrain = () => {
        res.off("close", onClose);
        resolve();
      };
      const onClose = () => {
        res.off("drain", onDrain);
        reject(new Error("the client closed the connection"));
      };
      res.once("drain", onDrain);
      res.once("close", onClose);
    }
  });
}

function headOf(prelude) {
  const statusCode = Number.isInteger(prelude?.statusCode) ? prelude.statusCode : 200;
  const headers = {};
  for (const [name, value] of Object.entries(prelude?.headers ?? {})) headers[name.toLowerCase()] = String(value);
  if (Array.isArray(prelude?.cookies) && prelude.cookies.length > 0) headers["set-cookie"] = prelude.cookies.map(String);
  return { statusCode, headers };
}

/**
 * Runs a streaming `handler` for `event` as a Function URL with invoke mode RESPONSE_STREAM does,
 * writing to the Node HTTP response `res` while the handler writes. A handler that fails before
 * writing anything gets a 502, as from a Function URL; after that the connection is cut.
 */
export async function invokeFunctionUrl(handler, event, context, res) {
  if (!isStreamingHandler(handler)) throw new Error("invokeFunctionUrl needs a handler wrapped by awslambda.streamifyResponse");
  let decoder = null;
  const sink = {
    begin(contentType) {
      if (contentType === HTTP_INTEGRATION_CONTENT_TYPE) {
        decoder = new PreludeDecoder(
          (prelude) => {
            const { statusCode, headers } = headOf(prelude);
            res.writeHead(statusCode, headers);
          },
          (chunk) => writeTo(res, chunk),
        );
      } else {
        res.writeHead(200, { "content-type": contentType });
      }
    },
    write: (chunk) => (decoder ? decoder.push(chunk) : writeTo(res, chunk)),
    end: () =>
      new Promise((resolve) => {
        if (decoder && !decoder.decoded) {
          // The handler ended the stream inside the prelude: a Function URL answers 502.
          if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
          res.end(JSON.stringify({ Message: "the function's response ended inside its metadata prelude" }), resolve);
        } else res.end(resolve);
      }),
  };
  const stream = new ResponseStream(sink);
  // A caller that goes away destroys the stream; the handler learns it from its next write. The
  // listener keeps that error from being an unhandled 'error' event, which would end the process.
  stream.on("error", () => {});
  res.once("close", () => {
    if (!res.writableFinished) stream.destroy(new Error("the client closed the connection"));
  });
  try {
    await handler(event, stream, context);
    if (!stream.writableEnded) stream.end();
    await new Promise((resolve) => {
      if (stream.writableFinished || stream.destroyed) resolve();
      else {
        stream.once("finish", resolve);
        stream.once("close", resolve);
      }
    });
  } catch (error) {
    if (!res.headersSent) {
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ Message: "Internal Server Error" }));
    } else res.destroy();
    throw error;
  }
}

/**
 * Runs a streaming `handler` as a buffered invocation does (API Gateway, the Invoke API): resolves
 * to the whole payload the handler wrote, as a string.
 */
export async function invokeBuffered(handler, event, context) {
  if (!isStreamingHandler(handler)) throw new Error("invokeBuffered needs a handler wrapped by awslambda.streamifyResponse");
  const parts = [];
  const sink = { begin() {}, write: async (chunk) => void parts.push(Buffer.from(chunk)), end: async () => {} };
  const stream = new ResponseStream(sink);
  await handler(event, stream, context);
  if (!stream.writableEnded) stream.end();
  if (!stream.writableFinished) await new Promise((resolve, reject) => stream.once("finish", resolve).once("error", reject));
  return Buffer.concat(parts).toString("utf8");
}
