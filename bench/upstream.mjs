//! The benchmarks' upstream: the tests' local OpenAI-compatible server, in a process of its own.
//! Prints `{"baseUrl": "http://127.0.0.1:<port>/v1"}` on its first line; stops on SIGTERM or
//! when its stdin closes (its parent went away).

import { startOpenAIServer } from "../amplify-lambda-js/test/support/openaiServer.mjs";

const server = await startOpenAIServer();
process.stdout.write(`${JSON.stringify({ baseUrl: server.baseUrl })}\n`);
const stop = () => server.close().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
