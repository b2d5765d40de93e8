"""The JSON limits agree with a reference decoder on any document: nesting deeper than the limit and numbers
that no 64-bit integer or finite double holds are found, wherever they are, and text inside strings never
counts, whatever brackets, digits, quotes or backslashes it holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.json_limits import INT_MIN, MOST_SUSPECTS, UINT_MAX, check

TEXT = st.text(alphabet=st.sampled_from('ab [ ] { } " \\ 0 9 e E + - . : , \n é'), max_size=30)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN - 10, max_value=UINT_MAX + 10)
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def bad_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT_MIN <= value <= UINT_MAX
    if isinstance(value, list):
        return any(bad_number(v) for v in value)
    if isinstance(value, dict):
        return any(bad_number(v) for v in value.values())
    return False


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENTS, limit=st.integers(min_value=1, max_value=6), ascii_only=st.booleans())
def test_the_limits_agree_with_a_reference_decoder(document: Any, limit: int, ascii_only: bool) -> None:
    body = json.dumps({"doc": document}, ensure_ascii=ascii_only).encode()
    too_deep = depth({"doc": document}) > limit
    breach = check(body, limit)
    if too_deep:  # the first breach in the document is named, a number's if it comes first
        assert breach is not None
        assert breach.kind == "depth" or bad_number(document)
    elif bad_number(document):
        assert breach is not None
        assert breach.kind == "number"
        assert breach.path is not None
        assert breach.path.startswith("doc")
    else:
        assert breach is None


def test_a_double_that_overflows_is_out_of_range_and_a_tiny_one_is_not() -> None:
    assert check(b'{"t": [1, {"u": 1e99999}]}', 10) is not None
    assert check(b'{"t": -1.7976931348623157e309}', 10) is not None
    assert check(b'{"t": 1.7976931348623157e308, "s": 1e-99999, "big": 18446744073709551615}', 10) is None
    found = check(b'{"t": [1, {"u": 1e99999}]}', 10)
    assert found is not None
    assert (found.kind, found.path) == ("number", "t[1].u")


def test_a_breach_is_named_by_its_path() -> None:
    body = b'{"messages": [{"role": "user", "content": [{"type": "text", "x": [[[[[]]]]]}]}]}'
    found = check(body, 8)
    assert found is not None
    assert (found.kind, found.path) == ("depth", "messages[0].content[0].x[0][0][0]")
    assert check(body, 10) is None


def test_a_body_with_more_long_numbers_than_can_be_checked_quickly_is_refused() -> None:
    # Each 1e100 fits, but each needs a look; past MOST_SUSPECTS, checking would stall the event loop.
    assert check(b"[" + b"1e100," * MOST_SUSPECTS + b"1]", 128) is None
    found = check(b"[" + b"1e100," * (MOST_SUSPECTS + 1) + b"1]", 128)
    assert found is not None
    assert found.kind == "numbers"


def test_malformed_numbers_are_left_to_the_decoder() -> None:
    assert check(b"[1-2, 1e400]", 128) is None  # not JSON: the decoder answers invalid_json
    assert check(b'{"a": 1.2.3}', 128) is None


def test_numbers_that_fit_are_never_counted_against_the_cap() -> None:
    # Fractions of 20 digits or more (JavaScript writes 1.2345e-4 so) never overflow.
    assert check(b"[" + b"0.00012345678901234567," * (MOST_SUSPECTS + 1) + b"1]", 128) is None
    # A number that two patterns find is one number.
    assert check(b"[" + b"1.23456789012345678901e100," * (MOST_SUSPECTS // 2 + 1) + b"1]", 128) is None


def test_looking_at_suspects_is_linear_in_the_body() -> None:
    # Each suspect's start is found without scanning back over the ones before it: this took hours when
    # it did. 20,000 exponents of 3 digits are more than may be looked at.
    found = check(b"[" + b"1." * 2_000_000 + b"0e000-" * 20_000 + b"]", 128)
    assert found is not None
    assert found.kind == "numbers"


def test_a_bom_hides_nothing_and_paths_read_keys_as_text() -> None:
    found = check(b"\xef\xbb\xbf" + b"[" * 10 + b"]" * 10, 3)
    assert found is not None
    assert found.kind == "depth"
    found = check(b'{"a\\"b": [[[[1]]]], "": 1}', 3)
    assert found is not None
    assert found.path == 'a"b[0][0]'
