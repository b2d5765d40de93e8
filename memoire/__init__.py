"""Mémoire: a transparent, OpenAI-compatible LLM proxy with long-term memory.

The Python SDK (``pip install memoire``: httpx alone)::

    from memoire import Memoire

    memoire = Memoire()  # MEMOIRE_API_KEY, MEMOIRE_BASE_URL
    client = memoire.wrap(openai.OpenAI())

:mod:`memoire.rules` holds the rules the SDK and the server share. The server imports it too, so the SDK
is loaded on first use of its names rather than with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Memoire", "MemoireAPIError", "__version__"]

if TYPE_CHECKING:
    from memoire.sdk import Memoire, MemoireAPIError


def __getattr__(name: str) -> Any:
    if name in ("Memoire", "MemoireAPIError"):
        from memoire import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'memoire' has no attribute {name!r}")
