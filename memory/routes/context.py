"""What a REST handler needs from the app: the memory core, the tenant, and the status headers."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request

from memory.exchanges import DEFAULT_TENANT_ID
from memory.service import Memory

AnyRequest = Request[Any, Any, Any]


def memory(request: AnyRequest) -> Memory:
    found: Memory = request.app.state.memory
    return found


def tenant(_: AnyRequest) -> uuid.UUID:
    """The caller's tenant. Until API keys exist (issue 4), everything is the default tenant."""
    return DEFAULT_TENANT_ID


def status_headers(degraded: list[str]) -> dict[str, str]:
    headers = {"x-memoire-status": "degraded" if degraded else "ok"}
    if degraded:
        headers["x-memoire-degraded"] = ",".join(sorted(set(degraded)))
    return headers
