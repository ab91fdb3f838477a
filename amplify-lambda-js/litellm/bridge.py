"""JSON-lines bridge between the Node.js chat service and LiteLLM, run by litellm/litellmClient.js.

Protocol (one JSON object per line, UTF-8; the `id` is always the first key):

  Node -> bridge (stdin):
    {"id": "7", "type": "chat", "params": {...}, "request_id": "<Lambda request id>"}
    {"id": "8", "type": "embeddings", "params": {...}}
    {"id": "9", "type": "models"}
    {"id": "10", "type": "health"}
    {"id": "ping-11", "type": "ping"}        # liveness: answered from the event loop at once
    {"id": "7", "type": "cancel"}            # the caller gave up; drop the work, send nothing

  bridge -> Node (a duplicate of the original stdout):
    {"type": "ready", "pid": 123, "python": "3.11.14", "litellm": "1.78.7", ...}
    {"type": "fatal", "kind": "config" | "import", "message": "..."}   # then the bridge exits 1
    {"id": "7", "type": "result", "response": {...}}
    {"id": "7", "type": "chunk", "chunk": {...}}   # streaming: one message per chunk ...
    {"id": "7", "type": "end"}                     # ... then the end marker
    {"id": "7", "type": "error", "error": {...}}   # openai_endpoint.describe_error
    {"id": "7", "type": "too_large", "bytes": N, "limit": L}   # the reply would pass Lambda's limit
    {"id": "ping-11", "type": "pong"}

Startup pays for everything the first request would otherwise pay for, while Lambda's init phase
runs at full speed: the model config is read first (a bad file fails in milliseconds), then
LiteLLM is imported with the cyclic garbage collector disabled (the import allocates hundreds of
thousands of objects and would trigger many useless collections), the endpoint builds its Router
and clients (`Endpoint.warm`), and `gc.freeze()` moves everything allocated so far out of the
collector's sight before it is enabled again (gc.freeze: <https://docs.python.org/3/library/gc.html#gc.freeze>;
Lambda's init phase: <https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>).

LiteLLM and other libraries print to stdout (print_verbose, warnings, native code writing to fd 1).
So before anything else is imported, the protocol gets its own copy of file descriptor 1 and fd 1
is pointed at stderr. Everything written to sys.stdout, sys.stderr or the `logging` module leaves
as one JSON object per line on stderr, with the request id of the request being served; message
contents are removed from those lines and LiteLLM's debug logging (which prints prompts and
replies) is dropped unless LOG_MESSAGE_CONTENTS=1.
"""

import gc

gc.disable()

import os  # noqa: E402
import sys  # noqa: E402

# Requests carry at most Lambda's 6 MB payload plus the JSON envelope (litellmClient.js checks too).
MAX_REQUEST_BYTES = int(os.environ.get("BRIDGE_MAX_REQUEST_BYTES") or 6 * 1024 * 1024 + 64 * 1024)
# Lambda's response limits: 6 MB buffered, 20 MB streamed (litellmClient.js passes them).
MAX_REPLY_BYTES = int(os.environ.get("BRIDGE_MAX_REPLY_BYTES") or 6 * 1024 * 1024)
MAX_STREAM_BYTES = int(os.environ.get("BRIDGE_MAX_STREAM_BYTES") or 20 * 1024 * 1024)
# Error messages are cut to this many characters: enough to diagnose, never a whole echoed body.
MAX_ERROR_CHARS = 2000
# Log lines are cut to this many characters.
MAX_LOG_CHARS = 16 * 1024
# Strings shorter than this are not searched for in log lines (they would match ordinary words).
MIN_SCRUB_CHARS = 8

PROTOCOL_FD = None


def send(message):
    """Writes one protocol message; blocking writes from the event loop thread keep lines whole."""
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: escape everything instead.
        data = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("ascii")
    write_protocol(data)


def write_protocol(data):
    view = memoryview(data)
    while view:
        written = os.write(PROTOCOL_FD, view)
        view = view[written:]


