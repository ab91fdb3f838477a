"""The OpenAI endpoint's Python side: the model policy, served through `litellm.Router`.

The model policy is one file in LiteLLM proxy's own config format
(<https://docs.litellm.ai/docs/proxy/configs>):

    model_list:
      - model_name: gpt-4o-mini            # the name callers send as "model"
        litellm_params:                    # keyword arguments for litellm (provider, key, base URL)
          model: openai/gpt-4o-mini
          api_key: os.environ/OPENAI_API_KEY
    router_settings:                       # optional: litellm.Router arguments
      num_retries: 0
    litellm_settings:                      # optional: module-wide litellm settings
      drop_params: true

`load()` reads and checks it (every problem is a `ConfigError` naming the file, the entry and what
is wrong); `Endpoint.handle()` answers the `chat`, `embeddings` and `models` requests of the Node
handler; `describe_error()` turns any exception into the OpenAI error shape with the provider's
status (see amplify-lambda-js/README.md, "Errors").

Only names in `model_list` are served: a caller cannot reach a provider, a base URL or a key that is
not configured, and request fields are never read as LiteLLM's own keyword arguments (fields that
are not part of the OpenAI API go to the provider in `extra_body`).
"""

import functools
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("openai_endpoint")

# The function's root: the directory holding index.js, models.yaml and litellm/.
FUNCTION_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_NAME = "models.yaml"
ENV_PREFIX = "os.environ/"

