"""The endpoint as its users meet it: the official `openai` Python SDK against the local server.

Run by test/endpoint.test.mjs, which starts the local upstream (test/support/openaiServer.mjs) and
the local server (`npm start`, the Lambda code path) with test/fixtures/endpoint-models.yaml, and
passes their URLs in ENDPOINT_URL and UPSTREAM_URL; MISCONFIGURED_URL is a second local server whose
model config the bridge refuses. Every model of that config is the upstream;
`fail-<status>` models make it fail with that status, `slow-stream` pauses 1 s between chunks.
Upstream calls are counted through the upstream's `GET /_calls`.
"""

import json
import os
import time
import unittest
import urllib.request

import httpx2 as httpx  # openai 3.x is built on httpx2
import openai

ENDPOINT_URL = os.environ["ENDPOINT_URL"]
UPSTREAM_URL = os.environ["UPSTREAM_URL"]
UPSTREAM_KEY = os.environ["UPSTREAM_API_KEY"]
MISCONFIGURED_URL = os.environ["MISCONFIGURED_URL"]
MESSAGES = [{"role": "user", "content": "hello there"}]


def upstream_calls():
    with urllib.request.urlopen(f"{UPSTREAM_URL}/_calls", timeout=10) as reply:
        return json.load(reply)["requests"]


def client(**options):
    # The endpoint needs no key locally; the SDK insists on one.
    return openai.OpenAI(base_url=f"{ENDPOINT_URL}/v1", api_key="unused-locally", timeout=60, **options)


class Counting(unittest.TestCase):
    def setUp(self):
        self.calls_before = len(upstream_calls())

    def new_calls(self):
        return upstream_calls()[self.calls_before :]


class Completions(Counting):
    def test_completion(self):
        reply = client().chat.completions.create(model="echo", messages=MESSAGES)
        self.assertEqual(reply.object, "chat.completion")
        self.assertEqual(len(reply.choices), 1)
        self.assertEqual(reply.choices[0].message.content, "echo: hello there")
        self.assertEqual(reply.choices[0].finish_reason, "stop")
        # Lambda's request id (the local server makes UUIDs), as OpenAI's x-request-id.
        self.assertRegex(reply._request_id, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertEqual((reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens), (5, 3, 8))
        calls = self.new_calls()
        self.assertEqual(len(calls), 1)
        # The provider key comes from the model config (os.environ/UPSTREAM_API_KEY), not the caller.
        self.assertEqual(calls[0]["authorization"], f"Bearer {UPSTREAM_KEY}")

    def test_n_2(self):
        reply = client().chat.completions.create(model="echo", messages=MESSAGES, n=2)
        self.assertEqual([choice.index for choice in reply.choices], [0, 1])
        self.assertEqual([choice.message.content for choice in reply.choices], ["echo: hello there", "echo: hello there (choice 1)"])

    def test_tools_and_tool_result_follow_up(self):
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Looks a word up.",
                    "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
                },
            }
        ]
        sdk = client()
        first = sdk.chat.completions.create(model="echo", messages=MESSAGES, tools=tools, tool_choice="auto")
        choice = first.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        (call,) = choice.message.tool_calls
        self.assertEqual(call.function.name, "lookup")
        self.assertEqual(json.loads(call.function.arguments), {"echo": "hello there"})
        # The assistant turn goes back as the SDK serializes it (no "content" key when there is none).
        assistant = choice.message.model_dump(exclude_none=True)
        self.assertNotIn("content", assistant)
        follow_up = sdk.chat.completions.create(
            model="echo",
            messages=[*MESSAGES, assistant, {"role": "tool", "tool_call_id": call.id, "content": "a greeting"}],
            tools=tools,
        )
        self.assertEqual(follow_up.choices[0].message.content, "tool said: a greeting")
        self.assertEqual(len(self.new_calls()), 2)

    def test_json_object(self):
        reply = client().chat.completions.create(model="echo", messages=MESSAGES, response_format={"type": "json_object"})
        self.assertEqual(json.loads(reply.choices[0].message.content), {"echo": "echo: hello there"})
        self.assertIn("response_format", self.new_calls()[0]["fields"])

    def test_json_schema(self):
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": False}
        reply = client().chat.completions.create(
            model="echo",
            messages=MESSAGES,
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
        )
        self.assertEqual(json.loads(reply.choices[0].message.content), {"answer": "echo: hello there"})

    def test_fields_outside_the_api_and_metadata_are_forwarded(self):
        client().chat.completions.create(
            model="echo", messages=MESSAGES, metadata={"team": "a"}, store=False, extra_body={"custom_field": 1}
        )
        (call,) = self.new_calls()
        for field in ("custom_field", "metadata", "store"):
            self.assertIn(field, call["fields"])


