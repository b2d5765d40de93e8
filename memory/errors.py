"""Every error Mémoire answers with, and the one place that renders them.

The tree::

    MemoireError (500, server_error)
    ├── ConfigError (500, code config_error; a setting missing, unknown or bad: the process does not start)
    ├── PurgeIncomplete (500, code purge_incomplete; forgetting a user left rows: rolled back)
    ├── RequestError (400, invalid_request_error)
    │   ├── InvalidJSON (400, code invalid_json)
    │   │   └── JSONLimitExceeded (400, code json_limit_exceeded; names the field in ``param``)
    │   ├── InvalidField (400, code invalid_value; names the field in ``param``)
    │   ├── PayloadTooLarge (413, code payload_too_large)
    │   ├── NotFound (404, code not_found; names the field in ``param``)
    │   ├── AuthenticationError (401, code invalid_api_key)
    │   ├── PermissionDenied (403, code permission_denied)
    │   ├── Conflict (409, code conflict)
    │   │   └── TenantExists (names the field ``tenant``)
    │   └── RateLimited (429, type requests, code rate_limit_exceeded; carries ``retry_after``)
    ├── UpstreamError (502, upstream_error)
    │   ├── UpstreamUnreachable (502, code upstream_unreachable)
    │   ├── UpstreamTimeout (504, code upstream_timeout)
    │   └── UpstreamBroken (502, code upstream_broken; mid-response: the connection is aborted)
    ├── StorageError (503, storage_error)
    │   ├── StorageUnavailable (503, code storage_unavailable)
    │   │   └── QueueUnavailable (the job queue)
    │   └── MigrationError (503, code migration_mismatch; the files differ from what was applied)
    └── DependencyError (503, dependency_error)
        ├── EmbedderUnavailable (503, code embedder_unavailable)
        └── LLMUnavailable (503, code llm_unavailable)

Each error carries its HTTP status. :func:`render` turns any of them into OpenAI's error shape,
``{"error": {"message", "type", "param", "code"}}``; on Anthropic's routes :func:`render_anthropic` gives
Anthropic's, ``{"type": "error", "error": {"type", "message"}}``, its type named by the status. Lower
layers translate their own exceptions into these at one boundary, with ``raise ... from exc``.

Outside the tree, as control flow that never reaches a client: ``proxy.relay.ClientGone`` (the client left
before its body was read: nothing to answer), ``memory.extraction.extractor.ExtractionFailed`` and
``memory.extraction.llm.Rejected`` (an extraction that cannot succeed: its chat log is marked failed, with
the reason). Apart from it: ``stack.local.StackError`` (the ``memoire`` command's own, printed and exited
on) and ``memoire.MemoireAPIError`` (the SDK's: it cannot import the server).
"""

from __future__ import annotations

import math
import re
from typing import ClassVar, TypeVar

import msgspec

from memory import json_limits

_T = TypeVar("_T")


class MemoireError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(MemoireError):
    """A setting is missing, unknown or has a bad value. The message is one line."""

    code = "config_error"


class PurgeIncomplete(MemoireError):
    """Rows of the user were still there after the deletes: the transaction is rolled back."""

    code = "purge_incomplete"


