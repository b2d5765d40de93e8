"""What the API process holds for its lifetime: built in the app lifespan, handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from litestar import Litestar
from litestar.di import NamedDependency
from litestar.types import Scope

from memory.authenticator import Authenticator
from memory.config import Config
from memory.health import Health
from memory.intake import Intake
from memory.queue import Queue
from memory.service import Memory
from proxy.memory_block import BlockBuilder
from proxy.ratelimit import RateLimiter
from proxy.response_owners import ResponseOwners
from proxy.upstream import AnthropicTarget, Upstream


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    upstream: Upstream
    anthropic: AnthropicTarget
    pool: asyncpg.Pool
    queue: Queue
    intake: Intake
    health: Health
    memory: Memory
    block: BlockBuilder
    auth: Authenticator
    limiter: RateLimiter
    owners: ResponseOwners


def from_scope(scope: Scope) -> Services:
    services: Services = Litestar.from_scope(scope).state.services
    return services


#: What a route handler takes to reach the services: ``services: ServicesDep`` (Litestar injects it).
ServicesDep = NamedDependency[Services]