# Fields of the OpenAI chat completions request body that litellm.acompletion takes under the
# same name and meaning <https://platform.openai.com/docs/api-reference/chat/create>.
CHAT_FIELDS = frozenset(
    {
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
# Fields of the embeddings request body <https://platform.openai.com/docs/api-reference/embeddings>.
EMBEDDING_FIELDS = frozenset({"input", "dimensions", "encoding_format", "user"})

# The parts of the proxy config this endpoint understands; anything else is a ConfigError rather
# than a silently ignored setting.
TOP_LEVEL_KEYS = ("model_list", "router_settings", "litellm_settings")
ENTRY_KEYS = ("model_name", "litellm_params", "model_info")
ROUTER_SETTINGS = (
    "allowed_fails",
    "content_policy_fallbacks",
    "context_window_fallbacks",
    "cooldown_time",
    "disable_cooldowns",
    "fallbacks",
    "max_fallbacks",
    "model_group_alias",
    "num_retries",
    "retry_after",
    "retry_policy",
    "routing_strategy",
    "stream_timeout",
    "timeout",
)
LITELLM_SETTINGS = ("drop_params", "modify_params", "request_timeout")

# Defaults that differ from litellm.Router's, and why:
# - num_retries 1 retries only connection-level failures (see `_policy_router_class`): the caller's SDK
#   retries provider errors itself, and a second retry layer would multiply provider calls (and bills);
# - max_retries 0 on each deployment stops the provider SDK inside LiteLLM from retrying as well;
# - cooldowns would turn one provider error into "no deployments available" for later callers.
DEFAULT_ROUTER_SETTINGS = {"num_retries": 1, "disable_cooldowns": True}
DEFAULT_DEPLOYMENT_PARAMS = {"max_retries": 0}

# Error messages are cut to this many characters: enough to diagnose, never a whole echoed body.
MAX_MESSAGE_CHARS = 1000


class ConfigError(Exception):
    """The model config cannot be used; the message names the file, the entry and what is wrong."""


class RequestError(Exception):
    """A request the caller must fix (status 400 or 404); carries the OpenAI error fields."""

    def __init__(self, message, *, status=400, param=None, code=None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


def default_config_path():
    """`MODELS_CONFIG` when set, else `models.yaml` in the function's root."""
    configured = os.environ.get("MODELS_CONFIG")
    return Path(configured) if configured else FUNCTION_ROOT / DEFAULT_CONFIG_NAME


def load(config_path=None):
    """Reads and checks the model config; returns an `Endpoint` (nothing is built yet: see `warm`)."""
    path = Path(config_path) if config_path else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: model config not found: create it (see amplify-lambda-js/models.yaml) "
            "or point MODELS_CONFIG at one"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the model config: {exc}") from None
    return Endpoint(path, parse_config(text, str(path)))


def parse_config(text, source):
    """Checks a config text; returns `{model_list, router_settings, litellm_settings, secrets}`."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping with a model_list, got {_kind(document)}")
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{source}: unsupported top-level key {key!r}: this endpoint reads {', '.join(TOP_LEVEL_KEYS)}")
    entries = document.get("model_list")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{source}: model_list must be a non-empty list of {{model_name, litellm_params}} entries, got {_kind(entries)}"
        )
    secrets = set()
    model_list = []
    for index, entry in enumerate(entries):
        model_list.append(_check_entry(entry, f"{source}: model_list[{index}]", secrets))
    names = {entry["model_name"] for entry in model_list}

    router_settings = _settings(document, "router_settings", ROUTER_SETTINGS, source)
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        _check_fallbacks(router_settings.get(key), names, f"{source}: router_settings.{key}")
    for key in ("num_retries", "allowed_fails", "max_fallbacks"):
        value = router_settings.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{source}: router_settings.{key} must be a non-negative integer, got {value!r}")
    for key in ("timeout", "stream_timeout", "retry_after", "cooldown_time"):
        value = router_settings.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{source}: router_settings.{key} must be a non-negative number of seconds, got {value!r}")
    litellm_settings = _settings(document, "litellm_settings", LITELLM_SETTINGS, source)
    for key in ("drop_params", "modify_params"):
        value = litellm_settings.get(key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{source}: litellm_settings.{key} must be true or false, got {value!r}")
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": litellm_settings,
        "secrets": secrets,
    }


def _kind(value):
    if value is None:
        return "nothing"
    if value == [] or value == {}:
        return "an empty " + ("list" if isinstance(value, list) else "mapping")
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)


def _check_entry(entry, where, secrets):
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with model_name and litellm_params, got {_kind(entry)}")
    for key in entry:
        if key not in ENTRY_KEYS:
            raise ConfigError(f"{where}: unsupported key {key!r}: an entry has {', '.join(ENTRY_KEYS)}")
    name = entry.get("model_name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: model_name must be a non-empty string (the name callers send as \"model\"), got {name!r}")
    where = f"{where} ({name})"
    params = entry.get("litellm_params")
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: litellm_params must be a mapping with at least `model: <provider>/<model>`, got {_kind(params)}")
    model = params.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: litellm_params.model must be a non-empty string such as \"openai/gpt-4o-mini\", got {model!r}")
    resolved = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: litellm_params has a key that is not a string: {key!r}")
        resolved[key] = _resolve_secrets(value, f"{where}: litellm_params.{key}", secrets)
    for key, value in DEFAULT_DEPLOYMENT_PARAMS.items():
        resolved.setdefault(key, value)
    info = entry.get("model_info")
    if info is not None and not isinstance(info, dict):
        raise ConfigError(f"{where}: model_info must be a mapping, got {_kind(info)}")
    checked = {"model_name": name, "litellm_params": resolved}
    if info is not None:
        checked["model_info"] = dict(info)
    return checked


def _resolve_secrets(value, where, secrets):
    """Replaces `os.environ/NAME` with the variable's value (LiteLLM proxy's secret reference)."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{where}: {value!r} does not name an environment variable (expected os.environ/NAME)")
        resolved = os.environ.get(name)
        if resolved is None or resolved == "":
            raise ConfigError(
                f"{where}: environment variable {name} is not set: set it in the function's environment "
                "(serverless.yml provider.environment) or remove the entry"
            )
        secrets.add(resolved)
        return resolved
    if isinstance(value, dict):
        return {key: _resolve_secrets(item, f"{where}.{key}", secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(item, f"{where}[{index}]", secrets) for index, item in enumerate(value)]
    return value


def _settings(document, section, allowed, source):
    settings = document.get(section)
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: {section} must be a mapping, got {_kind(settings)}")
    for key in settings:
        if key not in allowed:
            raise ConfigError(f"{source}: {section}.{key} is not supported here: supported are {', '.join(allowed)}")
    return dict(settings)


def _check_fallbacks(fallbacks, names, where):
    if fallbacks is None:
        return
    if not isinstance(fallbacks, list):
        raise ConfigError(f"{where}: expected a list of {{model_name: [fallback names]}} mappings, got {_kind(fallbacks)}")
    for index, item in enumerate(fallbacks):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}[{index}]: expected a mapping {{model_name: [fallback names]}}, got {_kind(item)}")
        for name, targets in item.items():
            if not isinstance(targets, list):
                raise ConfigError(f"{where}[{index}].{name}: expected a list of model names, got {_kind(targets)}")
            for target in [name, *targets]:
                if target not in names:
                    raise ConfigError(f"{where}[{index}]: {target!r} is not a model_name of model_list")


class Endpoint:
    """The configured models, served through one `litellm.Router` (built on first use or by `warm`)."""

    def __init__(self, path, config):
        self.path = Path(path)
        self.model_list = config["model_list"]
        self.router_settings = config["router_settings"]
        self.litellm_settings = config["litellm_settings"]
        self.secrets = frozenset(config["secrets"])
        names = []
        for entry in self.model_list:
            if entry["model_name"] not in names:
                names.append(entry["model_name"])
        # Names in file order; a name listed twice is one model served by two deployments.
        self.model_names = tuple(names)
        try:
            self.created = int(self.path.stat().st_mtime)
        except OSError:
            self.created = 0
        self._router = None

    def secret_values(self):
        """Every secret the config resolved from the environment (for redaction)."""
        return self.secrets

    def warm(self):
        """Builds the Router and the provider clients the first request would otherwise pay for."""
        self._get_router()

    def _get_router(self):
        if self._router is None:
            import litellm

            for key, value in self.litellm_settings.items():
                if key == "request_timeout":
                    litellm.request_timeout = value
                else:
                    setattr(litellm, key, value)
            settings = {**DEFAULT_ROUTER_SETTINGS, **self.router_settings}
            self._router = _policy_router_class()(model_list=[dict(entry) for entry in self.model_list], **settings)
        return self._router

    def _check_model(self, params):
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError('field "model" is required and must be a non-empty string', param="model")
        if model not in self.model_names:
            listed = ", ".join(self.model_names[:20]) + (", ..." if len(self.model_names) > 20 else "")
            raise RequestError(
                f"The model `{model[:100]}` does not exist or you do not have access to it. Models served here: {listed}.",
                status=404,
                code="model_not_found",
                param="model",
            )
        return model

    async def handle(self, kind, params, emit):
        """Answers one request: returns the reply dict, or for `stream: true` emits chunks and returns None."""
        if kind == "models":
            return self.models()
        if not isinstance(params, dict):
            raise RequestError("the request body must be a JSON object")
        if kind == "chat":
            return await self._chat(params, emit)
        if kind == "embeddings":
            return await self._embeddings(params)
        raise ValueError(f"unknown request kind {kind!r}: expected chat, embeddings or models")

    def models(self):
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": self.created, "owned_by": "amplify"} for name in self.model_names],
        }

    async def _chat(self, params, emit):
        model = self._check_model(params)
        kwargs = {"model": model}
        extra_body = {}
        for key, value in params.items():
            if key == "model":
                continue
            if key in CHAT_FIELDS:
                kwargs[key] = value
            else:
                # Not a LiteLLM keyword argument: forwarded to the provider as is.
                extra_body[key] = value
        if extra_body:
            kwargs["extra_body"] = extra_body
        router = self._get_router()
        if kwargs.get("stream"):
            response = await router.acompletion(**kwargs)
            async for chunk in response:
                emit(_usage_chunk(_dump(chunk)))
            return None
        kwargs.pop("stream", None)
        return _dump(await router.acompletion(**kwargs))

    async def _embeddings(self, params):
        model = self._check_model(params)
        if "input" not in params:
            raise RequestError('field "input" is required: a string or an array of strings or token arrays', param="input")
        kwargs = {"model": model}
        for key, value in params.items():
            if key == "model":
                continue
            if key in EMBEDDING_FIELDS:
                kwargs[key] = value
            else:
                log.warning("embeddings: dropping field %r (not part of the OpenAI embeddings request)", key)
        return _dump(await self._get_router().aembedding(**kwargs))