class RequestError(MemoireError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJSON(RequestError):
    code = "invalid_json"


class JSONLimitExceeded(InvalidJSON):
    """Nesting deeper than ``server.max_json_depth``, or a number no integer or double holds."""

    code = "json_limit_exceeded"


class InvalidField(RequestError):
    code = "invalid_value"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class AuthenticationError(RequestError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(RequestError):
    status = 403
    code = "permission_denied"


class Conflict(RequestError):
    status = 409
    code = "conflict"


class TenantExists(Conflict):
    """A new key would make a tenant whose name is taken; name the tenant to join it on purpose."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a tenant named {name!r} exists; give the tenant explicitly to add a key to it", param="tenant"
        )
        self.name = name


class RateLimited(RequestError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds until the next request would be allowed."""

    @property
    def retry_after_header(self) -> bytes:
        return str(max(1, math.ceil(self.retry_after))).encode()


class UpstreamError(MemoireError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamBroken(UpstreamError):
    """The upstream failed while its response body was being relayed: the status line is gone, so the
    relay aborts the client's connection (the client sees a broken stream, as from the provider)."""

    code = "upstream_broken"


class StorageError(MemoireError):
    status = 503
    type = "storage_error"
    code = "storage_error"


class StorageUnavailable(StorageError):
    code = "storage_unavailable"


class QueueUnavailable(StorageUnavailable):
    """The job queue (Redis) cannot be reached."""


class MigrationError(StorageError):
    """The migrations on disk do not match what the database recorded."""

    code = "migration_mismatch"


class DependencyError(MemoireError):
    status = 503
    type = "dependency_error"
    code = "dependency_error"


class EmbedderUnavailable(DependencyError):
    code = "embedder_unavailable"


class LLMUnavailable(DependencyError):
    code = "llm_unavailable"


class _Detail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class _Body(msgspec.Struct):
    error: _Detail


_encoder = msgspec.json.Encoder()


def render(exc: MemoireError) -> bytes:
    """The JSON body for ``exc``, in OpenAI's error shape."""
    return _encoder.encode(_Body(_Detail(exc.message, exc.type, exc.param, exc.code)))


class _AnthropicDetail(msgspec.Struct):
    type: str
    message: str


class _AnthropicBody(msgspec.Struct):
    error: _AnthropicDetail
    type: str = "error"


#: Anthropic's error types, by HTTP status (docs.anthropic.com, "Errors").
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def render_anthropic(exc: MemoireError) -> bytes:
    """The JSON body for ``exc``, in Anthropic's error shape; the field it names is in the message."""
    message = (
        exc.message if exc.param is None or exc.param in exc.message else f"{exc.message} (`{exc.param}`)"
    )
    kind = _ANTHROPIC_TYPES.get(exc.status, "api_error")
    return _encoder.encode(_AnthropicBody(_AnthropicDetail(kind, message)))


def limit_error(breach: json_limits.Breach, max_depth: int) -> JSONLimitExceeded:
    at = f" at `{breach.path}`" if breach.path else ""
    if breach.kind == "depth":
        message = f"the JSON nests deeper than {max_depth} levels{at} (the limit is server.max_json_depth)"
    elif breach.kind == "numbers":
        message = (
            f"the JSON holds more than {json_limits.MOST_SUSPECTS} integers of 20 digits or more or numbers "
            "with a 3-digit exponent; each would need a check that it is in range"
        )
    else:
        message = (
            f"a number{at} is out of range: integers must fit 64 bits (-2^63 to 2^64-1) and other numbers a "
            "finite double"
        )
    return JSONLimitExceeded(message, param=breach.path)


_MISSING = re.compile(r"missing required field `([^`]+)`")


def from_validation(exc: msgspec.ValidationError) -> InvalidField:
    """Translate msgspec's ``Expected `int`, got `str` - at `$.a.b``` into an error naming ``a.b``.

    A missing field is named too: ``Object missing required field `x` - at `$.a``` names ``a.x``.
    """
    text = str(exc)
    message, sep, at = text.rpartition(" - at `")
    if not sep:
        message, at = text, ""
    # "$.messages[2].role" -> "messages[2].role"
    param = at.rstrip("`").removeprefix("$").lstrip(".")
    missing = _MISSING.search(message)
    if missing:
        param = f"{param}.{missing[1]}" if param else missing[1]
    if not param:
        return InvalidField(text)
    return InvalidField(f"{message} at `{param}`", param=param)


def decode(decoder: msgspec.json.Decoder[_T], body: bytes, max_depth: int) -> _T:
    """Decode a request body, translating msgspec's errors into ours (naming the field). The body is held
    to :mod:`memory.json_limits` first: nesting at most ``max_depth`` deep, numbers in range."""
    if not body.strip():
        raise InvalidJSON("the request body is empty; a JSON object was expected")
    breach = json_limits.check(body, max_depth)
    if breach is not None:
        raise limit_error(breach, max_depth)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise from_validation(exc) from exc
    except msgspec.DecodeError as exc:
        raise InvalidJSON(f"the request body is not valid JSON: {exc}") from exc
