"""The intake's journal: every captured exchange, in a file of its process before the answer's last byte.

The intake collects exchanges into the spool in batches, off the request path (a spool write is an fsync,
milliseconds). An API process killed in between took the exchanges it held in memory with it: the calls had
been answered, and nothing of them was stored (0-3 a kill at 130 calls a second, tests/memoire). So each
exchange is first appended here, one ``write(2)`` of its bytes on the request path (a few µs; no fsync: the
page cache outlives a killed process, which is what this guards against), and the record is let go once the
spool holds it.

A process writes to segments of its own, each locked (``flock``) while the process lives. A segment's first
8 bytes say how far it is spooled: up to the first record the spool does not hold yet, so a record spooled
once is never swept again (its user may have been forgotten since). A segment whose records are all spooled
is emptied, or removed once a newer one took over. The kernel drops a dead
process's locks, so any process that can lock a segment (:meth:`Journal.orphans`) knows its writer is gone,
and spools what it holds; the spool ignores an id it has, and delivery is idempotent, so a record spooled
both ways is stored once.

A record is framed by its length and CRC-32: a write cut short by the kill ends the segment's readable
part.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_FRAME = struct.Struct("!II")
#: A segment's first bytes: the offset up to which its records are in the spool.
_MARK = struct.Struct("!Q")
#: Bytes a segment grows to before its records, once spooled, are cut off (the file emptied in place).
EMPTY_AT = 1 << 20
#: Bytes a segment grows to before a new one takes over (its records are not all spooled yet: the spool is
#: away); it is removed once they are.
ROTATE_AT = 64 << 20
_SUFFIX = ".journal"


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    size: int = _MARK.size
    ends: collections.deque[int] = field(default_factory=collections.deque)
    """Where each record appended and not yet let go ends, in order."""
    spooled: set[int] = field(default_factory=set)
    """Ends of records in the spool behind one that is not (yet)."""


@dataclass(frozen=True, slots=True)
class Written:
    """Where a record went: what :meth:`Journal.spooled` is given once the spool holds it."""

    segment: Segment
    end: int


@dataclass
class Orphan:
    """A segment left by a process that is gone: its records, and the lock that keeps it ours."""

    path: Path
    fd: int
    records: list[bytes] = field(default_factory=list)

    def done(self) -> None:
        """Its records are in the spool: remove it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)

    def keep(self) -> None:
        """Its records could not be spooled: leave it for a later sweep."""
        os.close(self.fd)

    def set_aside(self) -> None:
        """It holds records that cannot be read: keep it for an operator, out of the sweeps' way."""
        with contextlib.suppress(FileNotFoundError):
            self.path.rename(self.path.with_suffix(".unreadable"))
        os.close(self.fd)


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._current: Segment | None = None
        self._retired: list[Segment] = []

    def _segment(self) -> Segment:
        if self._current is None or self._current.size >= ROTATE_AT:
            segment = self._new_segment()
            if self._current is not None:  # past ROTATE_AT, so records are open (spooled() empties it)
                self._retired.append(self._current)
            self._current = segment
        return self._current

    def _new_segment(self) -> Segment:
        """A segment, locked and marked before its name is one a sweep looks for (else a sweep could take
        it for a dead process's between its creation and its lock)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        staged = self.directory / f"{name}.new"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.pwrite(fd, _MARK.pack(_MARK.size), 0)
            path = staged.rename(self.directory / f"{name}{_SUFFIX}")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                staged.unlink()
            raise
        return Segment(path, fd)

    def append(self, record: bytes) -> Written:
        """Append ``record``; where it went, to pass to :meth:`spooled`. Raises OSError when the disk
        refuses it."""
        segment = self._segment()
        frame = _FRAME.pack(len(record), zlib.crc32(record)) + record
        written = os.pwrite(segment.fd, frame, segment.size)
        if written != len(frame):  # a full disk: what was written is no record
            os.ftruncate(segment.fd, segment.size)
            raise OSError(f"the journal took {written} of {len(frame)} bytes")
        segment.size += written
        segment.ends.append(segment.size)
        return Written(segment, segment.size)

    def spooled(self, written: Written) -> None:
        """The record ``written`` is in the spool. The segment's mark moves past every record before the
        first one that is not, so a sweep never takes up a record spooled once (its user may have been
        forgotten since), nor skips one that is not."""
        segment = written.segment
        segment.spooled.add(written.end)
        mark = 0
        while segment.ends and segment.ends[0] in segment.spooled:
            mark = segment.ends.popleft()
            segment.spooled.discard(mark)
        if not mark:
            return
        if segment.ends or (segment is self._current and segment.size < EMPTY_AT):
            os.pwrite(segment.fd, _MARK.pack(mark), 0)
        elif segment is self._current:
            os.ftruncate(segment.fd, 0)  # a kill right here leaves an empty file: nothing to sweep
            os.pwrite(segment.fd, _MARK.pack(_MARK.size), 0)
            segment.size = _MARK.size
        else:
            self._remove(segment)

    def _remove(self, segment: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        os.close(segment.fd)
        with contextlib.suppress(ValueError):
            self._retired.remove(segment)

    def close(self) -> None:
        """Remove this process's segments whose records are all spooled; keep the others for the next
        process that sweeps."""
        for segment in [*self._retired, *([self._current] if self._current else [])]:
            if segment.ends:
                log.error("%d captured exchanges are left in %s", len(segment.ends), segment.path)
                os.close(segment.fd)
            else:
                self._remove(segment)
        self._current = None
        self._retired = []

    def orphans(self) -> Iterator[Orphan]:
        """The segments of processes that are gone, each locked for the caller until it calls
        :meth:`Orphan.done`, :meth:`Orphan.keep` or :meth:`Orphan.set_aside`. A segment a process was
        killed creating (before it held any record) is removed."""
        try:
            paths = sorted(self.directory.glob(f"*{_SUFFIX}")) + sorted(self.directory.glob("*.new"))
        except OSError:
            return
        own = {s.path for s in self._retired} | ({self._current.path} if self._current else set())
        for path in paths:
            if path in own:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process lives, or another is sweeping it
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:  # swept by another process since we listed it
                os.close(fd)
                continue
            if path.suffix != _SUFFIX:
                Orphan(path, fd).done()
                continue
            yield Orphan(path, fd, _records(fd, path))


def _records(fd: int, path: Path) -> list[bytes]:
    with os.fdopen(os.dup(fd), "rb") as file:
        data = file.read()
    if len(data) < _MARK.size:
        return []
    records: list[bytes] = []
    at = max(_MARK.size, _MARK.unpack_from(data)[0])
    while at + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, at)
        record = data[at + _FRAME.size : at + _FRAME.size + length]
        if len(record) < length or zlib.crc32(record) != crc:
            log.warning("journal %s ends in a record cut short at byte %d; the rest is skipped", path, at)
            break
        records.append(record)
        at += _FRAME.size + length
    return records
