"""Logging for every Mémoire process: one line per record, to stderr. Headers and bodies are never logged."""

from __future__ import annotations

import logging


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    # httpx logs every request line at INFO; that is per-call noise on a proxy.
    logging.getLogger("httpx").setLevel(logging.WARNING)
