"""The test settings: the Redis database the tests use, where the repository and the exported model are,
and a config made from section overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from memory.config import Config

#: Redis database 15: the tests flush it, so it must not be one anything else uses.
TEST_REDIS_URL = os.environ.get("MEMOIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

#: The repository's root.
ROOT = Path(__file__).resolve().parents[2]
#: The local model's ONNX export, made once and kept between runs (git-ignored).
MODEL_DIR = ROOT / ".cache" / "models"


def make_config(**sections: dict[str, Any]) -> Config:
    """A config from section overrides, e.g. ``make_config(upstream={"url": ...})``."""
    return msgspec.convert(sections, Config, strict=False)