# The key shapes removed from log lines and error messages; the same as common/redact.js, checked
# against the same cases (test/fixtures/redaction_cases.json).
import re  # noqa: E402

SECRET_PATTERNS = [
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-[redacted]"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I), r"\1 [redacted]"),
    (
        re.compile(
            r"\b((?:x-)?api[_-]?key|ocp-apim-subscription-key|authorization|secret(?:[_-]access[_-]key)?"
            r"|(?:session|access|auth)[_-]?token|password)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+",
            re.I,
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"([?&;]key=)[^\s\"'&#,;}]+", re.I), r"\1[redacted]"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1[redacted]"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), "AIza[redacted]"),
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), "[redacted hex]"),
]
SECRET_ENV_NAME = re.compile(r"(API_KEY|SECRET|TOKEN|PASSWORD|CREDENTIALS?|SUBSCRIPTION_KEY)($|_)", re.I)


def secret_values(env, secret_env_names=(), extra=()):
    """Values of secret-named variables, of the variables the model config names, and `extra`; longest first."""
    values = {value for name, value in env.items() if SECRET_ENV_NAME.search(name) or name in secret_env_names}
    values.update(extra)
    return sorted((v for v in values if isinstance(v, str) and len(v) >= MIN_SCRUB_CHARS), key=len, reverse=True)


def redact_text(text, secrets=()):
    """`text` without the given secret values and without key-shaped strings."""
    text = str(text)
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Filled in at startup: the secret values to remove from every log line and error message.
SECRETS = []


def main():
    global PROTOCOL_FD
    PROTOCOL_FD = os.dup(1)
    os.dup2(2, 1)
    # Without this, `import litellm` downloads a model price list over the network (and hangs in a
    # VPC without NAT).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    die_with_parent()
    install_logging()
    endpoint = start()
    try:
        asyncio.run(serve(endpoint))
    except KeyboardInterrupt:
        pass


def die_with_parent():
    """Asks Linux to SIGKILL this process when the Node process dies, so it is never orphaned.

    PR_SET_PDEATHSIG <https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html>; if the
    parent died before the call, this process is already orphaned and exits.
    """
    parent = os.environ.get("BRIDGE_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    import signal

    pr_set_pdeathsig = 1
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (ImportError, OSError, AttributeError) as exc:
        log("warning", f"cannot ask to die with the Node process ({exc}); the bridge exits when its stdin closes")
    if str(os.getppid()) != parent:
        os._exit(0)


import asyncio  # noqa: E402
import contextvars  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

REQUEST_ID = contextvars.ContextVar("request_id", default=None)
# The message contents of the request being served, removed from its log lines.
REQUEST_TEXTS = contextvars.ContextVar("request_texts", default=())
LOG_CONTENTS = os.environ.get("LOG_MESSAGE_CONTENTS", "").lower() in ("1", "true", "yes")


# Terminal colour codes LiteLLM puts in some messages.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def log(level, message, **fields):
    """Writes one JSON log line to stderr: {level, msg, pid, request_id?, ...fields}."""
    text = ANSI_ESCAPE.sub("", str(message)).strip("\n")
    if not LOG_CONTENTS:
        for content in REQUEST_TEXTS.get():
            text = text.replace(content, "[message content]")
    text = redact_text(text, SECRETS)
    if len(text) > MAX_LOG_CHARS:
        text = text[:MAX_LOG_CHARS] + "... (truncated)"
    record = {"level": level, "msg": text, "pid": os.getpid()}
    request_id = REQUEST_ID.get()
    if request_id is not None:
        record["request_id"] = request_id
    record.update(fields)
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "replace")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(2, view) :]
    except OSError:
        pass


