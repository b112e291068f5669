"""One error family for the whole data plane: every failure carries its HTTP status.

Transports turn any `ServingError` into `{"error": message}` with `status_code` (and `headers`),
so no layer below HTTP needs to know about responses.
"""

from __future__ import annotations

import re


class ServingError(Exception):
    status_code = 500
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if headers is not None:
            self.headers = headers


class BadRequest(ServingError):
    status_code = 400


class Unauthorized(ServingError):
    status_code = 401


class Forbidden(ServingError):
    status_code = 403


class NotFound(ServingError):
    status_code = 404


class ModelNotFound(NotFound):
    pass


def existing_names(names: list[str], limit: int = 5) -> str:
    """`; existing: 'a', 'b' (and 2 more)` for a 404 message: the caller sees what it could have meant."""
    if not names:
        return "; there are none"
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return "; existing: " + ", ".join(repr(n) for n in sorted(names)[:limit]) + more


def statistics_hint(name: str) -> str:
    """For a 404 of the name `stats`: Triton's statistics extension (GET /v2/models/stats) reads as the
    metadata of a model of that name; say that it is not served, rather than only that no model is named so."""
    return (
        " (Triton's statistics extension, GET /v2/models/stats, is not served here)"
        if name == "stats"
        else ""
    )


# Triton's extensions that are not served here: (path pattern, gRPC methods, what it is), so a client hears that
# rather than "no route" / "Method not found!"
UNSERVED_EXTENSIONS = (
    (r"/v2(/models/[^/]+(/versions/[^/]+)?)?/stats", ("ModelStatistics",), "statistics"),
    (r"/v2(/models/[^/]+)?/trace/setting", ("TraceSetting",), "trace"),
    (r"/v2/logging", ("LogSettings",), "logging"),
    (
        r"/v2/systemsharedmemory(/.*)?",
        ("SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister"),
        "system shared memory",
    ),
    (
        r"/v2/cudasharedmemory(/.*)?",
        ("CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister"),
        "CUDA shared memory",
    ),
)
_UNSERVED_PATHS = [(re.compile(pattern), name) for pattern, _, name in UNSERVED_EXTENSIONS]


def unserved_extension(path: str) -> str:
    """` (Triton's X extension is not served here)` for a path of one of Triton's extensions, else ""."""
    for pattern, name in _UNSERVED_PATHS:
        if pattern.fullmatch(path):
            return f" (Triton's {name} extension is not served here)"
    return ""


class MethodNotAllowed(ServingError):
    status_code = 405


class PayloadTooLarge(ServingError):
    status_code = 413


class UnsupportedMediaType(ServingError):
    status_code = 415


class ModelFailure(ServingError):
    status_code = 500


class ClientGone(ServingError):
    """The client hung up while its request waited: nobody to answer (nginx's 499, in metrics and logs)."""

    status_code = 499


class ServiceUnavailable(ServingError):
    """Not ready or overloaded; `Retry-After` tells clients when to come back."""

    status_code = 503
    headers = {"Retry-After": "1"}


class ModelNotReady(ServiceUnavailable):
    pass


class BadGateway(ServingError):
    """A model server's answer no client could read (malformed, an invalid status): RFC 9110 §15.6.3."""

    status_code = 502


class GatewayTimeout(ServingError):
    status_code = 504


class ArtifactError(ServingError):
    """The model directory or artifact cannot be used (missing, ambiguous, unknown runtime)."""

    status_code = 400


class ArtifactRefused(ArtifactError):
    """Loading was refused by policy (pickles disabled, path outside the allowed roots)."""

    status_code = 403


INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


def user_code_error(exc: Exception, subject: str, stage: str = "", *, input_errors: bool = True) -> Exception:
    """Map what model or transformer code raised onto the family: input-shaped errors are the caller's (400)
    when the code consumed the caller's input (`input_errors`), anything else the code's own (500); ours come
    back unchanged, but for a `ModelFailure` raised without naming `subject`, which gets it in front. `subject` names the code ("model 'iris'"), `stage` the step ("preprocess"). A function, not
    a context manager: the hot callers (dataplane.call_runtime, Transformer.apredict) build nothing per call
    unless it fails."""
    failed = f"{subject} {stage} failed" if stage else f"{subject} failed"
    if isinstance(exc, ServingError):
        if type(exc) is ModelFailure and subject not in exc.message:  # the code's own 500, as it worded it
            return ModelFailure(f"{failed}: {exc.message}")
        return exc
    if isinstance(exc, INPUT_ERRORS):
        if not input_errors:
            return ModelFailure(f"{failed}: {public_text(exc)}")
        return BadRequest(f"{subject} rejected the input: {public_text(exc)}")
    return ModelFailure(f"{failed}: {public_text(exc)}")


_NATIVE_TRACE = re.compile(r"\s*(Stack trace|Traceback \(most recent call last\)):.*", re.DOTALL)
_LOG_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] (?:[^\s:]+:\d+: )?")  # dmlc/XGBoost "[12:59:41] /src/x.h:20: "
_SERVER_PATH = re.compile(r"(?<![\w:/])/(?:[\w.+@~-]+/)+([\w.+@~-]+)")


def public_text(exc: BaseException) -> str:
    """`Type: message` fit for a client: no native stack trace, no log prefix, no server filesystem path
    (a path keeps only its last part). Library messages are written for the server's operator, not callers."""
    text = scrubbed(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scrubbed(text: str) -> str:
    """`text` without a native stack trace, a log prefix or the directories of a server path."""
    return _SERVER_PATH.sub(r"\1", _LOG_PREFIX.sub("", _NATIVE_TRACE.sub("", text))).strip()
