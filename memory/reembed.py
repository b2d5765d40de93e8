"""Embedding facts again with the configured model, after a change of embedding model or dimension.

Until then, facts embedded by another model are found by wording only (searches never compare two models'
vectors). This walks the facts of other models in keyset pages, embeds each page and writes the vectors
with the model's name and dimension; running it again finds nothing left to do.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from memory import db
from memory.service import Memory

PAGE = 256

_PAGE = """
SELECT f.tenant_id, f.id, f.text
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
WHERE (f.embedding_model IS DISTINCT FROM $1 OR f.embedding_dim IS DISTINCT FROM $2)
  AND f.status IN ('active', 'superseded', 'archived')
  AND ($3::text IS NULL OR u.external_id = $3)
  AND ($4::uuid IS NULL OR (f.tenant_id, f.id) > ($4, $5::uuid))
ORDER BY f.tenant_id, f.id LIMIT $6
"""

_WRITE = """
UPDATE memory_facts SET embedding = $3, embedding_model = $4, embedding_dim = $5, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND text = $6
"""


async def reembed(memory: Memory, *, user: str | None = None) -> AsyncIterator[int]:
    """Embed every fact of another model again; yields how many facts each page rewrote."""
    embedder = memory.embedder
    after: tuple[uuid.UUID, uuid.UUID] | None = None
    while True:
        async with db.connection(memory.pool) as conn:
            rows = await conn.fetch(
                _PAGE, embedder.model, embedder.dim, user,
                after[0] if after else None, after[1] if after else None, PAGE,
            )  # fmt: skip
        if not rows:
            return
        vectors = await embedder.embed([r["text"] for r in rows])
        async with db.transaction(memory.pool) as conn:
            await conn.executemany(
                _WRITE,
                [
                    (r["tenant_id"], r["id"], v, embedder.model, int(v.shape[0]), r["text"])
                    for r, v in zip(rows, vectors, strict=True)
                ],
            )
        after = (rows[-1]["tenant_id"], rows[-1]["id"])
        yield len(rows)