class JsonLogHandler(logging.Handler):
    """Sends `logging` records through `log` (JSON, request id, redacted)."""

    LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error", logging.CRITICAL: "critical"}

    def emit(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not lose the line
            message = str(record.msg)
        if record.exc_info:
            message = f"{message}\n{''.join(traceback.format_exception(*record.exc_info))}"
        log(self.LEVELS.get(record.levelno, "info"), message, logger=record.name)


class JsonLineWriter(io.TextIOBase):
    """A text stream (for sys.stdout and sys.stderr) that logs each line it is given."""

    def __init__(self, stream, level):
        super().__init__()
        self.stream = stream
        self.level = level
        self.pending = ""

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        if len(self.pending) > MAX_LOG_CHARS:
            lines.append(self.pending)
            self.pending = ""
        for line in lines:
            if line.strip():
                log(self.level, line, stream=self.stream)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def install_logging():
    """Routes `logging`, sys.stdout and sys.stderr through JSON log lines.

    Debug records are dropped unless LOG_MESSAGE_CONTENTS=1: LiteLLM's debug output (LITELLM_LOG=DEBUG,
    set_verbose) prints whole requests and replies.
    """
    handler = JsonLogHandler(logging.DEBUG if LOG_CONTENTS else logging.INFO)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    sys.stdout = JsonLineWriter("stdout", "info")
    sys.stderr = JsonLineWriter("stderr", "warning")


def quiet_litellm(litellm):
    """LiteLLM logs through its own stream handlers: send its loggers through ours instead.

    LITELLM_LOG=DEBUG turns on LiteLLM's debug records (as it does for LiteLLM's proxy); they carry
    whole requests and replies, so the handler drops them unless LOG_MESSAGE_CONTENTS=1.
    """
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    if os.environ.get("LITELLM_LOG", "").upper() == "DEBUG":
        litellm._turn_on_debug()
        if not LOG_CONTENTS:
            log("warning", "LITELLM_LOG=DEBUG: LiteLLM's debug records carry prompts and replies and are dropped; set LOG_MESSAGE_CONTENTS=1 to log them")
    if not LOG_CONTENTS:
        litellm.set_verbose = False
        litellm.turn_off_message_logging = True


def fatal(kind, message):
    send({"type": "fatal", "kind": kind, "message": redact_text(message, SECRETS)[:MAX_ERROR_CHARS]})
    sys.exit(1)


def start():
    """Reads the config, imports LiteLLM with the GC off, warms the endpoint, freezes, says ready."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import openai_endpoint
    except BaseException as exc:  # noqa: BLE001 - any failure here must reach the Node side
        log("error", traceback.format_exc())
        fatal("import", f"the bridge could not start: {type(exc).__name__}: {exc}")
    try:
        endpoint = openai_endpoint.load(os.environ.get("MODELS_CONFIG") or None)
    except openai_endpoint.ConfigError as exc:
        log("error", f"model config: {exc}")
        fatal("config", f"the model config cannot be used: {exc}")
    except BaseException as exc:  # noqa: BLE001
        log("error", traceback.format_exc())
        fatal("config", f"the model config cannot be used: {type(exc).__name__}: {exc}")
    secret_names = sorted(name for name, value in os.environ.items() if value and value in endpoint.secret_values())
    SECRETS[:] = secret_values(os.environ, secret_names, endpoint.secret_values())
    try:
        import litellm
        from importlib.metadata import version as dist_version

        imported = time.perf_counter()
        # Modules named here are imported after litellm, e.g. to register LiteLLM callbacks.
        for module in filter(None, (m.strip() for m in os.environ.get("LITELLM_BRIDGE_IMPORTS", "").split(","))):
            __import__(module)
        quiet_litellm(litellm)
        endpoint.warm()
        warm_first_request()
    except openai_endpoint.ConfigError as exc:
        log("error", f"model config: {exc}")
        fatal("config", f"the model config cannot be used: {exc}")
    except BaseException as exc:  # noqa: BLE001
        log("error", traceback.format_exc())
        fatal("import", f"the bridge could not start: {type(exc).__name__}: {exc}")
    warmed = time.perf_counter()
    # Everything allocated so far lives as long as the process: keep the collector off it.
    gc.freeze()
    gc.enable()
    info = {
        "pid": os.getpid(),
        "python": platform.python_version(),
        "litellm": dist_version("litellm"),
        "executable": sys.executable,
        "models": list(endpoint.model_names),
        "secret_env_names": secret_names,
        "import_ms": round((imported - started) * 1000, 1),
        "warm_ms": round((warmed - imported) * 1000, 1),
        "cpu_ms": round((time.process_time() - cpu_started) * 1000, 1),
        "frozen_objects": gc.get_freeze_count(),
    }
    HEALTH.update(info)
    send({"type": "ready", **info})
    log("info", f"ready in {info['import_ms'] + info['warm_ms']:.0f} ms (import {info['import_ms']:.0f} ms, warm-up {info['warm_ms']:.0f} ms)")
    return endpoint


HEALTH = {}

# Modules LiteLLM's first OpenAI-style request imports lazily (the openai SDK loads its resources on
# first attribute access): measured as ~140 ms of the first request's 230 ms on a busy machine.
FIRST_REQUEST_MODULES = (
    "openai.resources.chat.completions.completions",
    "openai.resources.embeddings",
    "openai.lib.streaming.chat",
    "jiter",
    "litellm.router_utils.common_utils",
)


def warm_first_request():
    """Imports now what the first request would otherwise import while the caller waits."""
    import importlib

    for name in FIRST_REQUEST_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log("info", f"warm-up: {name} not imported ({exc}); the first request may be slower")


class ReplyTooLarge(Exception):
    """The reply would pass Lambda's limit."""

    def __init__(self, size, limit):
        super().__init__(f"reply of {size} bytes over the limit of {limit}")
        self.size = size
        self.limit = limit


def request_texts(params):
    """The message contents of a request (and their JSON-escaped forms), longest first."""
    texts = set()

    def add(value):
        if isinstance(value, str) and len(value) >= MIN_SCRUB_CHARS:
            texts.add(value)
            escaped = json.dumps(value)[1:-1]
            if escaped != value:
                texts.add(escaped)

    if isinstance(params, dict):
        for message in params.get("messages") or ():
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict):
                        add(part.get("text"))
            else:
                add(content)
        value = params.get("input")
        for item in value if isinstance(value, list) else [value]:
            add(item)
    return tuple(sorted(texts, key=len, reverse=True))


