"""JSON-lines bridge between the Node.js chat service and LiteLLM, run by litellm/litellmClient.js.

Protocol (one JSON object per line, UTF-8):

  Node -> bridge (stdin):
    {"id": "7", "type": "completion", "params": {...litellm.acompletion keyword arguments...}}
    {"id": "8", "type": "health"}
    {"id": "7", "type": "cancel"}            # the caller gave up; drop the work, send nothing

  bridge -> Node (a duplicate of the original stdout):
    {"type": "ready", "pid": 123, "python": "3.11.14", "litellm": "1.78.7"}
    {"type": "fatal", "message": "..."}      # the bridge cannot start (e.g. litellm fails to import)
    {"id": "7", "type": "result", "response": {...}}
    {"id": "7", "type": "chunk", "chunk": {...}}   # streaming: one message per chunk ...
    {"id": "7", "type": "end"}                     # ... then the end marker
    {"id": "7", "type": "error", "error": {"type": "RateLimitError", "status": 429,
                                           "provider": "openai", "message": "..."}}

LiteLLM and other libraries print to stdout (print_verbose, warnings, native code writing to fd 1).
So before anything else is imported, the protocol gets its own copy of file descriptor 1, fd 1 is
pointed at stderr, and sys.stdout becomes sys.stderr: whatever a library prints ends up in the logs
and can never corrupt the protocol.
"""

import os
import sys

PROTOCOL_FD = os.dup(1)
os.dup2(2, 1)
sys.stdout = sys.stderr

# Without this, `import litellm` downloads a model price list over the network (and hangs in a VPC
# without NAT). docs/architecture.md §9.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import traceback  # noqa: E402

# Requests and replies can be large (long conversations, 10 MB answers).
MAX_LINE_BYTES = 256 * 1024 * 1024
# Error messages are cut to this many characters: enough to diagnose, never a whole echoed body.
MAX_ERROR_CHARS = 2000
# Parameters whose values are secrets and must never appear in an error message.
SECRET_PARAMS = ("api_key", "aws_secret_access_key", "aws_session_token", "azure_ad_token", "vertex_credentials")


def send(message):
    """Writes one protocol message; blocking writes from the event loop thread keep lines whole."""
    data = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:
        written = os.write(PROTOCOL_FD, view)
        view = view[written:]


def log(text):
    print(f"bridge: {text}", file=sys.stderr, flush=True)


try:
    import litellm  # noqa: E402
    from importlib.metadata import version as _dist_version  # noqa: E402

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    LITELLM_VERSION = _dist_version("litellm")
    # Modules named here are imported after litellm, e.g. to register LiteLLM callbacks.
    for _module in filter(None, (m.strip() for m in os.environ.get("LITELLM_BRIDGE_IMPORTS", "").split(","))):
        __import__(_module)
except BaseException as exc:  # noqa: BLE001 - any failure here must reach the Node side
    traceback.print_exc(file=sys.stderr)
    send({"type": "fatal", "message": f"the bridge could not start: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]})
    sys.exit(1)


def dump(model):
    """A LiteLLM response or chunk (pydantic models) as plain JSON data."""
    if hasattr(model, "model_dump"):
        return model.model_dump()
    if hasattr(model, "dict"):
        return model.dict()
    return model


def redact(text, params):
    for name in SECRET_PARAMS:
        secret = params.get(name) if isinstance(params, dict) else None
        if isinstance(secret, str) and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text[:MAX_ERROR_CHARS]


def describe_error(exc, params):
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = None
    provider = getattr(exc, "llm_provider", None)
    return {
        "type": type(exc).__name__,
        "status": status,
        "provider": provider if isinstance(provider, str) else None,
        "timeout": isinstance(exc, (asyncio.TimeoutError, litellm.exceptions.Timeout)),
        "message": redact(str(exc) or type(exc).__name__, params),
    }


async def handle(request):
    request_id = request["id"]
    kind = request.get("type")
    params = request.get("params") or {}
    try:
        if kind == "completion":
            if not isinstance(params, dict):
                raise TypeError("params must be an object of litellm.acompletion keyword arguments")
            response = await litellm.acompletion(**params)
            if params.get("stream"):
                async for chunk in response:
                    send({"id": request_id, "type": "chunk", "chunk": dump(chunk)})
                send({"id": request_id, "type": "end"})
            else:
                send({"id": request_id, "type": "result", "response": dump(response)})
        elif kind == "health":
            send({"id": request_id, "type": "result", "response": health()})
        else:
            raise ValueError(f"unknown request type {kind!r}: expected completion, health or cancel")
    except asyncio.CancelledError:
        # The caller timed out and said so; it no longer waits for an answer.
        pass
    except Exception as exc:  # noqa: BLE001 - every failure becomes a structured reply
        send({"id": request_id, "type": "error", "error": describe_error(exc, params)})


def health():
    return {
        "pid": os.getpid(),
        "python": platform.python_version(),
        "litellm": LITELLM_VERSION,
        "executable": sys.executable,
    }


async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    stdin = os.fdopen(0, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    tasks = {}
    send({"type": "ready", **health()})
    while True:
        try:
            line = await reader.readline()
        except ValueError as exc:
            log(f"ignoring a request line longer than {MAX_LINE_BYTES} bytes: {exc}")
            continue
        if not line:
            break
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("id"), str):
                raise ValueError("expected an object with a string id")
        except ValueError as exc:
            log(f"ignoring a malformed request line ({exc}): {line[:200]!r}")
            continue
        request_id = request["id"]
        if request.get("type") == "cancel":
            task = tasks.pop(request_id, None)
            if task is not None:
                task.cancel()
            continue
        task = asyncio.create_task(handle(request))
        tasks[request_id] = task
        task.add_done_callback(lambda _task, request_id=request_id: tasks.pop(request_id, None))
    # stdin closed: the client is shutting down.
    for task in list(tasks.values()):
        task.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
