"""The checks `cargo xtask verify` runs inside the layer's own interpreter.

Run as `python3.X check_layer.py CONFIG_JSON` with the Lambda environment (PYTHONHOME,
PYTHONPATH, LITELLM_LOCAL_MODEL_COST_MAP). Each result is one stdout line starting with
`@@verify ` followed by a JSON object; anything else on stdout is LiteLLM's own output.
The config names the enabled providers' workloads: the OpenAI one against the local
OpenAI-compatible server, the others against their mocks (completion and streaming each, boto3
clients for Bedrock). Network access to anything but the loopback servers is blocked and reported: the layer must
import and count tokens offline. The last lines list every module loaded from a .py or .pyc file:
`verify` checks each had bytecode, and `verify --record-profile` writes them as the import profile.
"""

import json
import sys
import time

OUT = sys.stdout


def emit(**fields):
    OUT.write("@@verify " + json.dumps(fields) + "\n")
    OUT.flush()


CONFIG = json.loads(sys.argv[1])

if CONFIG["mode"] == "time":
    started = time.perf_counter()
    import litellm  # noqa: F401

    emit(check="time", ok=True, ms=(time.perf_counter() - started) * 1000.0)
    raise SystemExit(0)

import linecache  # noqa: E402

# Files whose source text is read while the workload runs (inspect.getsource, tracebacks): the
# modules behind them must keep their .py even when the profile ships the others sourceless
# (anyio, for one, parses its own source at import time).
SOURCE_READ = set()
_getlines = linecache.getlines


def recording_getlines(filename, module_globals=None):
    SOURCE_READ.add(filename)
    return _getlines(filename, module_globals)


linecache.getlines = recording_getlines

# Every module found in a .py or .pyc file, including imports that then fail (dateutil.tz.win
# without winreg, urllib3.contrib.pyopenssl without OpenSSL): their code runs on every cold start
# too, so they belong in the import profile, though they never reach sys.modules.
FOUND = {}