async def handle(endpoint, describe_error, message):
    request_id = message["id"]
    kind = message.get("type")
    params = message.get("params") if "params" in message else {}
    REQUEST_ID.set(message.get("request_id") if isinstance(message.get("request_id"), str) else None)
    REQUEST_TEXTS.set(request_texts(params))
    streamed = 0

    def emit(chunk):
        nonlocal streamed
        line = json_line({"id": request_id, "type": "chunk", "chunk": chunk})
        streamed += len(line)
        if streamed > MAX_STREAM_BYTES:
            raise ReplyTooLarge(streamed, MAX_STREAM_BYTES)
        write_protocol(line)

    try:
        if kind == "health":
            send({"id": request_id, "type": "result", "response": dict(HEALTH)})
            return
        if kind not in ("chat", "embeddings", "models"):
            raise ValueError(f"unknown request type {kind!r}: expected chat, embeddings, models, health, ping or cancel")
        reply = await endpoint.handle(kind, params, emit)
        if reply is None:
            send({"id": request_id, "type": "end"})
            return
        line = json_line({"id": request_id, "type": "result", "response": reply})
        if len(line) > MAX_REPLY_BYTES:
            raise ReplyTooLarge(len(line), MAX_REPLY_BYTES)
        write_protocol(line)
    except asyncio.CancelledError:
        # The caller timed out and said so; it no longer waits for an answer.
        pass
    except ReplyTooLarge as exc:
        log("warning", f"{kind} reply not sent: {exc}")
        send({"id": request_id, "type": "too_large", "bytes": exc.size, "limit": exc.limit})
    except Exception as exc:  # noqa: BLE001 - every failure becomes a structured reply
        try:
            error = describe_error(exc, SECRETS)
        except Exception as mapping_failure:  # noqa: BLE001 - the request must still get its answer
            log("error", f"{kind}: describing {type(exc).__name__} failed: {''.join(traceback.format_exception(mapping_failure))}")
            error = {"status": 500, "type": "internal_error", "message": "the LiteLLM bridge failed to describe an error",
                     "param": None, "code": "error_mapping_failed", "retry_after": None, "ours": True}
        if error.get("ours"):
            log("error", f"{kind} failed: {''.join(traceback.format_exception(exc))}")
        else:
            log("info", f"{kind}: provider answered {error.get('status')} {type(exc).__name__}")
        error["message"] = redact_text(error.get("message", ""), SECRETS)[:MAX_ERROR_CHARS]
        send({"id": request_id, "type": "error", "error": error})


