"""The ``memoire`` command.

memoire up       PostgreSQL (embedded unless MEMOIRE_DATABASE_URL), Redis, migrations, the API, the worker
memoire serve    the API only
memoire worker   the ARQ worker only
memoire migrate  apply pending migrations and exit
memoire jobs run TASK [--user U] [--retry-failed]   run a worker task now, in this process
memoire jobs failed | retry ID|--all                 list failed jobs with their reason; queue them again
memoire models prepare                              export the local embedding model to ONNX (once)
memoire keys create --name NAME | list | revoke ID  manage API keys (mk_…)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory.config import Config, env_name, load
from memory.errors import ConfigError, MemoireError
from memory.queue import BY_HAND, Task
from stack import logs
from stack.local import (
    EmbeddedPostgres,
    StackError,
    redis_answers,
    running_embedded_dsn,
    spawn,
    start_redis,
    stop_process,
)

log = logging.getLogger("memoire")

#: A child that exits this often within a minute is not restarted again.
MAX_RESTARTS_PER_MINUTE = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memoire", description="Mémoire: an LLM proxy with long-term memory."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, *, server: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.add_argument("--config", help="TOML config file (default: $MEMOIRE_CONFIG)")
        sub.add_argument("--data-dir", help="local state directory (default: ./.memoire)")
        if server:
            sub.add_argument("--host", help="interface to bind (default: 127.0.0.1)")
            sub.add_argument("--port", type=int, help="port of the API (default: 8080)")
        return sub

    command("up", "Run the whole stack: PostgreSQL, Redis, migrations, the API and the worker.", server=True)
    command("serve", "Run the API (the proxy and the REST API).", server=True)
    command("worker", "Run the ARQ worker.")
    command("migrate", "Apply pending database migrations.")
    jobs = command("jobs", "Run worker tasks on demand; see and replay failed jobs.")
    jobs.add_argument("action", choices=["run", "failed", "retry"])
    jobs.add_argument(
        "target",
        nargs="?",
        help=f"run: the task ({', '.join(BY_HAND)}); retry: a failed job's id",
    )
    jobs.add_argument("--user", help="run: only this end user (external id)")
    jobs.add_argument(
        "--retry-failed", action="store_true", help=f"run {Task.EXTRACT_FACTS}: replay failed logs too"
    )
    jobs.add_argument("--all", action="store_true", help="retry: every failed job")
    keys = command("keys", "Manage API keys (mk_…).")
    key_actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    # The common options also after the action (`memoire keys list --data-dir D`), without resetting them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help="local state directory")
    create = key_actions.add_parser(
        "create", parents=[common], help="create a key; it is printed alone on the last line"
    )
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--tenant", help="add the key to this tenant, made if new (default: a new tenant)")
    create.add_argument("--default-user", help="end user of calls that name none (default: 'default')")
    create.add_argument("--rate-limit", type=int, help="requests per minute (default: auth.rate_limit)")
    listing = key_actions.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    revoke = key_actions.add_parser("revoke", parents=[common], help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id, as `memoire keys list` shows it")
    models = command("models", "Manage the local embedding model.")
    models.add_argument("action", choices=["prepare"])
    return parser


def _config(args: argparse.Namespace) -> Config:
    server: dict[str, Any] = {}
    for flag, key in (("data_dir", "data_dir"), ("host", "host"), ("port", "port")):
        value = getattr(args, flag, None)
        if value is not None:
            server[key] = value
    config, unknown = load(os.environ, args.config, {"server": server} if server else None)
    for name in unknown:
        log.warning("ignoring %s: it matches no setting", name)
    return config


def _dsn(config: Config) -> str:
    """The database to use: the configured URL, else the embedded server ``memoire up`` runs."""
    if config.database.url:
        return config.database.url
    dsn = running_embedded_dsn(config.data_dir)
    if dsn is None:
        raise StackError(
            f"no database: set {env_name('database', 'url')}, or run `memoire up` on {config.data_dir}"
        )
    return dsn


async def _migrate(dsn: str) -> list[str]:
    import asyncpg

    from memory.migrations import migrate

    conn = await asyncpg.connect(dsn)
    try:
        return [f"{m.version:04d}_{m.name}" for m in await migrate(conn)]
    finally:
        await conn.close()


def cmd_migrate(config: Config) -> int:
    applied = asyncio.run(_migrate(_dsn(config)))
    print(f"applied {len(applied)} migrations: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_jobs(config: Config, args: argparse.Namespace) -> int:
    from stack import jobs

    if args.action == "failed":
        return jobs.show_failed(config, _dsn(config))
    if args.action == "retry":
        if not args.target and not args.all:
            print("memoire: give a failed job's id (see `memoire jobs failed`), or --all", file=sys.stderr)
            return 2
        return jobs.retry_failed(config, _dsn(config), None if args.all else args.target)
    if not args.target:
        print(f"memoire: name the task to run: {', '.join(BY_HAND)}", file=sys.stderr)
        return 2
    try:
        outcomes = jobs.run(config, _dsn(config), args.target, user=args.user, retry_failed=args.retry_failed)
    except MemoireError as exc:
        print(f"memoire: {exc.message}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "nothing to do"
    print(f"{args.target}: {summary}")
    return 0 if not outcomes.get("failed") else 3


def cmd_keys(config: Config, args: argparse.Namespace) -> int:
    from stack import keys

    return keys.run(_dsn(config), args)


def _prepare_model(config: Config) -> None:
    if config.embeddings.provider != "local":
        return
    from memory import onnx_export

    files = onnx_export.ensure(
        config.model_dir, config.embeddings.model, quantize=config.embeddings.quantized_queries
    )
    log.info("embedding model ready: %s", files.model)


def cmd_models(config: Config, args: argparse.Namespace) -> int:
    _prepare_model(config)
    print(f"embedding model ready under {config.model_dir}")
    return 0


def cmd_serve(config: Config) -> int:
    import uvicorn

    dsn = _dsn(config)
    options: dict[str, Any] = {
        "host": config.server.host,
        "port": config.server.port,
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        "http": "httptools",
        "server_header": False,  # the upstream's server and date headers pass through
        "date_header": False,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        "lifespan": "on",
    }
    if config.server.workers > 1:
        # Each worker process loads the config again: hand it what flags and discovery decided.
        os.environ[env_name("database", "url")] = dsn
        os.environ[env_name("server", "data_dir")] = str(config.data_dir)
        uvicorn.run("stack.cli:app_from_env", factory=True, workers=config.server.workers, **options)
    else:
        uvicorn.run(_app(config, dsn), **options)
    return 0


def _app(config: Config, dsn: str) -> Any:
    """The API app, queueing its jobs on the worker's queue (the proxy does not import the worker)."""
    from proxy.app import create_app
    from worker.queue import ArqQueue

    return create_app(config, dsn, queue=ArqQueue.connect, owns_process=True)


