"""Streams the SDK's wrap hands back: each event passes on unchanged, and the reply's text is collected on
the side for Mémoire. Nothing here may raise into the app: a failure to collect only loses the capture."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

log = logging.getLogger("memoire.sdk")


class Delegate:
    """Everything not overridden is the wrapped object's own."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class Capture(Delegate):
    """A provider stream that hands each event on unchanged and collects the reply's text on the side.
    Nothing here may raise into the app: a failure to collect only loses the capture."""

    def __init__(self, stream: Any, text_of: Any, done: Any) -> None:
        super().__init__(stream)
        self._text_of = text_of
        self._done = done
        self._parts: list[str] = []
        self._finished = False

    def _note(self, event: Any) -> Any:
        try:
            piece = self._text_of(event)
            if isinstance(piece, str) and piece:
                self._parts.append(piece)
        except Exception:
            log.debug("could not read a streamed event", exc_info=True)
        return event

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._done("".join(self._parts))
        except Exception:
            log.warning("could not queue a streamed exchange for Mémoire", exc_info=True)


class Stream(Capture):
    """A sync stream (``openai.Stream``, ``anthropic.Stream``)."""

    def __iter__(self) -> Iterator[Any]:
        try:
            for event in self._target:
                yield self._note(event)
        finally:
            self._finish()

    def __next__(self) -> Any:
        try:
            return self._note(next(self._target))
        except StopIteration:
            self._finish()
            raise

    def __enter__(self) -> Stream:
        self._target.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._target.__exit__(*exc)
        finally:
            self._finish()

    def close(self) -> None:
        try:
            self._target.close()
        finally:
            self._finish()


class AsyncStream(Capture):
    """An async stream (``openai.AsyncStream``, ``anthropic.AsyncStream``)."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for event in self._target:
                yield self._note(event)
        finally:
            self._finish()

    async def __anext__(self) -> Any:
        try:
            return self._note(await self._target.__anext__())
        except StopAsyncIteration:
            self._finish()
            raise

    async def __aenter__(self) -> AsyncStream:
        await self._target.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._target.__aexit__(*exc)
        finally:
            self._finish()

    async def close(self) -> None:
        try:
            await self._target.close()
        finally:
            self._finish()