def json_line(message):
    try:
        return (json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("ascii")


LEADING_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([^"\\]{1,64})"')


class RequestReader(asyncio.Protocol):
    """Splits stdin into request lines of at most MAX_REQUEST_BYTES; longer lines are refused."""

    def __init__(self, on_line, on_eof):
        self.on_line = on_line
        self.on_eof = on_eof
        self.parts = []
        self.size = 0
        self.discarding = False

    def data_received(self, data):
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline == -1:
                break
            piece = data[start:newline]
            if self.discarding:
                self.discarding = False
            elif self.size + len(piece) > MAX_REQUEST_BYTES:
                self.oversize(piece)
            else:
                self.on_line(b"".join([*self.parts, piece]) if self.parts else piece)
            self.parts = []
            self.size = 0
            start = newline + 1
        rest = data[start:]
        if rest and not self.discarding:
            if self.size + len(rest) > MAX_REQUEST_BYTES:
                self.oversize(rest)
                self.parts = []
                self.size = 0
                self.discarding = True
            else:
                self.parts.append(rest)
                self.size += len(rest)

    def oversize(self, piece):
        head = b"".join([*self.parts, piece[:256]])[:256]
        match = LEADING_ID.match(head)
        log("warning", f"refusing a request line longer than {MAX_REQUEST_BYTES} bytes")
        if match:
            request_id = match.group(1).decode("utf-8", "replace")
            message = f"the request is larger than {MAX_REQUEST_BYTES} bytes"
            send({"id": request_id, "type": "error", "error": {"status": 413, "type": "invalid_request_error", "message": message, "param": None, "code": "request_too_large", "retry_after": None, "ours": True}})

    def eof_received(self):
        self.on_eof()
        return False

    def connection_lost(self, exc):
        self.on_eof()


async def serve(endpoint):
    from openai_endpoint import describe_error

    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    tasks = {}

    def on_line(line):
        try:
            message = json.loads(line)
            if not isinstance(message, dict) or not isinstance(message.get("id"), str):
                raise ValueError("expected an object with a string id")
        except ValueError as exc:
            log("warning", f"ignoring a malformed request line ({exc}): {line[:200]!r}")
            return
        request_id = message["id"]
        kind = message.get("type")
        if kind == "ping":
            send({"id": request_id, "type": "pong"})
            return
        if kind == "cancel":
            task = tasks.pop(request_id, None)
            if task is not None:
                task.cancel()
            return
        # A copy of the context per task, so each request's id and contents stay its own.
        task = loop.create_task(handle(endpoint, describe_error, message), context=contextvars.copy_context())
        tasks[request_id] = task
        task.add_done_callback(lambda _task, request_id=request_id: tasks.pop(request_id, None))

    def on_eof():
        if not closed.done():
            closed.set_result(None)

    stdin = os.fdopen(0, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: RequestReader(on_line, on_eof), stdin)
    # stdin closed: the client is shutting down (or the Node process is gone).
    await closed
    for task in list(tasks.values()):
        task.cancel()


if __name__ == "__main__":
    main()
