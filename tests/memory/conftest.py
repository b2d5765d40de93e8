"""Fixtures of the memory core's REST tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.facts import Api
from tests.support.servers import ServerThread


@pytest.fixture
def api(proxy: ServerThread) -> Iterator[Api]:
    """The REST API of a proxy started with default settings (auth off, on loopback)."""
    api = Api(proxy)
    yield api
    api.client.close()
