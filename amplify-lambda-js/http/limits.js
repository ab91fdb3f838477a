//! Lambda's payload limits, in one place
//! <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>.

/** A synchronous invocation's request payload, and a buffered (non-streamed) response. */
export const MAX_REQUEST_BYTES = 6 * 1024 * 1024;
export const MAX_BUFFERED_RESPONSE_BYTES = 6 * 1024 * 1024;

/** A streamed response (`awslambda.streamifyResponse` behind a Function URL with RESPONSE_STREAM). */
export const MAX_STREAMED_RESPONSE_BYTES = 20 * 1024 * 1024;
