"""How the fake providers cut a reply into stream deltas, alike in every dialect."""

from __future__ import annotations

import re


def words(text: str) -> list[str]:
    """``text`` as a stream's deltas: a word (with the spaces after it) each."""
    return re.findall(r"\S+\s*", text)
