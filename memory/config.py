"""Typed configuration, loaded once at start and passed down.

Sources, later ones winning:

1. the defaults below;
2. a TOML file (``--config PATH`` or ``MEMOIRE_CONFIG``), laid out as ``config.example.toml``;
3. environment variables ``MEMOIRE_<SECTION>_<KEY>``, e.g. ``MEMOIRE_UPSTREAM_READ_TIMEOUT=30``.
   The short forms ``MEMOIRE_DATABASE_URL``, ``MEMOIRE_REDIS_URL``, ``MEMOIRE_UPSTREAM_URL`` and
   ``MEMOIRE_UPSTREAM_API_KEY`` are simply that rule applied to those settings.

Nothing here reads the environment at import time: :func:`load` takes the environment as an argument.
A bad value raises :class:`ConfigError` whose message is one line naming the setting.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from memory.errors import ConfigError

ENV_PREFIX = "MEMOIRE_"
#: Environment variables with the prefix that are not settings.
NON_SETTING_ENV = frozenset({"MEMOIRE_CONFIG"})
#: Short names for settings people set by hand most.
ENV_ALIASES = {"MEMOIRE_ANTHROPIC_API_KEY": ("upstream", "anthropic_api_key")}


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    """Interface the API binds to."""
    port: int = 8080
    """TCP port of the API."""
    workers: int = 2
    """API processes serving one port (uvicorn workers, sharing one listening socket). With two or more, a
    process that dies takes only the calls it had in flight: new connections reach the others at once,
    and the dead one is replaced. Each process loads its own embedder and pools."""
    data_dir: str = ".memoire"
    """Where local state lives: embedded PostgreSQL, a self-started Redis, the exchange spool."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest request body the proxy accepts; larger ones get 413."""
    max_json_depth: int = 128
    """Deepest nesting of arrays and objects a request body may have; deeper ones get 400
    json_limit_exceeded before anything decodes them. Tool schemas and content blocks nest about 10 deep;
    at most 512, below the decoders' own recursion limit."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of every process."""


class DatabaseConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str | None = None
    """PostgreSQL DSN with pgvector. Unset: ``memoire up`` runs an embedded PostgreSQL under the data dir."""
    pool_min: int = 2
    """Connections the pool keeps open."""
    pool_max: int = 10
    """Most connections the pool opens."""
    command_timeout: float = 10.0
    """Seconds before a single statement is abandoned."""
    connect_timeout: float = 3.0
    """Seconds to wait for a new connection."""
    embedded_shared_buffers: int = 0
    """MB of memory the embedded PostgreSQL (``memoire up`` without a URL) caches table pages in. 0: a
    quarter of the machine's memory, at most 4096. Takes effect when the server next starts."""
    custom_plans: bool = True
    """Plan each statement for its own values (``plan_cache_mode=force_custom_plan``, sent at connection
    start). Turn off behind a pooler that refuses startup parameters (PgBouncer without
    ``ignore_startup_parameters``)."""


class RedisConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str = "redis://127.0.0.1:6379/0"
    """Redis for the job queue. ``memoire up`` starts a ``redis-server`` if none answers on a local URL."""
    queue_name: str = "memoire:queue"
    """Name of the ARQ queue shared by the API and the worker."""
    timeout: float = 1.0
    """Seconds before a Redis command is abandoned (the proxy then spools and retries)."""


class UpstreamConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str = "https://api.openai.com/v1"
    """The provider's OpenAI-compatible base URL, including ``/v1``."""
    api_key: str | None = None
    """Key sent upstream when the client sends no ``Authorization`` header."""
    connect_timeout: float = 10.0
    """Seconds to open a connection to the upstream."""
    read_timeout: float = 600.0
    """Seconds the upstream may stay silent, before its first byte or between two chunks."""
    write_timeout: float = 60.0
    """Seconds to send the request body upstream (with the other phases' timeouts, it bounds the wait for
    the response's headers)."""
    pool_timeout: float = 10.0
    """Seconds to wait for a free pooled connection."""
    max_connections: int = 512
    """Most simultaneous upstream connections."""
    keepalive_expiry: float = 60.0
    """Seconds an idle upstream connection is kept for reuse."""
    heartbeat_idle: float = 0.0
    """Send an SSE comment after this many silent seconds of a 200 stream; 0 turns heartbeats off."""
    anthropic_url: str = "https://api.anthropic.com"
    """Anthropic's base URL, without ``/v1`` (as ``ANTHROPIC_BASE_URL``): ``/anthropic/v1/*`` goes there."""
    anthropic_api_key: str | None = None
    """Key sent to Anthropic as ``x-api-key`` when the client sends none of its own (also
    ``MEMOIRE_ANTHROPIC_API_KEY``)."""


class SpoolConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    path: str | None = None
    """SQLite file that holds exchanges until they are stored. Unset: ``<data_dir>/spool.sqlite3``. Beside
    it, the directory ``<name>.journal`` holds each API process's exchanges until they are in the file."""
    batch_size: int = 200
    """Most exchanges stored in one transaction."""
    retry_min: float = 0.5
    """First delay, in seconds, before storing is tried again after a failure."""
    retry_max: float = 30.0
    """Longest delay, in seconds, between two tries."""
    claim_seconds: float = 30.0
    """Seconds a process holds the spooled exchanges it is delivering, so that the other processes sharing
    the spool pass them by. Longer than a delivery can take (a statement's timeout, a connection's, Redis);
    the exchanges of a process that dies while delivering are delivered by another after this."""


class WorkerConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    poll_delay: float = 0.05
    """Seconds between two polls of the queue when it is empty."""
    max_jobs: int = 16
    """Jobs one worker runs at once."""
    job_timeout: float = 300.0
    """Seconds before a job (an extraction, a user's pipeline step, a page of a care run) is abandoned and
    retried. A killed worker's job runs again this long plus 10 s after it started."""
    max_tries: int = 5
    """Tries before a job is recorded as failed."""
    requeue_after: float = 60.0
    """Seconds after which a chat log still pending is queued again (covers a lost Redis)."""
    retry_delay: float = 2.0
    """Seconds before a failed care job is tried again; doubled at each try, at most five minutes."""
    chain_window: float = 10.0
    """Seconds in which a user's extractions share one dedup → supersession job. One that comes while the
    job runs goes to the next window's job, which waits for its window to open."""


LLMProvider = Literal["none", "openai", "anthropic", "gemini", "openrouter", "openai-compatible"]


class LLMConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    provider: LLMProvider = "none"
    """Who extracts facts: openai, anthropic, gemini, openrouter, openai-compatible (Ollama, vLLM), none."""
    base_url: str | None = None
    """The provider's API base URL. Unset: the provider's public endpoint (required for openai-compatible)."""
    api_key: str | None = None
    """The extraction provider's API key."""
    model: str | None = None
    """Extraction model. Unset: a small current model of the provider (see docs/memory.md)."""
    timeout: float = 60.0
    """Seconds one extraction call may take."""
    max_attempts: int = 3
    """Calls per exchange when the output is not valid; then the chat log is recorded as failed."""
    max_output_tokens: int = 2048
    """Most tokens the extraction reply may use."""
    structured_output: Literal["json_schema", "json_object"] = "json_schema"
    """OpenAI-style structured output mode; json_object for servers without JSON-schema support."""
    context_facts: int = 30
    """Existing facts of the user shown to the extractor, so it can tell what changed."""


class EmbeddingsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    provider: Literal["local", "openai"] = "local"
    """local: all-MiniLM-L6-v2 on onnxruntime, offline; openai: an OpenAI-compatible embeddings endpoint."""
    model: str = "all-MiniLM-L6-v2"
    """Embedding model name; stored with every vector, and searches only compare vectors of this model."""
    base_url: str | None = None
    """Base URL of the OpenAI-compatible embeddings endpoint (provider openai)."""
    api_key: str | None = None
    """API key of the embeddings endpoint (provider openai)."""
    dimensions: int | None = None
    """Requested output dimensions (provider openai, models that support it)."""
    model_dir: str | None = None
    """Where the local model's ONNX export is kept. Unset: ``<data_dir>/models``."""
    threads: int = 2
    """onnxruntime threads per embedding call (local; a query takes one with ``quantized_queries``)."""
    quantized_queries: bool = True
    """Embed queries with the model's int8 copy (local): 2.5× faster, LoCoMo recall@10 within 0.2 point."""
    query_cache_size: int = 4096
    """Query embeddings kept in memory, least recently used first out."""
    timeout: float = 10.0
    """Seconds one embeddings call may take (provider openai)."""


class MemoryConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    recall_timeout: float = 0.15
    """Seconds the proxy waits for recall before it forwards the call without memory."""
    recall_limit: int = 12
    """Most facts the proxy recalls for one call."""
    block_tokens: int = 400
    """Token budget of the memory block added to the prompt (tiktoken cl100k_base)."""
    placement: Literal["latest_turn", "system"] = "latest_turn"
    """Where the memory block goes. ``latest_turn``: a message of its own just before the latest user
    message, so that the conversation before it stays a cached prompt prefix when recall changes.
    ``system``: joined to the first system message (for servers that refuse a system message after the
    first turn; every change of recall then invalidates the provider's cache of the whole conversation).
    For the Responses API: a developer item before the latest user input, or, with ``system`` and for a
    call that continues a stored response, the end of ``instructions`` (docs/memory.md)."""
    relevance_z: float = 0.75
    """How far above the user's own facts a fact must stand to be recalled for a query part: standard
    deviations of similarity above the mean over all the user's facts. A part's best fact always counts."""
    small_memory: int = 30
    """A user with at most this many facts has them all offered, ranked: the token budget is the cut."""
    min_lexical: float = 0.5
    """Least trigram word similarity between the query's focus and a fact for the fact to count by wording."""
    dedup_similarity: float = 0.9
    """Cosine similarity above which a new fact is taken to mean the same as an existing one."""
    hnsw_threshold: int = 20000
    """Facts a user must have before recall uses the HNSW index (approximate) instead of an exact sort."""
    stats_interval: float = 60.0
    """Seconds between writes of recall statistics (how often and when last each fact was recalled). A fact
    recalled many times in one interval is rewritten once; a crash loses at most one interval's counts."""


class AuthConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    """Require a Mémoire key (``mk_…``) on every ``/v1`` call. It may be off only while server.host is
    loopback; calls without a key then belong to the default tenant."""
    admin_key: str | None = None
    """The key for ``/v1/admin/*`` (managing API keys), sent as ``Authorization: Bearer …``. Unset: those
    endpoints answer 403."""
    cache_ttl: float = 10.0
    """Seconds a key lookup is kept in process. A key revoked elsewhere stops working within this time."""
    rate_limit: int = 1200
    """Requests per minute allowed to each key that sets no limit of its own; 0 means unlimited."""
    rate_burst: int = 60
    """Requests a key may make at once above its steady rate."""
    rate_limit_timeout: float = 0.05
    """Seconds the rate-limit check may wait for Redis; past it, or with Redis down, the call goes through."""


class CareConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    decay_grace_days: int = 30
    """Days a fact may go unused (not recalled, reinforced or corrected) before its confidence decays."""
    decay_half_life_days: float = 90.0
    """Past the grace, days of disuse that halve a fact's confidence."""
    archive_below: float = 0.15
    """Confidence under which a decayed fact is archived: recall skips it, history and the API keep it."""
    batch_users: int = 50
    """Users one step of a care task handles in one short transaction."""
    profile_facts: int = 12
    """Most essential facts per user: the profile injected on every call, whatever the query."""
    profile_tokens: int = 150
    """Token budget of the profile within the memory block (on top of memory.block_tokens)."""
    essential_importance: float = 0.8
    """Importance from which a current fact is essential."""
    essential_recalls: int = 5
    """Recalls from which a current fact is essential, while it stays in use."""
    essential_stale_days: int = 90
    """Days without use after which a fact essential by its recalls alone is demoted."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    upstream: UpstreamConfig = msgspec.field(default_factory=UpstreamConfig)
    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    llm: LLMConfig = msgspec.field(default_factory=LLMConfig)
    embeddings: EmbeddingsConfig = msgspec.field(default_factory=EmbeddingsConfig)
    memory: MemoryConfig = msgspec.field(default_factory=MemoryConfig)
    care: CareConfig = msgspec.field(default_factory=CareConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir).expanduser().resolve()

    @property
    def model_dir(self) -> Path:
        if self.embeddings.model_dir:
            return Path(self.embeddings.model_dir).expanduser()
        return self.data_dir / "models"

    @property
    def spool_path(self) -> Path:
        return Path(self.spool.path).expanduser() if self.spool.path else self.data_dir / "spool.sqlite3"

    @property
    def journal_dir(self) -> Path:
        """Where each API process journals what it captured until the spool holds it, beside the spool."""
        return self.spool_path.with_suffix(".journal")


def sections() -> dict[str, tuple[str, ...]]:
    """Every section and its keys."""
    return {
        field.name: tuple(f.name for f in msgspec.structs.fields(field.type))
        for field in msgspec.structs.fields(Config)
    }


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    names = {env_name(s, k): (s, k) for s, keys in sections().items() for k in keys} | ENV_ALIASES
    overrides: dict[str, dict[str, str]] = {}
    unknown: list[str] = []
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var in NON_SETTING_ENV:
            continue
        target = names.get(var)
        if target is None:
            unknown.append(var)
            continue
        section, key = target
        overrides.setdefault(section, {})[key] = value
    return overrides, sorted(unknown)


def _where(path: str, origin: Mapping[tuple[str, str], str]) -> str:
    parts = tuple(p for p in path.removeprefix("$").split(".") if p)
    if len(parts) >= 2 and (parts[0], parts[1]) in origin:
        return f"{parts[0]}.{parts[1]} (from {origin[(parts[0], parts[1])]})"
    return ".".join(parts) or "config"


def load(
    environ: Mapping[str, str],
    path: str | Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Config, list[str]]:
    """Build the config from a TOML file, the environment and explicit overrides (CLI flags).

    Returns the config and the names of ``MEMOIRE_*`` variables that match no setting, for the caller to
    warn about. Raises :class:`ConfigError` on any bad value.
    """
    data: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str], str] = {}
    path = path or environ.get("MEMOIRE_CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config file {path}: [{section}] must be a table")
            data[section] = dict(values)
            origin.update({(section, k): str(path) for k in values})
    env, unknown = _env_overrides(environ)
    for section, values in env.items():
        data.setdefault(section, {}).update(values)
        origin.update({(section, k): env_name(section, k) for k in values})
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
        origin.update({(section, k): "command line" for k in values})
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).rpartition(" - at `")
        where = _where(at.rstrip("`"), origin) if message else "config"
        raise ConfigError(f"bad setting {where}: {message or exc}") from exc
    _check(config)
    return config, unknown


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check(config: Config) -> None:
    """Range checks msgspec's types cannot express."""
    positive = {
        ("server", "port"): config.server.port,
        ("server", "workers"): config.server.workers,
        ("server", "max_body_bytes"): config.server.max_body_bytes,
        ("server", "max_json_depth"): config.server.max_json_depth,
        ("database", "pool_max"): config.database.pool_max,
        ("upstream", "max_connections"): config.upstream.max_connections,
        ("spool", "batch_size"): config.spool.batch_size,
        ("spool", "claim_seconds"): config.spool.claim_seconds,
        ("worker", "max_jobs"): config.worker.max_jobs,
        ("worker", "max_tries"): config.worker.max_tries,
        ("llm", "max_attempts"): config.llm.max_attempts,
        ("embeddings", "threads"): config.embeddings.threads,
        ("memory", "recall_limit"): config.memory.recall_limit,
        ("memory", "block_tokens"): config.memory.block_tokens,
        ("memory", "stats_interval"): config.memory.stats_interval,
        ("care", "decay_half_life_days"): config.care.decay_half_life_days,
        ("care", "batch_users"): config.care.batch_users,
        ("care", "profile_facts"): config.care.profile_facts,
    }
    for (section, key), value in positive.items():
        if value <= 0:
            raise ConfigError(f"bad setting {section}.{key} ({env_name(section, key)}): must be > 0")
    if config.server.max_json_depth > 512:
        raise ConfigError(
            f"bad setting server.max_json_depth ({env_name('server', 'max_json_depth')}): at most 512, "
            "below the decoders' own recursion limit"
        )
    if not config.auth.enabled and not is_loopback(config.server.host):
        raise ConfigError(
            f"bad setting auth.enabled ({env_name('auth', 'enabled')}): auth can be off only while"
            f" server.host is loopback, not {config.server.host!r}"
        )
    if config.auth.admin_key and len(config.auth.admin_key) < 16:
        raise ConfigError(
            f"bad setting auth.admin_key ({env_name('auth', 'admin_key')}): use at least 16 random characters"
        )
    if config.auth.rate_limit < 0 or config.auth.rate_burst <= 0:
        raise ConfigError(
            f"bad setting auth.rate_limit/rate_burst ({env_name('auth', 'rate_limit')}): rate_limit must be"
            " >= 0 and rate_burst > 0"
        )
    if not 0 < config.server.port < 65536:
        raise ConfigError(f"bad setting server.port ({env_name('server', 'port')}): not a TCP port")
    if config.database.pool_min < 0 or config.database.pool_min > config.database.pool_max:
        raise ConfigError(
            f"bad setting database.pool_min ({env_name('database', 'pool_min')}): must be 0..pool_max"
        )
    if config.database.embedded_shared_buffers < 0:
        name = env_name("database", "embedded_shared_buffers")
        raise ConfigError(f"bad setting database.embedded_shared_buffers ({name}): must be >= 0")
    if config.upstream.heartbeat_idle < 0:
        raise ConfigError(
            f"bad setting upstream.heartbeat_idle ({env_name('upstream', 'heartbeat_idle')}): must be >= 0"
        )
    if not config.upstream.url.startswith(("http://", "https://")):
        raise ConfigError(f"bad setting upstream.url ({env_name('upstream', 'url')}): must be an http(s) URL")
    if config.llm.provider == "openai-compatible" and not config.llm.base_url:
        raise ConfigError(
            f"bad setting llm.base_url ({env_name('llm', 'base_url')}): required by openai-compatible"
        )