_DELTA_FIELDS = ("content", "role", "tool_calls", "function_call", "audio", "refusal", "reasoning_content")


def _usage_chunk(chunk):
    """OpenAI sends the usage of `stream_options.include_usage` in a last chunk with `choices: []`;
    LiteLLM gives that chunk one choice with an empty delta, which clients reading
    `chunk.choices[0]` take for a message. It leaves as OpenAI sends it."""
    choices = chunk.get("choices")
    if chunk.get("usage") and isinstance(choices, list) and all(_empty_choice(choice) for choice in choices):
        chunk["choices"] = []
    return chunk


def _empty_choice(choice):
    if not isinstance(choice, dict) or choice.get("finish_reason") is not None:
        return False
    delta = choice.get("delta") or {}
    return all(delta.get(field) in (None, "", []) for field in _DELTA_FIELDS)


def _dump(model):
    """A LiteLLM response or chunk (pydantic models) as plain JSON data."""
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", exclude_none=False)
    if hasattr(model, "dict"):
        return model.dict()
    return model


@functools.lru_cache(maxsize=None)
def _policy_router_class():
    """The Router subclass, made on first use: defining it needs `import litellm`."""
    import litellm

    class PolicyRouter(litellm.Router):
        """litellm.Router that retries only failures where no provider answered.

        A provider's 4xx/5xx reply is never retried here: the caller's SDK decides whether to retry
        it (the OpenAI SDKs retry 408, 409, 429 and 5xx), so retrying here would multiply provider
        calls. A refused or reset connection (e.g. an idle connection closed while the Lambda was
        frozen) is retried up to `num_retries` times, at once: the retry opens a new connection,
        and Router's own backoff (0.5 s to 1.25 s before the first retry) would only delay the
        first request after a thaw.
        """

        def should_retry_this_error(self, error, *args, **kwargs):
            if failure_kind(error) != "connection":
                raise error
            return super().should_retry_this_error(error, *args, **kwargs)

        def _time_to_sleep_before_retry(self, e, *args, **kwargs):
            if failure_kind(e) == "connection":
                return 0
            return super()._time_to_sleep_before_retry(e, *args, **kwargs)

    return PolicyRouter


