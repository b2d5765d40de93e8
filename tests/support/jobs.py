"""Running the worker's jobs in a test: its config, a burst of the worker, and an exchange to extract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arq.worker import create_worker

from memory.config import Config
from memory.embeddings import LocalEmbedder
from memory.exchanges import DEFAULT_TENANT_ID, Exchange, new_id, now
from tests.support.config import make_config
from tests.support.embedder import SharedEmbedder
from worker.settings import worker_settings


def config(redis_url: str, llm_url: str | None = None, **llm: Any) -> Config:
    sections: dict[str, Any] = {
        "redis": {"url": redis_url},
        "database": {"pool_min": 1},
        "worker": {"requeue_after": 0, "max_tries": 2, "retry_delay": 0.05},
    }
    if llm_url is not None:
        sections["llm"] = {"provider": "openai-compatible", "base_url": llm_url, "model": "fake", **llm}
    return make_config(**sections)


async def run_burst(cfg: Config, dsn: str, embedder: LocalEmbedder) -> Any:
    settings = worker_settings(cfg, dsn, embedder_factory=lambda: SharedEmbedder(embedder))
    worker = create_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


def said(user: str, text: str, *, reply: str = "Noted.", when: datetime | None = None) -> Exchange:
    return Exchange(
        id=new_id(), tenant_id=DEFAULT_TENANT_ID, user=user, model="m",
        messages=[{"role": "user", "content": text}],
        reply={"role": "assistant", "content": reply}, occurred_at=when or now(),
    )  # fmt: skip
