"""What a request's JSON may hold, checked before anything decodes it: nesting at most ``max_depth`` levels
deep (``server.max_json_depth``), integers within 64 bits (−2**63 … 2**64−1, what the decoders read) and
other numbers within a finite double.

Why, as a new user found it: msgspec, like every recursive decoder, goes one C call deeper per level,
guarded only by Python's recursion limit, so a chat body with a 1,000-deep extra field raised
RecursionError, a 500 on every proxy route. On Python before 3.14, where that guard does not measure the
C stack, a thread with a small stack could crash instead (msgspec#1033). And a number nothing holds (a
5,001-digit ``max_tokens``, ``temperature: 1e99999``) went upstream, to be refused by the tee's decoders
afterwards. Both now get a 400 that names the field and the limit, before any decoder or the provider
sees the body.

Cost: most bodies pass two C-speed scans and nothing more: no more ``[`` and ``{`` in all than the limit
allows, and no run of 20 digits or 3-digit exponent. A body that fails either (a coding agent's, with
many tools and turns) has its strings emptied (split at its quotes, escaped ones taken out first), and its
nesting is summed over its brackets alone, in NumPy; a large body (an image) is emptied first. Only a
body that breaks a limit is walked token by token, to name the field. On the 2-vCPU VM of bench/: a
chat body of 120 bytes 2 µs, of 12 KB 34 µs; a coding agent's of 200 KB (60 tools, 50 turns, quotes
escaped in its text) 0.8-1.3 ms; 1.3 MB holding an image 0.5-0.8 ms. The worst a hostile body can
cost is bounded: 32 MB of brackets 150 ms, 30 MB of long numbers 180 ms (see :data:`MOST_SUSPECTS`); every
scan is C-speed except the look at each suspect number, which is capped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

_BOM = b"\xef\xbb\xbf"
#: Bodies larger than this have their strings emptied first: one pass over them beats several over their text.
_LARGE = 16 * 1024
#: Every digit reads as 0 and E as e, so a few substring searches find what may be a number out of range.
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")
#: 20 digits in a row (2**64 has 20), 19 after a minus (-2**63 has 19), or an exponent of 3 digits.
_ODD = (b"0" * 20, b"-" + b"0" * 19, b"0e000", b"0e+000", b"0e-000")
#: Numbers that look out of range and are looked at one by one, at most: a body with more is refused,
#: so that checking one costs a bounded time (5 million ``1e100`` took 10 s, the event loop stopped).
MOST_SUSPECTS = 10_000
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_SHAPE = bytes(ord("n") if b in b"0123456789.eE+-" else ord(" ") for b in range(256))
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Bytes split or brackets summed (int32 each) at a time.
_CHUNK = 1 << 20
_TOKEN = re.compile(rb'\s*(?:("[^"\\]*(?:\\.[^"\\]*)*")|([\[\]{}:,])|(-?[0-9][0-9.eE+-]*)|([a-z]+))')
#: The walk that names the field stops after this many tokens: past it, the error names no field.
_WALK_LIMIT = 50_000
INT_MIN, UINT_MAX = -(2**63), 2**64 - 1


class Breach:
    """A limit the body breaks: which, and where (a path such as ``messages[0].content``, or None)."""

    __slots__ = ("kind", "path")

    def __init__(self, kind: str, path: str | None) -> None:
        self.kind = kind
        """``depth``, ``number`` (one out of range) or ``numbers`` (more than :data:`MOST_SUSPECTS` that
        look it)."""
        self.path = path


def check(body: bytes, max_depth: int) -> Breach | None:
    """The first limit ``body`` breaks, or None. Bodies that are not JSON at all are left to the decoder."""
    if body.startswith(_BOM):  # not JSON, but an upstream might read it so
        body = body[len(_BOM) :]
    blank = _blank(body) if len(body) > _LARGE else None
    text = body if blank is None else blank
    deep = text.count(b"[") + text.count(b"{") > max_depth
    if not deep and not _odd(text):
        return None
    if blank is None:
        blank = _blank(body)  # brackets and digits inside strings are text
    deep = deep and _too_deep(blank, max_depth)
    odd = _numbers(blank)
    if odd == "numbers":
        return Breach("numbers", None)
    if not deep and odd is None:
        return None
    return _locate(body, max_depth, "depth" if deep else "number")


def _blank(body: bytes) -> bytes:
    """``body`` with every string emptied. Escaped backslashes go first, then escaped quotes (pairing left
    to right, as JSON does), so the quotes left pair up: every other part between them is a string's
    content. Split a megabyte at a time, so a body of many short strings never holds one object each."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    out: list[bytes] = []
    inside = False
    for start in range(0, len(body), _CHUNK):
        parts = body[start : start + _CHUNK].split(b'"')
        out.append(b'""'.join(parts[1::2] if inside else parts[0::2]))
        inside ^= len(parts) % 2 == 0  # an odd number of quotes in the chunk flips it
    return b'""'.join(out) if len(out) > 1 else (out[0] if out else b"")