# OpenAI's error `type` for each status <https://platform.openai.com/docs/guides/error-codes>.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "timeout",
}
PROVIDER_STATUSES = frozenset(ERROR_TYPES)

# Prefixes LiteLLM puts before the provider's message ("litellm.BadRequestError: OpenAIException - ...").
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+Error:\s*)?(?:\w+Exception\s*-\s*)?")
# Context LiteLLM and its Router append to messages: debugging aids for the operator, not the caller.
_LITELLM_SUFFIX = re.compile(r"(?:\.?\s*Received Model Group=|\s*LiteLLM Retried:|\s*, LiteLLM Max Retries:|\nModel: |\nAPI Base: ).*", re.S)
# Filesystem paths (interpreter, site-packages, the function's code) never reach callers.
_PATHS = re.compile(r"(?:/(?:opt|var|usr|home|tmp|root|work|proc)/)[^\s'\"`,;)]*")
_KEY_SHAPES = [
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-[redacted]"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I), r"\1 [redacted]"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1[redacted]"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), "AIza[redacted]"),
]


def redact(text, secrets=()):
    """Removes configured secret values, key-shaped strings and file paths; cuts to MAX_MESSAGE_CHARS."""
    text = str(text)
    for secret in sorted(secrets, key=len, reverse=True):
        if isinstance(secret, str) and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _KEY_SHAPES:
        text = pattern.sub(replacement, text)
    text = _PATHS.sub("[path]", text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "... (truncated)"
    return text


def _chain(exc):
    """`exc` and the exceptions it was raised from: LiteLLM maps a provider's error to its own class
    (a 422 becomes BadRequestError with status 400) but raises it from the original."""
    chain = []
    while exc is not None and len(chain) < 10 and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _provider_error_body(chain):
    """The provider's `error` object ({message, type, param, code}) when an exception carries it."""
    for exc in chain:
        body = getattr(exc, "body", None)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            body = body["error"]
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body
    return {}


def _provider_status(chain):
    """The status in the provider's own HTTP response, when one arrived (else None).

    Only the HTTP clients' exceptions count (openai's APIStatusError, httpx's HTTPStatusError):
    LiteLLM's classes carry statuses of their own, e.g. 500 for a connection that never answered.
    """
    import httpx
    import openai

    for exc in chain:
        from_client = type(exc).__module__.split(".")[0] in ("openai", "httpx")
        if from_client and isinstance(exc, openai.APIStatusError):
            status = exc.status_code
        elif isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
        else:
            continue
        if isinstance(status, int) and 400 <= status <= 599:
            return status
    return None


def failure_kind(exc):
    """`"connection"` when no provider answered (refused, reset, closed), `"timeout"` when it did not
    answer in time, `"reply"` when it answered with an error, `None` for anything else."""
    import httpx
    import openai

    chain = _chain(exc)
    if _provider_status(chain) is not None:
        return "reply"
    if any(isinstance(link, (openai.APITimeoutError, httpx.TimeoutException)) for link in chain):
        return "timeout"
    if any(isinstance(link, (openai.APIConnectionError, httpx.TransportError)) for link in chain):
        return "connection"
    return None


def _retry_after(chain):
    sources = []
    for exc in chain:
        sources += [getattr(exc, "litellm_response_headers", None), getattr(exc, "headers", None), getattr(getattr(exc, "response", None), "headers", None)]
    for source in sources:
        try:
            value = source.get("retry-after") if source is not None else None
        except Exception:  # noqa: BLE001
            value = None
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,6}(?:\.[0-9]+)?|[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:]{8} GMT", value.strip()):
            return value.strip()
    return None


