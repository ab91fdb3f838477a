//! The `chat` Lambda: an OpenAI-compatible endpoint answered through LiteLLM.
//!
//! Routes (http/routes.js): `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`
//! (and `GET /v1/models/{model}`); anything else is 404 or 405. The handler is a response-streaming
//! handler (`awslambda.streamifyResponse`, http/streaming.js): Function URL events (invoke mode
//! RESPONSE_STREAM) get server-sent events as LiteLLM yields them; API Gateway events get the
//! buffered proxy result. Which models exist is the model config's business (models.yaml, read by
//! litellm/openai_endpoint.py in the bridge): a model not listed there is 404 model_not_found and
//! reaches no provider. Errors have OpenAI's shape and the provider's status (http/errors.js).

import { createHandler } from "./http/handler.js";
// Starts the LiteLLM bridge while this module loads (Lambda's init phase) and stops it on SIGTERM.
import { client } from "./litellm/startup.js";

/** The Lambda entry point (`handler: index.handler`). */
export const handler = createHandler({ client });