def _odd(body: bytes) -> bool:
    digits = body.translate(_DIGITS)
    return any(pattern in digits for pattern in _ODD)


def _too_deep(blank: bytes, max_depth: int) -> bool:
    brackets = blank.translate(_BRACKETS, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return False
    if b"[" * (max_depth + 1) in brackets:
        return True
    import numpy as np  # the server's own dependency (embeddings); only bodies with many brackets get here

    level = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, np.uint8, min(_CHUNK, len(brackets) - start), start)
        levels = np.cumsum((chunk == ord("[")).astype(np.int32) * 2 - 1) + level
        if int(levels.max()) > max_depth:
            return True
        level = int(levels[-1])
    return False


def _numbers(blank: bytes) -> str | None:
    """``number`` if a number in ``blank`` is out of range, ``numbers`` if more than :data:`MOST_SUSPECTS`
    would need a look, else None. Suspects are found by substring search, and each number's start by
    ``rfind`` in a copy where number bytes read ``n``: C-speed, and no byte is scanned twice a pattern."""
    digits = blank.translate(_DIGITS)
    shape = blank.translate(_SHAPE)  # number bytes are n, every other byte a space
    looked: set[int] = set()
    for pattern in _ODD:
        floor = 0
        at = digits.find(pattern)
        while at >= 0:
            start = shape.rfind(b" ", floor, at) + 1 or floor
            end = at + len(pattern)
            number = _NUMBER.match(blank, start)
            if number is not None and number.end() >= end:
                end = number.end()
                if start not in looked and not _fraction(digits, at, pattern):
                    looked.add(start)
                    if len(looked) > MOST_SUSPECTS:
                        return "numbers"
                    if not _fits(number[0]):
                        return "number"
            floor = end
            at = digits.find(pattern, end)
    return None


def _fraction(digits: bytes, at: int, pattern: bytes) -> bool:
    """Whether a run of 20 digits is a fraction's (after the point): those never overflow."""
    return pattern == _ODD[0] and at > 0 and digits[at - 1] == ord(".")


def _fits(number: bytes) -> bool:
    if b"." in number or b"e" in number or b"E" in number:
        try:
            return float(number) not in (float("inf"), float("-inf"))
        except (ValueError, OverflowError):
            return False
    if len(number.lstrip(b"-")) > 20:
        return False
    try:
        return INT_MIN <= int(number) <= UINT_MAX
    except ValueError:  # not a number at all (1-2): the decoder says so
        return True


def _locate(body: bytes, max_depth: int, kind: str) -> Breach | None:
    """Walk ``body`` token by token to the first breach, keeping the path to it. None if the body stops
    being JSON before one: the decoder says what is wrong with it."""
    path: list[str | int] = []  # keys and indices down to the value being read
    containers: list[bytes] = []  # b"[" or b"{" per open level
    expect_key = False
    for n, (string, punct, number, _word) in enumerate(_tokens(body)):
        if n > _WALK_LIMIT:
            return Breach(kind, None)  # the breach is known, not where it is
        if punct in (b"[", b"{"):
            if len(containers) >= max_depth:
                return Breach("depth", _show(path))
            containers.append(punct)
            path.append(0 if punct == b"[" else "")
            expect_key = punct == b"{"
        elif punct in (b"]", b"}"):
            if containers:
                containers.pop()
                path.pop()
            expect_key = False
        elif punct == b",":
            if containers and containers[-1] == b"[":
                index = path[-1]
                path[-1] = index + 1 if isinstance(index, int) else 0
            else:
                expect_key = True
        elif punct == b":":
            expect_key = False
        elif string is not None and expect_key and path:
            path[-1] = _key(string)
        elif number is not None:
            if _NUMBER.fullmatch(number) is None:
                return None  # not JSON: the decoder says what is wrong
            if not _fits(number):
                return Breach("number", _show(path))
    return None


def _key(string: bytes) -> str:
    try:
        key = json.loads(string)
    except ValueError:
        key = string[1:-1].decode("utf-8", "replace")
    return str(key) or '""'


def _tokens(body: bytes) -> Iterator[tuple[bytes | None, bytes | None, bytes | None, bytes | None]]:
    at = 0
    while (match := _TOKEN.match(body, at)) is not None and match.end() > at:
        at = match.end()
        yield match.group(1), match.group(2), match.group(3), match.group(4)


def _show(path: list[str | int], parts: int = 8) -> str | None:
    out = ""
    for part in path[:parts]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return (out + "…" if len(path) > parts else out) or None
