"""Every other ``/v1/*`` route (models, embeddings, completions, files, audio …) and ``/anthropic/v1/*``
route (count_tokens, models …), relayed as is.

Bodies, streams, status codes and headers cross untouched; nothing is recorded.

With the server's provider key, only routes that keep nothing in the shared provider account are open, and
a stored response's own routes (``/v1/responses/{id}``, ``…/input_items``, ``…/cancel``) are open to the
tenant that created the response; any other tenant gets the 404 of an unknown id.
"""

from __future__ import annotations

import re
from typing import cast
from urllib.parse import unquote

from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from memory import json_limits
from memory.errors import InvalidField, MemoireError, NotFound, PermissionDenied, limit_error
from proxy import services as services_
from proxy.auth import ANTHROPIC, principal_of
from proxy.relay import ClientGone, ErrorShape, read_body, relay, send_error
from proxy.response_owners import unknown_response
from proxy.upstream import Headers

_PREFIX = "/v1"
ANTHROPIC_PREFIX = "/anthropic"


def _safe(subpath: str) -> bool:
    """Whether ``/v1{subpath}`` stays under the upstream's base URL: no dot segments, also once decoded
    (``%2e%2e``, or ``%2F..%2F`` and ``\\..`` for a server in front that decodes slashes), and a leading
    slash, so ``/v1@host`` or ``/v1/../admin`` can never reach another host or path with the operator's
    key."""
    decoded = unquote(subpath).replace("\\", "/")
    return subpath.startswith("/") and all(s not in (".", "..") for s in decoded.split("/"))


#: What may be called with the server's provider key (``Authorization: Bearer mk_…``): operations that keep
#: nothing in the provider account. Files, batches, stored completions, responses, assistants, vector
#: stores … live in that one account, shared by every tenant, so they need the client's own provider key.
_STATELESS = {
    "POST": frozenset(
        {
            "/chat/completions",
            "/completions",
            "/embeddings",
            "/moderations",
            "/audio/speech",
            "/audio/transcriptions",
            "/audio/translations",
            "/images/generations",
            "/images/edits",
            "/images/variations",
        }
    ),
}
#: A stored response's routes, by method: the response, its input items, and cancelling it.
_RESPONSE_ROUTES = {
    "GET": re.compile(r"/responses/(resp_[A-Za-z0-9_-]+)(/input_items)?"),
    "DELETE": re.compile(r"/responses/(resp_[A-Za-z0-9_-]+)"),
    "POST": re.compile(r"/responses/(resp_[A-Za-z0-9_-]+)/cancel"),
}
#: ``/models`` and ``/models/{id}``, the id in plain characters only (no ``\``, ``%``, spaces or controls).
_MODELS = re.compile(r"/models(/[A-Za-z0-9._:@+-]+)?")


def _stateless(method: str, subpath: str) -> bool:
    path = unquote(subpath).rstrip("/")
    return path in _STATELESS.get(method, ()) or (method == "GET" and _MODELS.fullmatch(path) is not None)


#: Anthropic's operations that keep nothing in the account (batches, files, skills … do).
_ANTHROPIC_STATELESS = {"POST": frozenset({"/v1/messages", "/v1/messages/count_tokens"})}
_ANTHROPIC_MODELS = re.compile(r"/v1/models(/[A-Za-z0-9._:@+-]+)?")


def _anthropic_stateless(method: str, subpath: str) -> bool:
    path = unquote(subpath).rstrip("/")
    return path in _ANTHROPIC_STATELESS.get(method, ()) or (
        method == "GET" and _ANTHROPIC_MODELS.fullmatch(path) is not None
    )


def _subpath(scope: HTTPScope, prefix: str) -> str:
    # raw_path keeps the client's percent-encoding (and, unlike a mount's path, no added slash).
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw_path.split(b"?", 1)[0].decode("latin-1").removeprefix(prefix)


def _refused(method: str, path: str, own_key: str) -> PermissionDenied:
    return PermissionDenied(
        f"{method} {path} keeps state in the provider account that every tenant shares, so it is not"
        f" called with the server's provider key: send your own provider key in {own_key} and your"
        " Mémoire key in X-Memoire-Key"
    )