def app_from_env() -> Any:
    """Factory for multi-worker ``uvicorn``: each worker process loads the config itself."""
    config, _ = load(os.environ)
    if not config.database.url:
        raise RuntimeError("MEMOIRE_DATABASE_URL must be set for multi-worker serving")
    return _app(config, config.database.url)


def cmd_worker(config: Config) -> int:
    from worker import runner
    from worker.settings import worker_settings

    return runner.run(worker_settings(config, _dsn(config)))


class _Supervisor:
    """Runs the API and worker processes, restarts one that dies, and stops everything on a signal."""

    def __init__(self, config: Config, env: dict[str, str], argv: Sequence[str]) -> None:
        self.config = config
        self.env = env
        self.argv = list(argv)
        self.stopping = False
        self.children: dict[str, Any] = {}
        self.exits: dict[str, list[float]] = {"api": [], "worker": []}

    def on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("received %s; stopping", signal.Signals(signum).name)
        self.stopping = True

    def start(self, name: str) -> None:
        command = "serve" if name == "api" else "worker"
        self.children[name] = spawn([*self.argv, command], env=self.env)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        url = f"http://{self.config.server.host}:{self.config.server.port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            if self.children["api"].poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def run(self) -> int:
        for name in self.exits:
            self.start(name)
        if self.wait_ready():
            base = f"http://{self.config.server.host}:{self.config.server.port}/v1"
            print(f"Mémoire is up. Point your app at it: OPENAI_BASE_URL={base}", flush=True)
        code = 0
        while not self.stopping:
            for name, proc in list(self.children.items()):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                recent = [t for t in self.exits[name] if now - t < 60] + [now]
                self.exits[name] = recent
                if len(recent) > MAX_RESTARTS_PER_MINUTE:
                    log.error("%s keeps exiting (last code %s); giving up", name, proc.returncode)
                    self.stopping, code = True, 1
                    break
                log.error("%s exited with code %s; restarting it", name, proc.returncode)
                self.start(name)
            time.sleep(0.2)
        # The API first, so its intake spools what it holds; then the worker.
        for name in ("api", "worker"):
            stop_process(self.children[name], name)
        return code


