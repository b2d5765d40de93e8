"""The session's embedder, lent to an app."""

from __future__ import annotations

from memory.embeddings import Embedder


class SharedEmbedder:
    """The session's embedder, lent to an app: the app's shutdown does not close it."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.model = inner.model
        self.dim = inner.dim
        self.embed = inner.embed
        self.embed_query = inner.embed_query
        self.embed_queries = inner.embed_queries

    async def close(self) -> None:
        return None
