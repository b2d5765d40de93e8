"""The intake's journal: what a process appended and did not see spooled outlives it, and only it; a process
that lives keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from memory import journal
from memory.journal import Journal

ROOT = Path(__file__).parents[2]


def _append_and_die(directory: Path, records: list[bytes], spooled: list[int], torn: bytes = b"") -> None:
    """A process appends ``records`` (none: one of ``EMPTY_AT`` bytes), sees those at the indexes
    ``spooled`` spooled, in that order, then is killed (with ``torn`` bytes written after, as a write cut
    short)."""
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from memory.journal import Journal
        j = Journal(Path({str(directory)!r}))
        segments = [j.append(r) for r in {records!r} or [b"x" * {journal.EMPTY_AT}]]
        for n in {spooled!r}:
            j.spooled(segments[n])
        if {torn!r}:
            fd = segments[0].segment.fd
            os.pwrite(fd, {torn!r}, os.fstat(fd).st_size)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert done.returncode == -9


def test_the_records_of_a_killed_process_are_found_once_and_removed_when_done(tmp_path: Path) -> None:
    _append_and_die(tmp_path, [b"one", b"two", b"three"], spooled=[])
    sweeper = Journal(tmp_path)
    [orphan] = list(sweeper.orphans())
    assert orphan.records == [b"one", b"two", b"three"]
    assert list(Journal(tmp_path).orphans()) == []  # another sweeper passes it by while it is held
    orphan.done()
    assert list(tmp_path.iterdir()) == []
    assert list(Journal(tmp_path).orphans()) == []


def test_a_record_cut_short_ends_what_is_read(tmp_path: Path) -> None:
    _append_and_die(tmp_path, [b"whole"], spooled=[], torn=b"\x00\x00\x00\x09\x00\x00")
    [orphan] = list(Journal(tmp_path).orphans())
    assert orphan.records == [b"whole"]
    orphan.keep()  # left for a later sweep
    assert _swept(tmp_path) == [[b"whole"]]


def test_a_live_process_keeps_its_segment(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    segment = live.append(b"mine")
    code = (
        "from pathlib import Path; from memory.journal import Journal;"
        f"print(len(list(Journal(Path({str(tmp_path)!r})).orphans())))"
    )
    seen = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "0"
    live.spooled(segment)
    live.close()
    assert list(tmp_path.iterdir()) == []


def test_a_segment_is_emptied_once_what_it_holds_is_spooled(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    big = b"x" * (journal.EMPTY_AT // 4)
    segments = [live.append(big) for _ in range(5)]
    [path] = list(tmp_path.iterdir())
    for segment in segments[:-1]:
        live.spooled(segment)
    assert os.path.getsize(path) > journal.EMPTY_AT  # one record is not spooled yet
    live.spooled(segments[-1])
    assert os.path.getsize(path) < len(big)
    assert list(Journal(tmp_path).orphans()) == []  # this process lives
    live.append(b"after")
    assert os.path.getsize(path) > 0


def test_records_spooled_before_the_kill_are_not_swept_again(tmp_path: Path) -> None:
    """Their user may have been forgotten since: a sweep must not bring them back."""
    _append_and_die(tmp_path, [b"spooled", b"not yet"], spooled=[0])
    assert _swept(tmp_path) == [[b"not yet"]]
    _append_and_die(
        tmp_path, [], spooled=[0]
    )  # one record of EMPTY_AT bytes, spooled: the segment was emptied
    assert sorted(_swept(tmp_path)) == [[], [b"not yet"]]


def test_a_record_not_spooled_holds_back_the_mark_of_those_after_it(tmp_path: Path) -> None:
    """A batch cut short (the collector cancelled at shutdown) leaves a record behind others that were
    spooled: the sweep must take it up, and may take up those after it again (the spool ignores an id it
    holds), never skip it."""
    _append_and_die(tmp_path, [b"a", b"b", b"c", b"d"], spooled=[0, 2])
    assert _swept(tmp_path) == [[b"b", b"c", b"d"]]


def test_a_segment_a_process_was_killed_creating_is_removed(tmp_path: Path) -> None:
    (tmp_path / "123-abc.new").write_bytes(b"")
    assert _swept(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def _swept(directory: Path) -> list[list[bytes]]:
    """What a sweep finds, each segment left for the next."""
    found = []
    for orphan in Journal(directory).orphans():
        found.append(orphan.records)
        orphan.keep()
    return found
