"""The spool keeps entries across restarts until they are removed, and honours retry delays."""

from __future__ import annotations

from pathlib import Path

from memory.spool import Spool


async def test_entries_survive_a_reopen_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    await spool.put([("a", b"1"), ("b", b"2")])
    await spool.put([("a", b"changed")])  # the same id again is ignored
    await spool.close()

    reopened = Spool(tmp_path / "spool.sqlite3")
    entries = await reopened.due(10)
    assert [(e.id, e.payload) for e in entries] == [("a", b"1"), ("b", b"2")]
    await reopened.remove(["a"])
    assert await reopened.size() == 1
    await reopened.close()


async def test_deferred_entries_wait_their_turn(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    await spool.put([("a", b"1"), ("b", b"2")])
    await spool.defer(["a"], delay=60, error="database unavailable")
    assert [e.id for e in await spool.due(10)] == ["b"]
    await spool.remove(["b"])
    wait = await spool.next_due_in()
    assert wait is not None
    assert 55 < wait <= 60
    await spool.defer(["a"], delay=0, error="again")
    (entry,) = await spool.due(10)
    assert entry.attempts == 2
    await spool.remove(["a"])
    assert await spool.next_due_in() is None
    await spool.close()
