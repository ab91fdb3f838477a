//! One cold start, run by bench/cold-start.mjs in a fresh Node process: imports the handler module
//! (index.js; with LITELLM_START=eager its load includes waiting for the bridge), then calls the
//! handler once the way a Function URL does, and prints
//! `{"module_load_ms", "first_response_ms", "status"}` as one JSON line.

import { chatEvent, lambdaContext, replyStatus, SERVICE } from "./support.mjs";

const started = performance.now();
const { handler } = await import(`${SERVICE}/index.js`);
const loaded = performance.now();
const { invokeBuffered } = await import(`${SERVICE}/http/streaming.js`);
const reply = await invokeBuffered(handler, chatEvent(), lambdaContext("cold-start"));
const answered = performance.now();
const status = replyStatus(reply);
process.stdout.write(`${JSON.stringify({ module_load_ms: loaded - started, first_response_ms: answered - loaded, status })}\n`);
// The bridge goes with this process (its stdin closes; PR_SET_PDEATHSIG).
process.exit(0);
