"""litellm/openai_endpoint.py: the model config checks (whole messages) and the error mapping.

Run by test/openaiEndpoint.test.mjs with the bridge's interpreter (LiteLLM from the lock).
"""

import asyncio
import os
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "litellm"))

import httpx  # noqa: E402
import litellm  # noqa: E402
import openai  # noqa: E402

import openai_endpoint  # noqa: E402
from openai_endpoint import ConfigError, describe_error, load, parse_config  # noqa: E402

ENTRY = "  - model_name: m\n    litellm_params:\n      model: openai/x\n"


class ConfigChecks(unittest.TestCase):
    def assert_config_error(self, text, message, env=None):
        saved = dict(os.environ)
        os.environ.update(env or {})
        try:
            with self.assertRaises(ConfigError) as caught:
                parse_config(textwrap.dedent(text), "models.yaml")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.assertEqual(str(caught.exception), message)

    def test_errors_name_the_file_the_entry_and_what_is_wrong(self):
        cases = [
            ("", "models.yaml: expected a mapping with a model_list, got nothing"),
            ("model_list: [\n", "models.yaml: not valid YAML at line 2, column 1: expected the node content, but found '<stream end>'"),
            ("model_list: []\n", "models.yaml: model_list must be a non-empty list of {model_name, litellm_params} entries, got an empty list"),
            ("general_settings: {}\nmodel_list:\n" + ENTRY, "models.yaml: unsupported top-level key 'general_settings': this endpoint reads model_list, router_settings, litellm_settings"),
            ("model_list:\n  - just-a-string\n", "models.yaml: model_list[0]: expected a mapping with model_name and litellm_params, got a string"),
            ("model_list:\n  - litellm_params: {model: openai/x}\n", 'models.yaml: model_list[0]: model_name must be a non-empty string (the name callers send as "model"), got None'),
            ("model_list:\n  - model_name: m\n", "models.yaml: model_list[0] (m): litellm_params must be a mapping with at least `model: <provider>/<model>`, got nothing"),
            ("model_list:\n  - model_name: m\n    litellm_params: {api_key: k}\n", 'models.yaml: model_list[0] (m): litellm_params.model must be a non-empty string such as "openai/gpt-4o-mini", got None'),
            ("model_list:\n  - model_name: m\n    litellm_params: {model: openai/x}\n    tpm: 5\n", "models.yaml: model_list[0]: unsupported key 'tpm': an entry has model_name, litellm_params, model_info"),
            (
                "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, api_key: os.environ/NOT_SET_HERE}\n",
                "models.yaml: model_list[0] (m): litellm_params.api_key: environment variable NOT_SET_HERE is not set: set it in the function's environment (serverless.yml provider.environment) or remove the entry",
            ),
            (
                "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, api_key: os.environ/bad-name}\n",
                "models.yaml: model_list[0] (m): litellm_params.api_key: 'os.environ/bad-name' does not name an environment variable (expected os.environ/NAME)",
            ),
            ("model_list:\n" + ENTRY + "router_settings: {fallbacks: [{m: [other]}]}\n", "models.yaml: router_settings.fallbacks[0]: 'other' is not a model_name of model_list"),
            ("model_list:\n" + ENTRY + "router_settings: {num_retries: -1}\n", "models.yaml: router_settings.num_retries must be a non-negative integer, got -1"),
            ("model_list:\n" + ENTRY + "router_settings: {redis_host: x}\n", "models.yaml: router_settings.redis_host is not supported here: supported are " + ", ".join(openai_endpoint.ROUTER_SETTINGS)),
            ("model_list:\n" + ENTRY + "litellm_settings: {drop_params: 'yes'}\n", "models.yaml: litellm_settings.drop_params must be true or false, got 'yes'"),
        ]
        for text, message in cases:
            with self.subTest(message=message):
                self.assert_config_error(text, message)

    def test_secrets_are_resolved_and_collected_for_redaction(self):
        os.environ["ENDPOINT_TEST_KEY"] = "key-value-123"
        try:
            config = parse_config("model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, api_key: os.environ/ENDPOINT_TEST_KEY}\n", "models.yaml")
        finally:
            del os.environ["ENDPOINT_TEST_KEY"]
        self.assertEqual(config["model_list"], [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "key-value-123", "max_retries": 0}}])
        self.assertEqual(config["secrets"], {"key-value-123"})

    def test_a_missing_file_says_how_to_fix_it(self):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "nothing.yaml"
            with self.assertRaises(ConfigError) as caught:
                load(str(path))
        self.assertEqual(str(caught.exception), f"{path}: model config not found: create it (see amplify-lambda-js/models.yaml) or point MODELS_CONFIG at one")

    def test_the_shipped_models_yaml_loads(self):
        os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")
        endpoint = load(str(Path(__file__).resolve().parents[2] / "models.yaml"))
        self.assertEqual(endpoint.model_names, ("gpt-4o-mini", "text-embedding-3-small"))
        endpoint.warm()

    def test_a_model_not_listed_is_404_before_any_call(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
            file.write("model_list:\n" + ENTRY)
        try:
            endpoint = load(file.name)
        finally:
            os.unlink(file.name)
        with self.assertRaises(openai_endpoint.RequestError) as caught:
            asyncio.run(endpoint.handle("chat", {"model": "ollama/llama3", "messages": []}, None))
        self.assertEqual(
            describe_error(caught.exception),
            {
                "status": 404,
                "type": "invalid_request_error",
                "message": "The model `ollama/llama3` does not exist or you do not have access to it. Models served here: m.",
                "param": "model",
                "code": "model_not_found",
                "retry_after": None,
                "ours": True,
            },
        )


class Retries(unittest.TestCase):
    """The Router retries a failure to reach the provider once; a provider's answer never."""

    def endpoint_for(self, port, tmp):
        config = Path(tmp) / "models.yaml"
        config.write_text(f"model_list:\n  - model_name: m\n    litellm_params: {{model: openai/x, api_base: 'http://127.0.0.1:{port}/v1', api_key: k}}\n")
        return load(str(config))

    def run_against(self, answer):
        """Serves each connection with `answer(writer)`; returns (connections, described error)."""

        async def scenario():
            connections = []

            async def serve(reader, writer):
                connections.append(1)
                await reader.read(65536)
                await answer(writer)

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            with tempfile.TemporaryDirectory() as tmp:
                endpoint = self.endpoint_for(port, tmp)
                try:
                    await endpoint.handle("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, None)
                except Exception as exc:  # noqa: BLE001
                    described = describe_error(exc)
                else:
                    described = None
            server.close()
            return len(connections), described

        return asyncio.run(scenario())

    def test_a_reset_connection_is_retried_once(self):
        async def reset(writer):
            writer.transport.abort()

        connections, described = self.run_against(reset)
        self.assertEqual(connections, 2)
        self.assertEqual((described["status"], described["type"]), (502, "api_connection_error"))

    def test_a_provider_error_is_not_retried(self):
        async def error_500(writer):
            body = b'{"error": {"message": "down", "type": "server_error"}}'
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        connections, described = self.run_against(error_500)
        self.assertEqual(connections, 1)
        self.assertEqual((described["status"], described["message"]), (500, "down"))


def provider_error(status, body=None, headers=None):
    """The exception LiteLLM raises for a provider's `status`, built the way LiteLLM builds it."""
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(status, request=request, json=body or {"error": {"message": f"failed {status}"}}, headers=headers or {})
    original = openai.APIStatusError(f"Error code: {status}", response=response, body=(body or {}).get("error"))
    original.status_code = status
    try:
        try:
            raise original
        except Exception as exc:
            raise litellm.litellm_core_utils.exception_mapping_utils.exception_type(
                model="x", custom_llm_provider="openai", original_exception=exc, completion_kwargs={}, extra_kwargs={}
            )
    except Exception as mapped:  # noqa: BLE001
        return mapped


class ErrorMapping(unittest.TestCase):
    def test_each_provider_status_survives_litellm_s_mapping(self):
        for status in (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504):
            with self.subTest(status=status):
                described = describe_error(provider_error(status, {"error": {"message": f"no {status}", "type": "t", "param": "p", "code": "c"}}))
                self.assertEqual(
                    described,
                    {"status": status, "type": "t", "message": f"no {status}", "param": "p", "code": "c", "retry_after": None, "ours": False},
                )

    def test_retry_after_is_forwarded(self):
        described = describe_error(provider_error(429, headers={"retry-after": "12"}))
        self.assertEqual((described["status"], described["retry_after"], described["type"]), (429, "12", "rate_limit_error"))

    def test_litellm_s_own_timeout_is_504_and_a_connection_failure_502(self):
        timeout = litellm.Timeout(message="APITimeoutError - Request timed out.", model="x", llm_provider="openai")
        self.assertEqual(
            describe_error(timeout),
            {"status": 504, "type": "timeout", "message": "the provider did not answer in time", "param": None, "code": None, "retry_after": None, "ours": False},
        )
        refused = litellm.APIConnectionError(message="Connection error.", model="x", llm_provider="openai")
        self.assertEqual(
            describe_error(refused),
            {"status": 502, "type": "api_connection_error", "message": "the provider could not be reached: Connection error.", "param": None, "code": None, "retry_after": None, "ours": False},
        )

    def test_messages_lose_secrets_paths_and_litellm_s_debug_context(self):
        error = litellm.BadRequestError(
            message="OpenAIException - key sk-abcdefghijkl1234 rejected, see /opt/python/lib/python3.11/site-packages/x.py\nReceived Model Group=m\nAvailable Model Group Fallbacks=None",
            model="x",
            llm_provider="openai",
        )
        described = describe_error(error, {"configured-secret-value"})
        self.assertEqual(described["message"], "key sk-[redacted] rejected, see [path]")
        self.assertEqual(describe_error(litellm.BadRequestError(message="has configured-secret-value", model="x", llm_provider="openai"), {"configured-secret-value"})["message"], "has [redacted]")

    def test_a_bug_here_is_ours_and_says_nothing_about_itself(self):
        self.assertEqual(
            describe_error(KeyError("/var/task/secret")),
            {
                "status": 500,
                "type": "internal_error",
                "message": "the endpoint failed while handling this request (KeyError); details are in the function's logs",
                "param": None,
                "code": None,
                "retry_after": None,
                "ours": True,
            },
        )

    def test_a_config_error_is_ours(self):
        described = describe_error(ConfigError("models.yaml: model_list must be ..."))
        self.assertEqual((described["status"], described["type"], described["ours"]), (500, "config_error", True))


if __name__ == "__main__":
    unittest.main(verbosity=2)
