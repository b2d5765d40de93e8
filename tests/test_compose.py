"""The container deployment: docker-compose.yml and the Dockerfile, checked against the code they run.

No Docker engine is needed: the files are read and every command, setting and route they name is checked
against the real CLI parser, the real config loader and the real app.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from memory.config import ENV_ALIASES, Config, env_name, load, sections
from stack.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {"db", "redis", "migrate", "api", "worker"}
#: The ``memoire`` command each service built from the Dockerfile runs.
BUILT = {"migrate": "migrate", "api": "serve", "worker": "worker"}
DB_URL = "postgresql://memoire:memoire@db:5432/memoire"
REDIS_URL = "redis://redis:6379/0"


# -- reading the files ------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|\$\$")


def _interpolate(value: str, shell: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME-default}``, with ``shell`` as the host env."""

    def sub(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, default = match["name"], match["op"], match["default"] or ""
        if op == ":-":
            return shell.get(name) or default
        if op == "-":
            return shell.get(name, default)
        return shell.get(name, "")

    return _VAR.sub(sub, value)


def _environment(service: dict[str, Any], shell: Mapping[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: _interpolate("" if v is None else str(v), shell or {}) for k, v in raw.items()}


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return out


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each from its FROM."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, args))
    return stages


def _final_stage() -> list[tuple[str, str]]:
    return _stages()[-1]


def _final_env() -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for keyword, args in _final_stage():
        if keyword == "ENV":
            pairs.extend((k, v) for k, v in (item.split("=", 1) for item in shlex.split(args)))
    return pairs


def _args(name: str) -> list[str]:
    return [args for keyword, args in _instructions() if keyword == name]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args("ENV"):
        for pair in shlex.split(args):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {pair!r}: use the KEY=value form"
            env[key] = value
    return env


def _exec_form(name: str) -> list[str]:
    values = _args(name)
    assert values, f"the Dockerfile has no {name}"
    parsed = json.loads(values[-1])  # the last one wins
    assert isinstance(parsed, list), f"{name} must use the exec (JSON array) form"
    return [str(p) for p in parsed]


def _container_config(service: str, shell: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """The config the service's container loads: the image's ENV, then the service's environment."""
    return load({**_image_env(), **_environment(_services()[service], shell)})


def _healthcheck_text(check: dict[str, Any]) -> str:
    test = check["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def _has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck")
    if not check or check.get("disable"):
        return False
    test = check.get("test")
    return bool(test) and test != ["NONE"]


# -- docker-compose.yml -----------------------------------------------------------------------------------


def test_the_five_services_exist() -> None:
    assert set(_services()) == SERVICES


def test_db_runs_postgresql_with_pgvector() -> None:
    db = _services()["db"]
    assert db["image"].startswith("pgvector/pgvector:pg"), "the schema needs the vector extension"
    env = _environment(db)
    assert env["POSTGRES_USER"] == env["POSTGRES_PASSWORD"] == env["POSTGRES_DB"] == "memoire"
    assert "pg_isready" in _healthcheck_text(db["healthcheck"])


def test_redis_persists_its_queue() -> None:
    redis = _services()["redis"]
    command = redis["command"]
    command = command if isinstance(command, list) else shlex.split(command)
    assert command[command.index("--appendonly") + 1] == "yes"
    text = _healthcheck_text(redis["healthcheck"])
    assert "redis-cli" in text
    assert "ping" in text


def test_state_lives_in_named_volumes() -> None:
    declared = set(_compose().get("volumes") or {})
    mounts = {
        name: {v.split(":")[1]: v.split(":")[0] for v in _services()[name].get("volumes", [])}
        for name in ("db", "redis", "api")
    }
    assert mounts["db"]["/var/lib/postgresql/data"] in declared
    assert mounts["redis"]["/data"] in declared
    assert mounts["api"]["/data"] in declared


@pytest.mark.parametrize("name", sorted(SERVICES - {"migrate"}))
def test_long_running_services_have_a_healthcheck_and_restart(name: str) -> None:
    service = _services()[name]
    assert _has_healthcheck(service), f"{name} has no healthcheck"
    assert service["restart"] == "unless-stopped"


def test_migrate_is_one_shot() -> None:
    migrate = _services()["migrate"]
    assert migrate["restart"] == "no"
    # The image's HEALTHCHECK polls the API; a one-shot job must not inherit it.
    assert not _has_healthcheck(migrate)


@pytest.mark.parametrize(("name", "expected"), sorted(BUILT.items()))
def test_built_services_run_a_real_memoire_command(name: str, expected: str) -> None:
    service = _services()[name]
    assert "image" not in service or "build" in service
    build = service["build"]
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (context / dockerfile).resolve() == DOCKERFILE
    command = service["command"]
    assert isinstance(command, list), "use the exec form: the image's entrypoint is `memoire`"
    try:
        args = build_parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"{name}: `memoire {' '.join(command)}` is not a memoire command")
    assert args.command == expected


def test_every_service_from_the_image_runs_one_of_its_commands() -> None:
    built = {name for name, service in _services().items() if "build" in service}
    assert built == set(BUILT)


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_start_after_migrations_and_redis(name: str) -> None:
    depends = _services()[name]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"


def test_migrate_waits_for_a_healthy_database() -> None:
    assert _services()["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_defines_the_shared_environment_once() -> None:
    shared = _compose()["x-memoire-env"]
    for name in BUILT:
        env = _services()[name]["environment"]
        assert {k: env[k] for k in shared} == shared, f"{name} does not use x-memoire-env"


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_memoire_variable_is_a_real_setting(name: str) -> None:
    env = _environment(_services()[name])
    assert any(k.startswith("MEMOIRE_") for k in env)
    config, unknown = _container_config(name)
    assert unknown == []
    assert config.database.url == DB_URL
    assert config.redis.url == REDIS_URL
    # The defaults of the host-side variables: OpenAI, and no key of Mémoire's own.
    assert config.upstream.url == "https://api.openai.com/v1"
    assert not config.upstream.api_key


def test_interpolated_variables_are_settings_too() -> None:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    memoire = {n for n in names if n.startswith("MEMOIRE_")}
    assert memoire, "the upstream URL and key come from the host environment"
    settings = {env_name(section, key) for section, keys in sections().items() for key in keys} | set(
        ENV_ALIASES
    )
    assert memoire <= settings, sorted(memoire - settings)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_upstream_is_taken_from_the_host_environment(name: str) -> None:
    shell = {"MEMOIRE_UPSTREAM_URL": "https://llm.example.com/v1", "MEMOIRE_UPSTREAM_API_KEY": "sk-test",
             "MEMOIRE_ANTHROPIC_API_KEY": "sk-ant-test"}  # fmt: skip
    config, unknown = _container_config(name, shell)
    assert unknown == []
    assert config.upstream.url == "https://llm.example.com/v1"
    assert config.upstream.api_key == "sk-test"
    assert config.upstream.anthropic_url == "https://api.anthropic.com"
    assert config.upstream.anthropic_api_key == "sk-ant-test"


def test_api_is_reachable_on_8080() -> None:
    api = _services()["api"]
    published = [str(p) for p in api["ports"]]
    assert any(p.split(":")[-1] == "8080" and p.split(":")[-2] == "8080" for p in published), published
    config, _ = _container_config("api")
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 8080
    assert "8080" in " ".join(_args("EXPOSE")).split()


def test_api_spool_survives_restarts() -> None:
    config, _ = _container_config("api")
    assert config.data_dir == Path("/data")
    targets = [Path(v.split(":")[1]) for v in _services()["api"]["volumes"]]
    assert any(config.spool_path.is_relative_to(t) for t in targets), config.spool_path


def test_api_healthcheck_hits_the_health_route() -> None:
    from proxy.app import healthz

    text = _healthcheck_text(_services()["api"]["healthcheck"])
    assert "http://127.0.0.1:8080/healthz" in text
    assert healthz.paths == {"/healthz"}


def test_worker_healthcheck_reads_its_queue() -> None:
    text = _healthcheck_text(_services()["worker"]["healthcheck"])
    assert "async_check_health" in text
    assert "queue_name=c.redis.queue_name" in text


# -- Dockerfile -------------------------------------------------------------------------------------------


def test_image_is_python_311_slim() -> None:
    assert _args("FROM")[0].split()[0] == "python:3.11-slim"


def test_entrypoint_is_the_memoire_script() -> None:
    assert _exec_form("ENTRYPOINT") == ["memoire"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["memoire"] == "stack.cli:main"
    command = _exec_form("CMD")
    assert command == ["serve"]
    assert build_parser().parse_args(command).command == "serve"


def test_image_installs_the_runtime_dependencies_only() -> None:
    runs = " ".join(a for k, a in _final_stage() if k == "RUN")
    assert "pip install" in runs
    assert "[test" not in runs
    # The SDK's dependencies and the server extra's; no other extra (test, export, bench).
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert "['optional-dependencies']['server']" in runs
    assert not [e for e in extras if e != "server" and f"['{e}']" in runs]
    assert "torch" not in runs.lower()  # only the export stage has it


def test_torch_comes_from_the_cpu_index_at_the_pinned_version() -> None:
    """From PyPI, torch pulls gigabytes of CUDA packages: the export stage must take the CPU build, pinned."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [pin] = [d for d in pyproject["project"]["optional-dependencies"]["export"] if d.startswith("torch")]
    assert pin.startswith("torch==")
    assert not [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    torch_runs = [a for a in _args("RUN") if "torch" in a]
    assert torch_runs
    first = torch_runs[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in first
    assert f'"{pin}"' in first
    # It is installed before the requirements that pin it, so pip finds it already satisfied.
    assert first.index("whl/cpu") < first.index("requirements.txt")


def test_the_image_carries_the_exported_model_from_the_export_stage() -> None:
    [(name, _)] = [(a.split()[-1], a) for k, a in _instructions() if k == "FROM" and " AS " in a.upper()]
    export_runs = " ".join(a for k, a in _stages()[0] if k == "RUN")
    assert "memoire models prepare" in export_runs
    copies = [a for k, a in _final_stage() if k == "COPY" and a.startswith(f"--from={name}")]
    assert copies == [f"--from={name} /opt/memoire/models /opt/memoire/models"]
    env = dict(_final_env())
    assert env["MEMOIRE_EMBEDDINGS_MODEL_DIR"] == "/opt/memoire/models"


def test_image_copies_every_package_before_installing() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    final = _final_stage()
    install = next(i for i, (k, a) in enumerate(final) if k == "RUN" and "install --no-deps ." in a)
    copied: set[str] = set()
    for keyword, args in final[:install]:
        if keyword == "COPY":
            copied.update(Path(src).name for src in shlex.split(args)[:-1] if not src.startswith("--"))
    assert packages <= copied
    assert "pyproject.toml" in copied


def test_image_runs_as_a_non_root_user() -> None:
    users = _args("USER")
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_image_env_names_real_settings() -> None:
    env = _image_env()
    config, unknown = load(env)
    assert unknown == []
    assert config.server.host == "0.0.0.0"
    assert config.data_dir == Path("/data")


def test_image_healthcheck_hits_healthz() -> None:
    (check,) = _args("HEALTHCHECK")
    assert "CMD" in check
    command = json.loads(check[check.index("CMD") + len("CMD") :])
    assert command[0] == "python"
    assert "http://127.0.0.1:" in command[-1]
    assert "/healthz" in command[-1]
    assert "'8080'" in command[-1]


def test_dockerignore_keeps_the_build_inputs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".venv", ".memoire", ".git", "tests", "bench/results"):
        assert excluded in patterns
    for needed in ("pyproject.toml", "memoire", "proxy", "memory", "worker", "migrations"):
        assert not any(fnmatch(needed, p) for p in patterns), f"{needed} is needed to build the image"


def test_the_api_runs_several_processes_on_its_port() -> None:
    """One API process that dies must not refuse new calls (tests/memoire/test_api_kill.py)."""
    config, _ = _container_config("api")
    assert config.server.workers >= 2
    assert _services()["api"]["command"] == ["serve"]
