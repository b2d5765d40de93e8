"""The upstream providers: one pooled HTTP client, and the headers that may cross the proxy.

The client is aiohttp's, not httpx's (which the rest of Mémoire uses): on the hot path httpx's pool scans
every pooled connection, with a readability syscall each, on every request, so its cost grows with the
concurrency. Measured on loopback, 2 cores, requests/s through one client: 396 (httpx) against 4,957
(aiohttp) at 16 concurrent requests, 88 against 2,792 at 64.

Requests go out with the client's headers as they came, less the hop-by-hop ones (RFC 9110 §7.6.1), ``host``,
``content-length`` (recomputed), Mémoire's own ``x-memoire-*`` (``X-Memoire-Key`` among them) and an
``Authorization`` that carries a Mémoire key (``Bearer mk_…``), which the server's provider key replaces.
Responses come back the same way.
The client's default request headers are left out, so the upstream sees what the client sent and nothing
more; in particular a client that asks for no compression gets none. Bodies pass as bytes, undecoded.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from memory.config import UpstreamConfig
from memory.errors import InvalidField, UpstreamBroken, UpstreamTimeout, UpstreamUnreachable

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}
_MEMOIRE_PREFIX = b"x-memoire-"


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Header names listed in ``Connection``, which are hop-by-hop too."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return frozenset(tokens)


def _is_memoire_bearer(value: bytes) -> bool:
    return value[:7].lower() == b"bearer " and value[7:].lstrip().startswith(b"mk_")


_READABLE_CODINGS = frozenset({b"gzip", b"x-gzip", b"deflate", b"identity"})


def _readable(accept_encoding: bytes) -> bytes:
    """``accept-encoding`` less the codings the tee cannot decode (br, zstd …), q-values kept."""
    kept = [
        part.strip()
        for part in accept_encoding.split(b",")
        if part.split(b";", 1)[0].strip().lower() in _READABLE_CODINGS
    ]
    return b", ".join(kept)


class UpstreamResponse:
    """The upstream's answer, its body still unread."""

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def raw_headers(self) -> Headers:
        return [(name.lower(), value) for name, value in self._response.raw_headers]

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, as they came (no decoding)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Give the connection back to the pool; one whose body was not read to the end is closed."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class Upstream:
    def __init__(self, config: UpstreamConfig) -> None:
        """Built in the app's lifespan (a running loop): the session belongs to it."""
        self.base_url = config.url.rstrip("/")
        self._auth = (b"authorization", f"Bearer {config.api_key}".encode()) if config.api_key else None
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.max_connections,
                limit_per_host=0,
                keepalive_timeout=config.keepalive_expiry,
                # Python before 3.12.8 can leak an aborted TLS connection's socket unless aiohttp sweeps it.
                enable_cleanup_closed=sys.version_info < (3, 12, 8),
            ),
            timeout=aiohttp.ClientTimeout(
                total=None,
                # aiohttp's ``connect`` covers waiting for a pooled connection and opening one.
                connect=config.pool_timeout + config.connect_timeout,
                sock_connect=config.connect_timeout,
                sock_read=config.read_timeout,
            ),
            auto_decompress=False,
            # Only the client's headers go out: none of aiohttp's own (Host and Content-Length aside).
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),  # no cookie ever crosses from one caller to another
            # Large response headers (a long set-cookie or CSP) pass, as they did before: 64 KiB a line.
            max_line_size=65536,
            max_field_size=65536,
            trust_env=False,
        )
        # aiohttp has no write timeout: the response's headers must come within all the phases' sum.
        self._headers_within = (
            config.pool_timeout + config.connect_timeout + config.write_timeout + config.read_timeout
        )

    async def aclose(self) -> None:
        await self.client.close()

    def request_headers(self, incoming: Headers, *, readable_encodings: bool = False) -> Headers:
        """The client's headers as they go upstream.

        With ``readable_encodings``, ``accept-encoding`` keeps only the codings the tee can read back
        (gzip, deflate), so a recorded reply is never lost to a coding we cannot decode.
        """
        return _outgoing(incoming, _OPENAI_CREDENTIALS, self._auth, readable_encodings)

    def uses_server_key(self, incoming: Headers) -> bool:
        """Whether this request goes upstream with the server's provider key (the client sent none of its
        own: no ``Authorization``, or a Mémoire key in it)."""
        return self._auth is not None and not _has_own_credential(incoming, _OPENAI_CREDENTIALS)

    @staticmethod
    def response_headers(response: UpstreamResponse) -> Headers:
        """The upstream's response headers as they go back to the client, names lower-cased for ASGI."""
        raw = response.raw_headers
        drop = HOP_BY_HOP | _connection_tokens(raw)
        return [(name, value) for name, value in raw if name not in drop]

    def url(self, subpath: str, query: bytes) -> str:
        """The upstream URL for ``/v1{subpath}``; path and query stay percent-encoded as received."""
        return _join(self.base_url, subpath, query)

    async def open(self, method: str, url: str, headers: Headers, body: bytes) -> UpstreamResponse:
        """Send the request and return the response with its body still unread.

        Failures before any response becomes :class:`UpstreamUnreachable` or :class:`UpstreamTimeout`.
        """
        # aiohttp writes header text as UTF-8: decoding it so sends the client's bytes unchanged.
        outgoing = CIMultiDict((_text(name, b"header name"), _text(value, name)) for name, value in headers)
        try:
            async with asyncio.timeout(self._headers_within):
                response = await self.client.request(
                    method,
                    URL(url, encoded=True),  # path and query as received: no re-encoding, no normalising
                    headers=outgoing,
                    data=_payload(body, method),
                    allow_redirects=False,
                )
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors
            raise UpstreamTimeout(f"the upstream did not answer in time ({type(exc).__name__})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnreachable(f"the upstream could not be reached ({type(exc).__name__})") from exc
        return UpstreamResponse(response)


def _is_memoire_key(value: bytes) -> bool:
    return value.strip().startswith(b"mk_")


class AnthropicTarget:
    """Anthropic's API, reached through the same pooled client: its base URL, and its headers' rules.

    Anthropic's clients send their key as ``x-api-key`` (or, for OAuth tokens, ``Authorization: Bearer``).
    A Mémoire key in either place is dropped, and the server's ``upstream.anthropic_api_key`` goes as
    ``x-api-key`` when the client sent no credential of its own. Every other header (``anthropic-version``,
    ``anthropic-beta`` …) crosses as it came.
    """

    def __init__(self, config: UpstreamConfig) -> None:
        self.base_url = config.anthropic_url.rstrip("/")
        key = config.anthropic_api_key
        self._auth = (b"x-api-key", key.encode()) if key else None

    def url(self, subpath: str, query: bytes) -> str:
        """The upstream URL for ``/anthropic{subpath}`` (``subpath`` starts with ``/v1``)."""
        return _join(self.base_url, subpath, query)

    def request_headers(self, incoming: Headers) -> Headers:
        return _outgoing(incoming, _ANTHROPIC_CREDENTIALS, self._auth, True)

    def uses_server_key(self, incoming: Headers) -> bool:
        """Whether this request goes upstream with the server's Anthropic key (it carries no credential
        of its own)."""
        return self._auth is not None and not _has_own_credential(incoming, _ANTHROPIC_CREDENTIALS)


#: The headers that carry a provider credential, each with the test for a Mémoire key in it.
_OPENAI_CREDENTIALS: Mapping[bytes, Callable[[bytes], bool]] = {b"authorization": _is_memoire_bearer}
_ANTHROPIC_CREDENTIALS: Mapping[bytes, Callable[[bytes], bool]] = {
    b"authorization": _is_memoire_bearer,
    b"x-api-key": _is_memoire_key,
}


def _has_own_credential(incoming: Headers, credentials: Mapping[bytes, Callable[[bytes], bool]]) -> bool:
    return any(name in credentials and not credentials[name](value) for name, value in incoming)


def _outgoing(
    incoming: Headers,
    credentials: Mapping[bytes, Callable[[bytes], bool]],
    server_auth: tuple[bytes, bytes] | None,
    readable_encodings: bool,
) -> Headers:
    """The client's headers as they go upstream: hop-by-hop and Mémoire's own dropped, a credential that is
    a Mémoire key dropped (``server_auth`` goes when the client sent no credential of its own), and with
    ``readable_encodings`` only the codings the tee can read back (gzip, deflate) accepted."""
    drop = _NOT_FORWARDED | _connection_tokens(incoming)
    out: Headers = []
    has_auth = has_encoding = False
    for name, value in incoming:
        if (
            name in drop
            or name.startswith(_MEMOIRE_PREFIX)
            or (name == b"x-api-key" and _is_memoire_key(value))
        ):
            continue  # (the auth middleware takes an ``mk_`` key from x-api-key on every route)
        is_memoire = credentials.get(name)
        if is_memoire is not None:
            if is_memoire(value):
                continue  # a Mémoire key never leaves: the server's provider key goes instead
            has_auth = True
        elif name == b"accept-encoding":
            if readable_encodings:
                value = _readable(value)
                if not value:
                    continue
            has_encoding = True
        out.append((name, value))
    if not has_auth and server_auth is not None:
        out.append(server_auth)
    if not has_encoding:
        out.append((b"accept-encoding", b"identity"))
    return out


def _payload(body: bytes, method: str) -> bytes | io.BytesIO | None:
    """The body as aiohttp sends it: a large one (a coding agent's images and history) as a stream, which
    aiohttp writes in chunks instead of in one call that would hold the event loop."""
    if len(body) > _LARGE_BODY:
        return io.BytesIO(body)
    return body if body or method not in _BODILESS else None


#: Bytes past which aiohttp writes a body in chunks (its own threshold for a warning).
_LARGE_BODY = 1024 * 1024
#: Methods sent without a body when the client sent none (aiohttp still adds ``Content-Length: 0`` to a
#: DELETE, as HTTP allows).
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


def _join(base_url: str, subpath: str, query: bytes) -> str:
    """``base_url`` and ``subpath``, with the query; both stay percent-encoded as received."""
    return f"{base_url}{subpath}?{_text(query, b'query string')}" if query else f"{base_url}{subpath}"


def _text(raw: bytes, what: bytes) -> str:
    """``raw`` as text; ``what`` names it only if it is not UTF-8 (nothing else is decoded per header)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        name = what.decode("latin-1")
        raise InvalidField(f"{name} is not UTF-8 text; it cannot be forwarded unchanged", param=name) from exc
