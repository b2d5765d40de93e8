"""Once started, the API process leaves what it holds out of the garbage collector's full passes, and
gives it back when it stops."""

from __future__ import annotations

import gc

import httpx
import pytest

from tests.conftest import ProxyFactory, wait_until
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.usefixtures("db")


def walked(obj: object) -> bool:
    """Whether the collector's passes still walk ``obj`` (a frozen object is in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_what_the_app_holds_once_started_is_left_out_of_full_collections(
    start_proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    assert gc.get_freeze_count() == 0
    server = start_proxy(server={"freeze_heap": True})
    services = server.app.state.services
    assert not walked(services)
    assert not walked(services.config)
    # The embedder loads in the background; the app settles again once it has.
    wait_until(lambda: services.memory.embedder_ready and not walked(services.memory.embedder))

    # Calls are served as before, and what they make is collected as before.
    with httpx.Client(base_url=server.url, timeout=10) as http:
        reply = http.post(
            "/v1/chat/completions",
            json={"model": "fake-chat", "user": "ana", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."

    server.stop()
    # Stopped, the app gives its heap back: a process that hosts one app after another leaks nothing.
    assert gc.get_freeze_count() == 0
    assert walked(services)


def test_a_process_told_not_to_freeze_leaves_its_heap_alone(start_proxy: ProxyFactory) -> None:
    server = start_proxy(server={"freeze_heap": False})
    wait_until(lambda: server.app.state.services.memory.embedder_ready)
    assert gc.get_freeze_count() == 0
    assert walked(server.app.state.services)
