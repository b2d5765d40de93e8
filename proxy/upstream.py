"""The upstream provider: one pooled HTTP client, and the headers that may cross the proxy.

Requests go out with the client's headers as they came, less the hop-by-hop ones (RFC 9110 §7.6.1), ``host``,
``content-length`` (recomputed), Mémoire's own ``x-memoire-*`` (``X-Memoire-Key`` among them) and an
``Authorization`` that carries a Mémoire key (``Bearer mk_…``), which the server's provider key replaces.
Responses come back the same way.
httpx's default request headers are removed, so the upstream sees what the client sent and nothing more;
in particular a client that asks for no compression gets none.
"""

from __future__ import annotations

import httpx

from memoire.config import UpstreamConfig
from memoire.errors import UpstreamTimeout, UpstreamUnreachable

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


class Upstream:
    def __init__(self, config: UpstreamConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = config.url.rstrip("/")
        self._auth = (b"authorization", f"Bearer {config.api_key}".encode()) if config.api_key else None
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.write_timeout,
                pool=config.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_keepalive,
                keepalive_expiry=config.keepalive_expiry,
            ),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )
        # Drop httpx's defaults (accept, accept-encoding, connection, user-agent): only the client's go out.
        for name in list(self.client.headers):
            del self.client.headers[name]

    async def aclose(self) -> None:
        await self.client.aclose()

    def request_headers(self, incoming: Headers, *, readable_encodings: bool = False) -> Headers:
        """The client's headers as they go upstream.

        With ``readable_encodings``, ``accept-encoding`` keeps only the codings the tee can read back
        (gzip, deflate), so a recorded reply is never lost to a coding we cannot decode.
        """
        drop = _NOT_FORWARDED | _connection_tokens(incoming)
        out: Headers = []
        has_auth = has_encoding = False
        for name, value in incoming:
            if name in drop or name.startswith(_MEMOIRE_PREFIX):
                continue
            if name == b"authorization":
                if _is_memoire_bearer(value):
                    continue  # a Mémoire key never leaves: the server's provider key goes instead
                has_auth = True
            elif name == b"accept-encoding":
                if readable_encodings:
                    value = _readable(value)
                    if not value:
                        continue
                has_encoding = True
            out.append((name, value))
        if not has_auth and self._auth is not None:
            out.append(self._auth)
        if not has_encoding:
            out.append((b"accept-encoding", b"identity"))
        return out

    def uses_server_key(self, incoming: Headers) -> bool:
        """Whether this request goes upstream with the server's provider key (the client sent none of its
        own: no ``Authorization``, or a Mémoire key in it)."""
        if self._auth is None:
            return False
        for name, value in incoming:
            if name == b"authorization" and not _is_memoire_bearer(value):
                return False
        return True

    @staticmethod
    def response_headers(response: httpx.Response) -> Headers:
        """The upstream's response headers as they go back to the client, names lower-cased for ASGI."""
        raw = [(name.lower(), value) for name, value in response.headers.raw]
        drop = HOP_BY_HOP | _connection_tokens(raw)
        return [(name, value) for name, value in raw if name not in drop]

    def url(self, subpath: str, query: bytes) -> str:
        """The upstream URL for ``/v1{subpath}``; path and query stay percent-encoded as received."""
        return f"{self.base_url}{subpath}?{query.decode('latin-1')}" if query else f"{self.base_url}{subpath}"

    async def open(self, method: str, url: str, headers: Headers, body: bytes) -> httpx.Response:
        """Send the request and return the response with its body still unread.

        Failures before any response becomes :class:`UpstreamUnreachable` or :class:`UpstreamTimeout`.
        """
        request = httpx.Request(method, url, headers=headers, content=body)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the upstream did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnreachable(f"the upstream could not be reached ({type(exc).__name__})") from exc
