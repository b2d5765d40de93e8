"""The Python SDK: ``Memoire(api_key=…, base_url=…)``.

Every call comes in a sync and an async form (``recall`` / ``arecall``, ``facts.create`` /
``facts.acreate`` …) and returns the API's JSON. ``wrap(client)`` gives an OpenAI or Anthropic client that
remembers (see :mod:`memoire.wrap`).

The explicit calls raise :class:`MemoireAPIError` when Mémoire answers with an error, and ``httpx``'s errors
when it cannot be reached: the app asked for them. The wrapped clients never raise because of Mémoire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from memoire.backlog import Backlog

log = logging.getLogger("memoire.sdk")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
#: Seconds between two warnings that Mémoire is unreachable.
WARN_EVERY = 300.0
#: Statuses worth sending again later: the server is down, overloaded or limiting us.
_RETRYABLE = frozenset({408, 409, 425, 429})


class MemoireAPIError(Exception):
    """Mémoire answered with an error (OpenAI's shape: message, type, code, param)."""

    def __init__(self, status: int, error: Mapping[str, Any]) -> None:
        self.status = status
        self.message = str(error.get("message", ""))
        self.type = error.get("type")
        self.code = error.get("code")
        self.param = error.get("param")
        super().__init__(f"{status} {self.code}: {self.message}")


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {"message": response.text}
        raise MemoireAPIError(response.status_code, error)
    return None if response.status_code == 204 else response.json()


def _q(segment: str) -> str:
    """``segment`` as one path segment (a user id may hold ``/``, ``?`` or spaces)."""
    return quote(segment, safe="")


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _Reachability:
    """Says when Mémoire stops answering, at most once every :data:`WARN_EVERY` seconds however many calls
    fail (and however often it flaps), and, at debug level, when it answers again."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._down = False
        self._warned_at = -WARN_EVERY
        self._lock = threading.Lock()

    def failed(self, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._down = True
            if now - self._warned_at < WARN_EVERY:
                return
            self._warned_at = now
        log.warning("Mémoire %s failed (%s); calls go on without it until it is back", self._what, why)

    def ok(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.debug("Mémoire %s works again", self._what)


class Memoire:
    """A client of Mémoire's REST API."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        user_id: str | None = None,
        recall_timeout: float = 0.15,
        timeout: float = 10.0,
        backlog_size: int = 10_000,
    ) -> None:
        """``api_key`` defaults to ``MEMOIRE_API_KEY`` and ``base_url`` to ``MEMOIRE_BASE_URL`` (else
        ``http://127.0.0.1:8080``; a trailing ``/v1`` is fine). ``user_id`` names the end user of wrapped
        calls that name none. ``recall_timeout`` bounds what a wrapped call waits for memory."""
        key = api_key or os.environ.get("MEMOIRE_API_KEY")
        url = (base_url or os.environ.get("MEMOIRE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.base_url = url.removesuffix("/v1")
        self.user_id = user_id
        self.recall_timeout = recall_timeout
        self._headers = {"x-memoire-key": key} if key else {}
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)
        self._async: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
        self.reachability = _Reachability("recall")
        self.ingestion = _Reachability("ingestion")
        self._refusals: set[int] = set()
        self.backlog = Backlog(self._send_backlogged, max_size=backlog_size)
        self.facts = Facts(self)
        self.users = Users(self)

    # -- transport -----------------------------------------------------------------------------------

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
            self._async = (loop, client)
        return self._async[1]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return _check(self._http.request(method, path, **kwargs))

    async def arequest(self, method: str, path: str, **kwargs: Any) -> Any:
        return _check(await self._aclient().request(method, path, **kwargs))

    def close(self, flush: float = 2.0) -> None:
        """Send what the backlog holds (for up to ``flush`` seconds) and close the connections."""
        self.backlog.flush(flush)
        self.backlog.close()
        self._http.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.backlog.flush, 2.0)
        self.backlog.close()
        if self._async is not None:
            await self._async[1].aclose()
            self._async = None
        self._http.close()

    def __enter__(self) -> Memoire:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> Memoire:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- recall and ingest ---------------------------------------------------------------------------

    @staticmethod
    def _recall_body(user_id: str, query: str, **options: Any) -> dict[str, Any]:
        return _clean({"user_id": user_id, "query": query, **options})

    def recall(self, user_id: str, query: str = "", **options: Any) -> list[dict[str, Any]]:
        """The user's facts relevant to ``query``; options: limit, temporal, categories, min_score."""
        facts: list[dict[str, Any]] = self.request(
            "POST", "/v1/recall", json=self._recall_body(user_id, query, **options)
        )["facts"]
        return facts

    async def arecall(self, user_id: str, query: str = "", **options: Any) -> list[dict[str, Any]]:
        body = self._recall_body(user_id, query, **options)
        facts: list[dict[str, Any]] = (await self.arequest("POST", "/v1/recall", json=body))["facts"]
        return facts

    @staticmethod
    def _ingest_body(user_id: str, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        options.setdefault("idempotency_key", str(uuid.uuid4()))
        return _clean({"user_id": user_id, "messages": messages, **options})

    def ingest(self, user_id: str, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """Send an exchange for extraction; options: session_id, metadata, idempotency_key."""
        accepted: dict[str, Any] = self.request(
            "POST", "/v1/ingest", json=self._ingest_body(user_id, messages, **options)
        )
        return accepted

    async def aingest(self, user_id: str, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        body = self._ingest_body(user_id, messages, **options)
        accepted: dict[str, Any] = await self.arequest("POST", "/v1/ingest", json=body)
        return accepted

    def context(
        self, user_id: str, query: str, *, context: Sequence[str] = (), timeout: float | None = None
    ) -> dict[str, Any]:
        """The memory block the proxy would add for this message: ``{"block", "recalled"}``. ``context``:
        the earlier user messages, oldest first (a message like "what does she do?" is searched with them)."""
        found: dict[str, Any] = self.request(
            "POST",
            "/v1/context",
            json=_context_body(user_id, query, context),
            timeout=timeout or self._timeout,
        )
        return found

    async def acontext(
        self,
        user_id: str,
        query: str,
        *,
        context: Sequence[str] = (),
        timeout: float | None = None,  # noqa: ASYNC109 (HTTP timeout)
    ) -> dict[str, Any]:
        found: dict[str, Any] = await self.arequest(
            "POST",
            "/v1/context",
            json=_context_body(user_id, query, context),
            timeout=timeout or self._timeout,
        )
        return found

    # -- what wrapped clients use: never raises ------------------------------------------------------

    def _send_backlogged(self, body: dict[str, Any]) -> str:
        try:
            response = self._http.post("/v1/ingest", json=body)
        except httpx.HTTPError as exc:
            self.ingestion.failed(type(exc).__name__)
            return "retry"
        if response.status_code < 300:
            self.ingestion.ok()
            return "ok"
        if response.status_code >= 500 or response.status_code in _RETRYABLE:
            self.ingestion.failed(f"HTTP {response.status_code}")
            return "retry"
        if response.status_code not in self._refusals:  # once per kind of refusal, not per exchange
            self._refusals.add(response.status_code)
            log.warning(
                "Mémoire refused an exchange (%s), so it is dropped; later ones like it are not logged: %s",
                response.status_code,
                response.text[:500],
            )
        return "drop"

    def remember_later(
        self, user_id: str, messages: list[dict[str, Any]], session_id: str | None = None
    ) -> None:
        """Queue an exchange for ingestion in the background; returns at once."""
        if messages:
            self.backlog.put(self._ingest_body(user_id, messages, session_id=session_id, source="sdk"))

    def wrap(self, client: Any, *, user_id: str | None = None) -> Any:
        """``client`` (``openai.OpenAI``/``AsyncOpenAI``, ``anthropic.Anthropic``/``AsyncAnthropic``) with
        memory: recall before each call, the block added to the prompt, the exchange ingested after."""
        from memoire.wrap import wrap

        return wrap(self, client, user_id=user_id or self.user_id)


class Facts:
    """``memoire.facts``: facts by id and by user."""

    def __init__(self, client: Memoire) -> None:
        self._c = client

    def create(self, user_id: str, facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self._c.request(
            "POST", "/v1/facts", json={"user_id": user_id, "facts": facts}
        )["results"]
        return results

    async def acreate(self, user_id: str, facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"user_id": user_id, "facts": facts}
        results: list[dict[str, Any]] = (await self._c.arequest("POST", "/v1/facts", json=body))["results"]
        return results

    def get(self, fact_id: str) -> dict[str, Any]:
        fact: dict[str, Any] = self._c.request("GET", f"/v1/facts/{fact_id}")
        return fact

    async def aget(self, fact_id: str) -> dict[str, Any]:
        fact: dict[str, Any] = await self._c.arequest("GET", f"/v1/facts/{fact_id}")
        return fact

    def update(self, fact_id: str, **fields: Any) -> dict[str, Any]:
        fact: dict[str, Any] = self._c.request("PATCH", f"/v1/facts/{fact_id}", json=fields)
        return fact

    async def aupdate(self, fact_id: str, **fields: Any) -> dict[str, Any]:
        fact: dict[str, Any] = await self._c.arequest("PATCH", f"/v1/facts/{fact_id}", json=fields)
        return fact

    def delete(self, fact_id: str) -> None:
        self._c.request("DELETE", f"/v1/facts/{fact_id}")

    async def adelete(self, fact_id: str) -> None:
        await self._c.arequest("DELETE", f"/v1/facts/{fact_id}")

    def history(self, fact_id: str) -> list[dict[str, Any]]:
        chain: list[dict[str, Any]] = self._c.request("GET", f"/v1/facts/{fact_id}/history")["history"]
        return chain

    async def ahistory(self, fact_id: str) -> list[dict[str, Any]]:
        chain: list[dict[str, Any]] = (await self._c.arequest("GET", f"/v1/facts/{fact_id}/history"))[
            "history"
        ]
        return chain

    def list(self, user_id: str, **filters: Any) -> dict[str, Any]:
        """One page, ``{"facts", "next_cursor"}``; filters: status, temporal, slot, category, cursor …"""
        page: dict[str, Any] = self._c.request(
            "GET", f"/v1/users/{_q(user_id)}/facts", params=_clean(filters)
        )
        return page

    async def alist(self, user_id: str, **filters: Any) -> dict[str, Any]:
        page: dict[str, Any] = await self._c.arequest(
            "GET", f"/v1/users/{_q(user_id)}/facts", params=_clean(filters)
        )
        return page


class Users:
    """``memoire.users``: a user's profile, and forgetting a user."""

    def __init__(self, client: Memoire) -> None:
        self._c = client

    def profile(self, user_id: str) -> dict[str, Any]:
        profile: dict[str, Any] = self._c.request("GET", f"/v1/users/{_q(user_id)}/profile")
        return profile

    async def aprofile(self, user_id: str) -> dict[str, Any]:
        profile: dict[str, Any] = await self._c.arequest("GET", f"/v1/users/{_q(user_id)}/profile")
        return profile

    def delete(self, user_id: str) -> dict[str, Any]:
        """Forget the user: every fact, chat log and session, and what this client still holds of them
        unsent. Returns what was deleted."""
        self._c.backlog.drop(lambda entry: entry.get("user_id") == user_id)
        deleted: dict[str, Any] = self._c.request("DELETE", "/v1/users", params={"user_id": user_id})
        return deleted

    async def adelete(self, user_id: str) -> dict[str, Any]:
        self._c.backlog.drop(lambda entry: entry.get("user_id") == user_id)
        deleted: dict[str, Any] = await self._c.arequest("DELETE", "/v1/users", params={"user_id": user_id})
        return deleted


def _context_body(user_id: str, query: str, context: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": user_id, "query": query}
    if context:  # only when there is some, so that an older server, which refuses the field, still answers
        body["context"] = list(context)
    return body