def _announce_development_key(dsn: str) -> None:
    from stack.keys import ensure_development_key

    key = asyncio.run(ensure_development_key(dsn))
    if key is not None:
        print(
            "First start: a development key for the default tenant (shown once; more with"
            f" `memoire keys create --name NAME`):\n  OPENAI_API_KEY={key}",
            flush=True,
        )


def cmd_up(config: Config) -> int:
    supervisor = _Supervisor(config, {}, [sys.executable, "-m", "stack"])
    signal.signal(signal.SIGINT, supervisor.on_signal)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    postgres: EmbeddedPostgres | None = None
    redis_proc = None
    try:
        dsn = config.database.url
        if not dsn:
            postgres = EmbeddedPostgres(config.data_dir, config.database.embedded_shared_buffers)
            dsn = postgres.start()
            log.info("embedded PostgreSQL running on %s", postgres.pgdata)
        if not redis_answers(config.redis.url):
            redis_proc = start_redis(config.redis.url, config.data_dir)
            log.info("started redis-server for %s", config.redis.url)
        applied = asyncio.run(_migrate(dsn))
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        _announce_development_key(dsn)
        # Once per model dir (a few seconds): before the API and the worker start, not in both at once.
        try:
            _prepare_model(config)
        except MemoireError as exc:
            log.warning(
                "embedding model not ready (%s); memory works by wording only until it is", exc.message
            )
        if supervisor.stopping:
            return 0
        supervisor.env = {
            **os.environ,
            env_name("database", "url"): dsn,
            env_name("redis", "url"): config.redis.url,
            env_name("server", "host"): config.server.host,
            env_name("server", "port"): str(config.server.port),
            env_name("server", "data_dir"): str(config.data_dir),
        }
        return supervisor.run()
    finally:
        if redis_proc is not None:
            stop_process(redis_proc, "redis-server")
        if postgres is not None:
            postgres.stop()


COMMANDS = {"up": cmd_up, "serve": cmd_serve, "worker": cmd_worker, "migrate": cmd_migrate}
COMMANDS_WITH_ARGS = {"jobs": cmd_jobs, "models": cmd_models, "keys": cmd_keys}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"memoire: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.server.log_level)
    if args.config:
        os.environ["MEMOIRE_CONFIG"] = str(Path(args.config).resolve())
    try:
        if args.command in COMMANDS_WITH_ARGS:
            return COMMANDS_WITH_ARGS[args.command](config, args)
        return COMMANDS[args.command](config)
    except StackError as exc:
        print(f"memoire: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
