"""The admin API for worker jobs: run a task now, see failed jobs with their reason, queue them again.

Guarded by ``auth.admin_key`` like the key endpoints (see :mod:`proxy.auth`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.params import FromPath

from memory import db, failures
from memory.errors import NotFound
from memory.facts import NO_NUL
from memory.queue import SWEEPS, Task
from memory.routes.context import AnyRequest, json_body
from proxy.services import ServicesDep


class RunTask(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_NUL)] | None = None
    """Only this end user (in every tenant); default: everyone."""


class Queued(msgspec.Struct):
    task: str
    job_id: str


class FailedJobs(msgspec.Struct):
    failed: list[failures.FailedJob]


_decoder = msgspec.json.Decoder(RunTask)


@post("/v1/admin/jobs/{task:str}", status_code=202, opt={"admin": True, "body": RunTask})
async def run_task(request: AnyRequest, services: ServicesDep, task: FromPath[str]) -> Queued:
    """Queue a care task now, for everyone or one user."""
    if task not in SWEEPS:
        raise NotFound(f"no task {task!r}; tasks: {', '.join(sorted(SWEEPS))}", param="task")
    body = await json_body(request, _decoder, services.config, b"{}")
    job_id = await services.queue.enqueue(Task(task), user=body.user_id)
    return Queued(task=task, job_id=job_id or "")


@get("/v1/admin/jobs/failed", opt={"admin": True})
async def failed_jobs(services: ServicesDep) -> FailedJobs:
    """Jobs that failed for good, newest first, with their reason."""
    async with db.connection(services.pool) as conn:
        return FailedJobs(failed=await failures.listing(conn))


@post("/v1/admin/jobs/failed/{failure_id:uuid}/retry", status_code=202, opt={"admin": True})
async def retry_job(services: ServicesDep, failure_id: FromPath[uuid.UUID]) -> FailedJobs:
    """Queue a failed job again."""
    queued = await failures.retry(services.pool, services.queue, failure_id)
    if not queued:
        raise NotFound(f"no failed job {failure_id}", param="failure_id")
    return FailedJobs(failed=queued)