class RecordingFinder:
    """Asks the other finders of sys.meta_path, in order, and notes what they found."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is RecordingFinder or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if isinstance(spec.origin, str) and spec.origin.endswith((".py", ".pyc")):
                    FOUND[name] = spec.origin
                return spec
        return None


sys.meta_path.insert(0, RecordingFinder)

import importlib  # noqa: E402
import socket  # noqa: E402
import traceback  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ATTEMPTS = []
_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect


def _host_name(host):
    return host.decode("ascii", "replace") if isinstance(host, bytes) else host


def guarded_getaddrinfo(host, *args, **kwargs):
    name = _host_name(host)
    if name is not None and name not in LOOPBACK:
        ATTEMPTS.append(str(name))
        raise OSError("network access to %s blocked by cargo xtask verify (the layer must work offline)" % name)
    return _getaddrinfo(host, *args, **kwargs)


def guarded_connect(self, address):
    if isinstance(address, tuple) and _host_name(address[0]) not in LOOPBACK:
        ATTEMPTS.append(str(address[0]))
        raise OSError("network access to %s blocked by cargo xtask verify" % (address[0],))
    return _connect(self, address)


socket.getaddrinfo = guarded_getaddrinfo
socket.socket.connect = guarded_connect

emit(check="python", ok=True, detail="%s (%s) prefix=%s" % (sys.version.split()[0], sys.platform, sys.prefix))

imported = set()
for name in CONFIG["imports"]:
    started = time.perf_counter()
    try:
        module = importlib.import_module(name)
    except BaseException:
        emit(check="import", name=name, ok=False, detail=traceback.format_exc())
        continue
    imported.add(name)
    where = getattr(module, "__file__", None) or "namespace package"
    emit(check="import", name=name, ok=True, detail=where, ms=(time.perf_counter() - started) * 1000.0)

def stream_pieces(litellm, request):
    """The non-empty content deltas of a streamed completion, in order."""
    pieces = []
    for chunk in litellm.completion(stream=True, **request):
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            pieces.append(delta)
    return pieces


def openai_workload(litellm):
    """Completion, streaming and async against the local OpenAI-compatible server."""
    request = dict(
        model="openai/xtask-verify",
        api_base=CONFIG["api_base"],
        api_key="sk-test",
        messages=[{"role": "user", "content": CONFIG["prompt"]}],
        timeout=60,
    )
    try:
        response = litellm.completion(**request)
        text = response.choices[0].message.content
        emit(check="completion", ok=text == CONFIG["expect"], detail=repr(text))
    except BaseException:
        emit(check="completion", ok=False, detail=traceback.format_exc())

    try:
        pieces = stream_pieces(litellm, request)
        text = "".join(pieces)
        emit(check="stream", ok=text == CONFIG["expect"], detail="%d chunks: %r" % (len(pieces), text))
    except BaseException:
        emit(check="stream", ok=False, detail=traceback.format_exc())

    async def async_completions():
        response = await litellm.acompletion(**request)
        plain = response.choices[0].message.content
        pieces = []
        async for chunk in await litellm.acompletion(stream=True, **request):
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                pieces.append(delta)
        return plain, pieces

    try:
        import asyncio

        plain, pieces = asyncio.run(async_completions())
        text = "".join(pieces)
        emit(
            check="async",
            ok=plain == CONFIG["expect"] and text == CONFIG["expect"],
            detail="%r, then %d chunks: %r" % (plain, len(pieces), text),
        )
    except BaseException:
        emit(check="async", ok=False, detail=traceback.format_exc())


def provider_workload(litellm, workload):
    """A completion and a streamed completion against one provider's mock, with the workload's
    environment (the fake AWS credentials) set only meanwhile; then the botocore clients the
    provider needs, which must construct after the botocore-services prune."""
    import os

    provider = workload["provider"]
    saved = {name: os.environ.get(name) for name in workload["env"]}
    os.environ.update(workload["env"])
    try:
        request = dict(workload["request"], messages=[{"role": "user", "content": workload["prompt"]}], timeout=60)
        try:
            response = litellm.completion(**request)
            text = response.choices[0].message.content
            emit(check="provider", provider=provider, call="completion", ok=text == workload["expect"], detail=repr(text))
        except BaseException:
            emit(check="provider", provider=provider, call="completion", ok=False, detail=traceback.format_exc())
        try:
            pieces = stream_pieces(litellm, request)
            text = "".join(pieces)
            emit(
                check="provider",
                provider=provider,
                call="stream",
                ok=text == workload["expect"],
                detail="%d chunks: %r" % (len(pieces), text),
            )
        except BaseException:
            emit(check="provider", provider=provider, call="stream", ok=False, detail=traceback.format_exc())
        for service in workload["clients"]:
            try:
                import boto3

                client = boto3.client(service, region_name=workload["region"])
                emit(
                    check="client",
                    provider=provider,
                    service=service,
                    ok=client.meta.service_model.service_name == service,
                    detail="%s, API %s" % (type(client).__name__, client.meta.service_model.api_version),
                )
            except BaseException as error:
                if type(error).__name__ == "UnknownServiceError":
                    detail = (
                        "botocore has no service model for %r (botocore/data/%s/ is not in the layer): the "
                        "botocore-services prune rule keeps only the services of the enabled providers; add it to "
                        "the provider's botocore-services in xtask/data/providers.toml or to "
                        "[prune] keep-botocore-services in layer.toml\n" % (service, service)
                    )
                else:
                    detail = traceback.format_exc()
                emit(check="client", provider=provider, service=service, ok=False, detail=detail)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if "litellm" in imported:
    import litellm

    try:
        count = litellm.token_counter(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hello, how are you today?"}]
        )
        emit(check="token_counter", ok=isinstance(count, int) and count > 0, detail="%r tokens" % (count,))
    except BaseException:
        emit(check="token_counter", ok=False, detail=traceback.format_exc())

    if CONFIG["openai"]:
        openai_workload(litellm)
    for workload in CONFIG["providers"]:
        provider_workload(litellm, workload)


def check_extension_modules():
    """dlopen every shared object of the layer's site-packages with every symbol bound (ctypes
    passes RTLD_NOW), and find PyInit_<name> in each extension module: stripping must keep what
    the dynamic loader and the import system need. Part of the workload: ctypes, which it uses, is
    in the import profile."""
    import ctypes
    import os

    site_packages = os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    loaded, problems = 0, []
    for directory, _, files in sorted(os.walk(site_packages)):
        for name in sorted(files):
            if not (name.endswith(".so") or ".so." in name):
                continue
            path = os.path.join(directory, name)
            try:
                library = ctypes.CDLL(path)
                if name.endswith(".so") and not os.path.basename(directory).endswith(".libs"):
                    init = "PyInit_" + name.split(".")[0]
                    if not hasattr(library, init):
                        raise OSError("no %s symbol" % init)
                loaded += 1
            except OSError as error:
                problems.append("%s: %s" % (os.path.relpath(path, site_packages), error))
    if problems:
        emit(check="extensions", ok=False, detail="\n".join(problems) + "\n")
    else:
        emit(check="extensions", ok=loaded > 0, detail="%d shared objects load with every symbol bound" % loaded)

def loaded_modules():
    """Every module loaded (or found, see FOUND) from a .py or .pyc file, with where it came from:
    the import profile."""
    found = dict(FOUND)
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None) if spec is not None else None
        if isinstance(origin, str) and (origin.endswith(".py") or origin.endswith(".pyc")):
            found[name] = origin
    return [[name, origin] for name, origin in sorted(found.items())]


def source_read_modules(modules):
    """The loaded modules whose source (or where the source would be, beside a .pyc) was read."""
    wanted = set()
    for filename in SOURCE_READ:
        wanted.add(filename)
        if filename.endswith(".pyc"):
            wanted.add(filename[:-1])
    return sorted(name for name, origin in modules if origin in wanted or origin[:-1] in wanted)


check_extension_modules()
MODULES = loaded_modules()
emit(
    check="modules",
    ok=True,
    multiarch=getattr(sys.implementation, "_multiarch", ""),
    modules=MODULES,
    source_read=source_read_modules(MODULES),
)
emit(check="network", ok=not ATTEMPTS, detail=", ".join(sorted(set(ATTEMPTS))))
emit(check="done", ok=True)
