"""Config: defaults, a TOML file, MEMOIRE_<SECTION>_<KEY> overrides, and one clear line for a bad value."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from memory.config import Config, load, sections
from memory.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_file_and_no_environment() -> None:
    config, unknown = load({})
    assert config == Config()
    assert config.upstream.url == "https://api.openai.com/v1"
    assert config.database.url is None
    assert unknown == []


def test_short_forms_and_section_keys_override() -> None:
    config, _ = load({
        "MEMOIRE_DATABASE_URL": "postgresql://db/x",
        "MEMOIRE_REDIS_URL": "redis://r:6380/2",
        "MEMOIRE_UPSTREAM_URL": "http://127.0.0.1:11434/v1",
        "MEMOIRE_UPSTREAM_API_KEY": "sk-server",
        "MEMOIRE_UPSTREAM_READ_TIMEOUT": "30",
        "MEMOIRE_SERVER_PORT": "9000",
        "MEMOIRE_UPSTREAM_HEARTBEAT_IDLE": "2.5",
    })  # fmt: skip
    assert config.database.url == "postgresql://db/x"
    assert config.redis.url == "redis://r:6380/2"
    assert config.upstream.url == "http://127.0.0.1:11434/v1"
    assert config.upstream.api_key == "sk-server"
    assert config.upstream.read_timeout == 30.0
    assert config.server.port == 9000
    assert config.upstream.heartbeat_idle == 2.5
    # Anthropic's server key has the short name people look for, beside its section name.
    short, unknown = load(
        {"MEMOIRE_ANTHROPIC_API_KEY": "sk-ant-1", "MEMOIRE_UPSTREAM_ANTHROPIC_URL": "http://a"}
    )
    assert (short.upstream.anthropic_api_key, short.upstream.anthropic_url, unknown) == (
        "sk-ant-1",
        "http://a",
        [],
    )


def test_environment_beats_file_and_flags_beat_environment(tmp_path: Path) -> None:
    path = tmp_path / "memoire.toml"
    path.write_text('[server]\nport = 7000\nhost = "0.0.0.0"\n[worker]\nmax_jobs = 3\n')
    config, _ = load({"MEMOIRE_SERVER_PORT": "7001"}, path, {"server": {"host": "127.0.0.2"}})
    assert (config.server.port, config.server.host, config.worker.max_jobs) == (7001, "127.0.0.2", 3)


@pytest.mark.parametrize(("environ", "names"), [
    ({"MEMOIRE_SERVER_PORT": "eighty"}, ["server.port", "MEMOIRE_SERVER_PORT"]),
    ({"MEMOIRE_UPSTREAM_READ_TIMEOUT": "soon"}, ["upstream.read_timeout", "MEMOIRE_UPSTREAM_READ_TIMEOUT"]),
    ({"MEMOIRE_SERVER_PORT": "70000"}, ["server.port", "MEMOIRE_SERVER_PORT"]),
    ({"MEMOIRE_SERVER_LOG_LEVEL": "loud"}, ["server.log_level", "MEMOIRE_SERVER_LOG_LEVEL"]),
    ({"MEMOIRE_UPSTREAM_URL": "api.openai.com"}, ["upstream.url", "MEMOIRE_UPSTREAM_URL"]),
])  # fmt: skip
def test_a_bad_value_names_its_setting(environ: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ)
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_a_bad_key_in_the_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "memoire.toml"
    path.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load({}, path)


def test_unknown_memoire_variables_are_reported() -> None:
    _, unknown = load({"MEMOIRE_UPSTREAM_URLL": "x", "MEMOIRE_CONFIG": "", "OTHER": "1"})
    assert unknown == ["MEMOIRE_UPSTREAM_URLL"]


def test_cli_exits_non_zero_with_one_line_naming_the_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stack", "serve"],
        env={"MEMOIRE_UPSTREAM_READ_TIMEOUT": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "upstream.read_timeout" in lines[0]
    assert "MEMOIRE_UPSTREAM_READ_TIMEOUT" in lines[0]


def test_example_file_documents_every_setting_with_its_default() -> None:
    text = (ROOT / "config.example.toml").read_text()
    for section, keys in sections().items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{section}.{key} is not documented"
            assert f"MEMOIRE_{section.upper()}_{key.upper()}" in text
    config, _ = load({}, ROOT / "config.example.toml")
    assert config == Config()
    assert tomllib.loads(text)  # valid TOML