class Streaming(Counting):
    def test_first_chunk_arrives_before_the_upstream_sends_its_second(self):
        started = time.time()
        stream = client().chat.completions.create(model="slow-stream", messages=MESSAGES, stream=True)
        arrivals = []
        text = ""
        for chunk in stream:
            arrivals.append(time.time() * 1000)
            for choice in chunk.choices:
                text += choice.delta.content or ""
        self.assertEqual(text, "echo: hello there")
        (call,) = self.new_calls()
        upstream_times = call["chunkTimes"]
        self.assertGreaterEqual(len(upstream_times), 3)
        # The upstream pauses 1 s between chunks: a buffered reply would arrive after all of them.
        self.assertLess(arrivals[0], upstream_times[1], f"first chunk at {arrivals[0] - started * 1000:.0f} ms")
        self.assertGreaterEqual(upstream_times[-1] - upstream_times[0], 1900)

    def test_include_usage(self):
        stream = client().chat.completions.create(
            model="echo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        *content_chunks, last = chunks
        self.assertEqual(last.choices, [])
        self.assertEqual((last.usage.prompt_tokens, last.usage.completion_tokens), (5, 3))
        self.assertTrue(all(chunk.usage is None for chunk in content_chunks))
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in content_chunks if c.choices), "echo: hello there")

    def test_without_include_usage_no_usage_chunk(self):
        chunks = list(client().chat.completions.create(model="echo", messages=MESSAGES, stream=True))
        self.assertTrue(all(chunk.choices for chunk in chunks))

    def test_error_before_the_first_chunk_keeps_its_status(self):
        with self.assertRaises(openai.RateLimitError) as caught:
            list(client(max_retries=0).chat.completions.create(model="fail-429", messages=MESSAGES, stream=True))
        self.assertEqual(caught.exception.response.headers.get("retry-after"), "7")


class EmbeddingsAndModels(Counting):
    def test_embeddings(self):
        sdk = client()
        floats = sdk.embeddings.create(model="embed", input=["alpha", "beta"], encoding_format="float")
        self.assertEqual([item.index for item in floats.data], [0, 1])
        self.assertEqual([len(item.embedding) for item in floats.data], [8, 8])
        # The SDK's default asks for base64 and decodes it: the same vectors (as float32).
        default = sdk.embeddings.create(model="embed", input=["alpha", "beta"])
        for mine, theirs in zip(default.data, floats.data):
            for a, b in zip(mine.embedding, theirs.embedding):
                self.assertAlmostEqual(a, b, places=5)
        self.assertEqual(len(self.new_calls()), 2)

    def test_models_list(self):
        sdk = client()
        names = [model.id for model in sdk.models.list()]
        self.assertEqual(names[:3], ["echo", "slow-stream", "embed"])
        self.assertIn("fail-429", names)
        self.assertEqual(sdk.models.retrieve("echo").id, "echo")
        with self.assertRaises(openai.NotFoundError):
            sdk.models.retrieve("not-configured")
        self.assertEqual(self.new_calls(), [])


# The SDK's exception class for each status the provider may answer with.
STATUS_CLASSES = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    408: openai.APIStatusError,
    409: openai.ConflictError,
    413: openai.APIStatusError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
    500: openai.InternalServerError,
    502: openai.InternalServerError,
    503: openai.InternalServerError,
    504: openai.InternalServerError,
}
# Statuses the SDK itself never retries: with its default retries, exactly one upstream call.
NOT_RETRIED = (400, 401, 403, 404, 413, 422)


class ProviderErrors(Counting):
    def check(self, status, sdk):
        before = len(upstream_calls())
        with self.assertRaises(STATUS_CLASSES[status]) as caught:
            sdk.chat.completions.create(model=f"fail-{status}", messages=MESSAGES)
        error = caught.exception
        self.assertEqual(error.status_code, status)
        self.assertEqual(
            error.body,
            {"message": f"the test server was asked to fail with status {status}", "type": "test_error", "param": None, "code": str(status)},
        )
        return error, len(upstream_calls()) - before

    def test_statuses_the_sdk_does_not_retry_make_one_upstream_call(self):
        for status in NOT_RETRIED:
            with self.subTest(status=status):
                _, calls = self.check(status, client())
                self.assertEqual(calls, 1)

    def test_retriable_statuses_make_one_upstream_call_per_sdk_attempt(self):
        for status in (408, 409, 429, 500, 502, 503, 504):
            with self.subTest(status=status):
                error, calls = self.check(status, client(max_retries=0))
                self.assertEqual(calls, 1)
                if status == 429:
                    self.assertEqual(error.response.headers.get("retry-after"), "7")

    def test_sdk_retries_reach_the_upstream_once_each(self):
        _, calls = self.check(500, client(max_retries=1))
        self.assertEqual(calls, 2)