async def forward(scope: Scope, receive: Receive, send: Send) -> None:
    scope = cast(HTTPScope, scope)
    headers = cast(Headers, scope["headers"])
    services = services_.from_scope(scope)
    upstream = services.upstream
    subpath = _subpath(scope, _PREFIX)
    if not _safe(subpath):
        await send_error(send, InvalidField("the path must stay under /v1", param="path"))
        return
    if unquote(subpath).lower().startswith("/admin"):  # Mémoire's own namespace never goes upstream
        await send_error(send, NotFound("no such admin endpoint", param="path"))
        return
    method = scope["method"]
    principal = principal_of(scope)
    shared = principal.key_id is not None and upstream.uses_server_key(headers)
    route = _RESPONSE_ROUTES.get(method)
    owned = route.fullmatch(unquote(subpath).rstrip("/")) if shared and route is not None else None
    if owned is not None:
        try:
            link = await services.owners.find(principal.tenant_id, owned.group(1), recheck=True)
        except MemoireError as exc:
            await send_error(send, exc)
            return
        if link is None:
            await send_error(send, unknown_response(owned.group(1), "id"))
            return
    elif shared and not _stateless(method, subpath):
        await send_error(send, _refused(method, f"/v1{unquote(subpath)}", "Authorization"))
        return
    await _relay_as_is(
        scope,
        receive,
        send,
        method,
        upstream.url(subpath, scope["query_string"]),
        upstream.request_headers(headers),
        "openai",
    )


async def forward_anthropic(scope: Scope, receive: Receive, send: Send) -> None:
    """``/anthropic/v1/*`` to Anthropic, as it came; errors of the proxy's own in Anthropic's shape."""
    scope = cast(HTTPScope, scope)
    headers = cast(Headers, scope["headers"])
    target = services_.from_scope(scope).anthropic
    subpath = _subpath(scope, ANTHROPIC_PREFIX)
    if not _safe(subpath) or not (subpath == "/v1" or subpath.startswith("/v1/")):
        await send_error(
            send, InvalidField("the path must stay under /anthropic/v1", param="path"), None, "anthropic"
        )
        return
    method = scope["method"]
    shared = principal_of(scope).key_id is not None and target.uses_server_key(headers)
    if shared and not _anthropic_stateless(method, subpath):
        await send_error(send, _refused(method, unquote(subpath), "x-api-key"), None, "anthropic")
        return
    await _relay_as_is(
        scope,
        receive,
        send,
        method,
        target.url(subpath, scope["query_string"]),
        target.request_headers(headers),
        "anthropic",
    )


async def _relay_as_is(
    scope: HTTPScope, receive: Receive, send: Send, method: str, url: str, headers: Headers, shape: ErrorShape
) -> None:
    services = services_.from_scope(scope)
    try:
        body = await read_body(
            receive, cast(Headers, scope["headers"]), services.config.server.max_body_bytes
        )
        if body and _is_json(cast(Headers, scope["headers"])):
            # Not decoded here, but held to the same limits as every route (the provider's may differ).
            depth = services.config.server.max_json_depth
            if (breach := json_limits.check(body, depth)) is not None:
                raise limit_error(breach, depth)
    except ClientGone:
        return
    except MemoireError as exc:
        await send_error(send, exc, None, shape)
        return
    await relay(
        services.upstream,
        receive,
        send,
        method=method,
        url=url,
        headers=headers,
        body=body,
        extra_headers=[],
        heartbeat=services.config.upstream.heartbeat_idle,
        error_shape=shape,
    )


def _is_json(headers: Headers) -> bool:
    """Sent as JSON, or with no content type (some upstreams read that as JSON)."""
    kinds = [v.lower() for k, v in headers if k == b"content-type"]
    return not kinds or any(b"json" in kind for kind in kinds)


@asgi(_PREFIX, is_mount=True, copy_scope=True)
async def passthrough(scope: Scope, receive: Receive, send: Send) -> None:
    await forward(scope, receive, send)


@asgi(ANTHROPIC_PREFIX, is_mount=True, copy_scope=True, opt=ANTHROPIC)
async def anthropic_passthrough(scope: Scope, receive: Receive, send: Send) -> None:
    await forward_anthropic(scope, receive, send)