def _clean_message(text):
    text = _LITELLM_SUFFIX.sub("", str(text))
    previous = None
    while previous != text:
        previous = text
        text = _LITELLM_PREFIX.sub("", text, count=1).strip()
    return text


def describe_error(exc, secrets=()):
    """Maps an exception to `{status, type, message, param, code, retry_after, ours}` (OpenAI's error shape).

    Provider errors keep the provider's status; LiteLLM's own timeouts are 504, failures to reach
    the provider 502. `ours` is True for failures of this endpoint (config, bugs), never for the
    provider's. Messages are redacted: no configured secret, key, traceback or file path.
    """
    if isinstance(exc, RequestError):
        return _error(exc.status, "invalid_request_error", str(exc), exc.param, exc.code, None, True, secrets)
    if isinstance(exc, ConfigError):
        return _error(500, "config_error", str(exc), None, "config_error", None, True, secrets)
    try:
        import litellm
    except Exception:  # noqa: BLE001 - litellm failed to import: nothing below can be a LiteLLM error
        litellm = None
    litellm_types = tuple(getattr(litellm, "LITELLM_EXCEPTION_TYPES", None) or ()) if litellm is not None else ()
    if isinstance(exc, litellm_types) or _is_openai_error(exc):
        return _describe_provider_error(exc, litellm, secrets)
    # Anything else is a bug or an unexpected failure here: the details go to the logs, not the caller.
    return _error(
        500,
        "internal_error",
        f"the endpoint failed while handling this request ({type(exc).__name__}); details are in the function's logs",
        None,
        None,
        None,
        True,
        secrets,
    )


def _is_openai_error(exc):
    return any(cls.__module__.startswith("openai") for cls in type(exc).__mro__)


def _describe_provider_error(exc, litellm, secrets):
    chain = _chain(exc)
    body = _provider_error_body(chain)
    raw_message = body.get("message") if isinstance(body.get("message"), str) else None
    message = raw_message or _clean_message(getattr(exc, "message", None) or str(exc)) or type(exc).__name__
    param = body.get("param") if isinstance(body.get("param"), str) else None
    code = body.get("code") if isinstance(body.get("code"), (str, int)) and not isinstance(body.get("code"), bool) else None
    provider_type = body.get("type") if isinstance(body.get("type"), str) else None
    kind = failure_kind(exc)
    status = _provider_status(chain)
    if status is None:
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
    if kind == "timeout" or (status is None and litellm is not None and isinstance(exc, litellm.Timeout)):
        status = 504
        provider_type = "timeout"
        message = "the provider did not answer in time"
    elif kind == "connection":
        status = 502
        provider_type = "api_connection_error"
        message = f"the provider could not be reached: {message}"
    elif type(exc).__name__ == "RouterRateLimitError":
        status = 429
    if status not in PROVIDER_STATUSES:
        status = 502 if status is None or status >= 500 else 400
    if litellm is not None and isinstance(exc, litellm.ContextWindowExceededError):
        code = code or "context_length_exceeded"
    if litellm is not None and isinstance(exc, litellm.ContentPolicyViolationError):
        code = code or "content_policy_violation"
    error_type = provider_type or ERROR_TYPES[status]
    return _error(status, error_type, message, param, None if code is None else str(code), _retry_after(chain), False, secrets)


def _error(status, error_type, message, param, code, retry_after, ours, secrets):
    return {
        "status": status,
        "type": error_type,
        "message": redact(message, secrets),
        "param": param,
        "code": code,
        "retry_after": retry_after,
        "ours": ours,
    }