class MisconfiguredBridge(unittest.TestCase):
    def test_a_model_config_the_bridge_cannot_use_is_one_503_the_sdk_does_not_retry(self):
        sent = []
        http_client = httpx.Client(event_hooks={"request": [sent.append]})
        sdk = openai.OpenAI(
            base_url=f"{MISCONFIGURED_URL}/v1", api_key="unused-locally", timeout=60, max_retries=2, http_client=http_client
        )
        for attempt in range(2):
            with self.subTest(attempt=attempt), self.assertRaises(openai.InternalServerError) as caught:
                sdk.chat.completions.create(model="echo", messages=MESSAGES)
            error = caught.exception
            self.assertEqual(error.status_code, 503)
            self.assertEqual(error.response.headers.get("x-should-retry"), "false")
            self.assertEqual(
                error.body,
                {
                    "message": "the LiteLLM bridge cannot start: its model config is invalid; the function's logs say why",
                    "type": "bridge_unavailable",
                    "param": None,
                    "code": "bridge_misconfigured",
                },
            )
        # max_retries=2, yet each call went out once: the SDK honours x-should-retry: false.
        self.assertEqual(len(sent), 2)


class RequestsRefusedHere(Counting):
    def test_unknown_model_is_404_model_not_found_without_upstream_call(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            client().chat.completions.create(model="ollama/llama3", messages=MESSAGES)
        self.assertEqual(caught.exception.code, "model_not_found")
        self.assertEqual(caught.exception.param, "model")
        self.assertTrue(caught.exception.message.startswith("Error code: 404 - "))
        self.assertIn("The model `ollama/llama3` does not exist or you do not have access to it.", caught.exception.message)
        self.assertEqual(self.new_calls(), [])

    def test_wrong_field_type_is_400_naming_the_field(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().chat.completions.create(model="echo", messages=MESSAGES, temperature="hot")
        self.assertEqual(
            caught.exception.body,
            {"message": 'field "temperature" must be a number from 0 to 2 (got "hot")', "type": "invalid_request_error", "param": "temperature", "code": None},
        )
        self.assertEqual(self.new_calls(), [])

    def test_oversize_request_is_413(self):
        # Above Lambda's 6 MB, below the local server's read cap: the handler's own check answers.
        big = "x" * (6 * 1024 * 1024 + 100_000)
        with self.assertRaises(openai.APIStatusError) as caught:
            client().chat.completions.create(model="echo", messages=[{"role": "user", "content": big}])
        self.assertEqual(caught.exception.status_code, 413)
        self.assertEqual(caught.exception.code, "request_too_large")
        self.assertRegex(
            caught.exception.body["message"],
            r"^request body is \d+ bytes; Lambda accepts at most 6291456 bytes \(6 MB\): send a shorter conversation$",
        )
        self.assertEqual(self.new_calls(), [])

    def test_a_reply_above_lambda_s_limit_is_a_clear_error_the_sdk_does_not_retry(self):
        # The upstream answers 7,000,000 characters; without stream a reply may have 6 MB.
        with self.assertRaises(openai.InternalServerError) as caught:
            client().chat.completions.create(model="too-big", messages=MESSAGES)
        error = caught.exception
        self.assertEqual((error.status_code, error.type, error.code), (500, "response_too_large", "response_too_large"))
        self.assertEqual(error.response.headers.get("x-should-retry"), "false")
        self.assertRegex(
            error.body["message"],
            r"^the reply is \d+ bytes, over Lambda's limit of 6291456 bytes for a buffered response; ask for fewer tokens \(max_tokens\) or stream it$",
        )
        # x-should-retry: false keeps the SDK from paying for the same reply three times.
        self.assertEqual(len(self.new_calls()), 1)

    def test_malformed_json_is_400(self):
        reply = httpx.post(f"{ENDPOINT_URL}/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"})
        self.assertEqual(reply.status_code, 400)
        error = reply.json()["error"]
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertTrue(error["message"].startswith("We could not parse the JSON body of your request: "))

    def test_wrong_method_is_405_and_unknown_path_404(self):
        reply = httpx.delete(f"{ENDPOINT_URL}/v1/chat/completions")
        self.assertEqual(reply.status_code, 405)
        self.assertEqual(reply.headers["allow"], "POST")
        self.assertEqual(
            reply.json(),
            {"error": {"message": "method DELETE is not allowed on /v1/chat/completions: use POST", "type": "invalid_request_error", "param": None, "code": "method_not_allowed"}},
        )
        with self.assertRaises(openai.NotFoundError) as caught:
            client().get("/assistants", cast_to=object)
        self.assertEqual(caught.exception.code, "unknown_url")
        self.assertEqual(self.new_calls(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
