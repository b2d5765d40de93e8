"""The recall query's plan: which texts to embed for one message, and how much each one counts.

One embedding of a whole message finds what the message is mostly about, and misses the rest. So:

* **Focus.** A long message is cut to its last sentences, within :data:`FOCUS_WORDS` words: what the user
  asks is nearly always at the end ("…anyway, where did I say my sister lives?"), and the embedder reads
  only a text's first 256 tokens. It also bounds the cost: embedding time grows faster than the length
  (measured on this 2-core machine, int8 model: 10 tokens 2.4 ms, 60 tokens 11 ms, 250 tokens 71 ms).
* **Parts.** A focus of several sentences or clauses ("Where do I live now, and which languages am I
  learning?") is recalled per part, and as a whole when it is short, and recall fuses the rankings.
  Parts that are questions or requests count fully. Beside them a statement (chit-chat, context) is not
  searched alone: it cost a ranking of every fact for nothing (paraphrase set, answerable R@5 95.0 with
  it, 95.5 without; server time for a 2,000-character message p95 23 → 6 ms). A focus of statements only
  is searched per statement, each at half weight.
* **Conversation.** A short or referring message ("And what about her birthday?", "when was that?") names
  its subject only in an earlier turn, so the previous user turn joins the query: once prepended to the
  message (the subject and the question in one text), and once alone, at a lower weight; the turn before
  it lower still. A message that stands on its own is searched alone: an earlier topic would only add noise.

Everything here is string work: no model, no I/O, microseconds a message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Words of the latest message kept as its focus (about 65 tokens with the model's tokenizer).
FOCUS_WORDS = 48
#: A focus of several parts is also searched whole when it has at most this many words (past it, the
#: parts alone cover it at half the embedding time).
WHOLE_WORDS = 32
#: Words of an earlier turn kept when it joins the query.
CONTEXT_WORDS = 32
#: Most parts of one message searched apart (the latest ones win).
MAX_PARTS = 4
#: Fewer words than this make no part of their own ("Remind me", "and you").
MIN_PART_WORDS = 3
#: A message of at most this many words may not stand on its own.
SHORT_WORDS = 6
#: A message longer than this stands on its own even when it points back ("it", "that"): it names enough,
#: and its earlier turns would double the embedding time.
REFERRING_WORDS = 16
#: What an earlier turn counts: prepended to the message, alone, and the turn before it alone (measured on
#: the paraphrase set's follow-ups: leading with the message with its turn before, or matching its
#: wording, lost 14 points of R@1).
WEIGHT_WITH_CONTEXT = 0.8
WEIGHT_CONTEXT = 0.4
WEIGHT_OLDER_CONTEXT = 0.2
#: What a part that is neither a question nor a request counts.
WEIGHT_STATEMENT = 0.5

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
# ", and where …", ", how …", "; also what …", " and which …": a clause that asks something new.
_ASKS = (
    r"what|where|when|which|who|whom|whose|how|why|do|does|did|is|are|was|were|am|can|could|should|would|"
    r"will|have|has|had|any|tell|remind|suggest|recommend|give|list|also"
)
_CLAUSE = re.compile(
    rf"[,;]\s*(?:(?:and|or|but|plus)\s+)?(?=(?:{_ASKS})\b)|\s+(?:and|or)\s+(?=(?:{_ASKS})\b)", re.I
)
_WORD = re.compile(r"\w+", re.UNICODE)
_REQUEST = re.compile(
    rf"^\W*(?:(?:and|so|ok|okay|also|oh|hey|btw|but|anyway|well|now|right|actually)\W+)*(?:{_ASKS}|help|find|recall|share|name|check|"
    r"please|could|would|can|any)\b",
    re.I,
)
# Words that point back to something named earlier.
_REFERS = re.compile(
    r"\b(?:she|her|hers|herself|he|him|his|himself|they|them|their|theirs|it|its|that|those|these|this|"
    r"there|then|one|ones|same|other|again|else|too|also)\b|^\W*(?:and|what about|how about|or)\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    weight: float


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def _tail(text: str, limit: int) -> str:
    """The last sentences of ``text`` within ``limit`` words (the last ``limit`` words of one long one)."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]
    kept: list[str] = []
    count = 0
    for sentence in reversed(sentences):
        n = len(words(sentence))
        if kept and count + n > limit:
            break
        kept.append(sentence)
        count += n
    if count > limit:  # one sentence longer than the limit: its last words
        spans = list(_WORD.finditer(kept[0]))
        return kept[0][spans[-limit].start() :]
    return " ".join(reversed(kept))


def _parts(focus: str) -> list[str]:
    pieces: list[str] = []
    for sentence in _SENTENCE.split(focus):
        for clause in _CLAUSE.split(sentence or ""):
            clause = clause.strip(" ,;")
            if len(words(clause)) >= MIN_PART_WORDS:
                pieces.append(clause)
    return pieces[-MAX_PARTS:]


def asks(text: str) -> bool:
    """Whether ``text`` is a question or a request (rather than a statement)."""
    return "?" in text or _REQUEST.search(text) is not None


def refers_back(text: str) -> bool:
    """Whether ``text`` may need an earlier turn to be understood: short, or pointing back and not long."""
    count = len(words(text))
    return count <= SHORT_WORDS or (count <= REFERRING_WORDS and _REFERS.search(text) is not None)


def wording(latest: str) -> str:
    """What the lexical source matches for ``latest``: the questions and requests of its focus, or the
    whole focus when it asks nothing. Chit-chat beside a question names people and places the user is not
    asking about; matched, it ranks their facts and costs a trigram comparison per matching fact."""
    focus = _tail(" ".join(latest.split()), FOCUS_WORDS)
    asking = [p for p in _parts(focus) if asks(p)]
    return " ".join(asking) if asking else focus


def plan(latest: str, context: Sequence[str] = ()) -> list[Part]:
    """What to embed for ``latest`` (the user's message) given ``context`` (earlier user turns, oldest
    first), each with its weight; empty for a message with no words."""
    latest = " ".join(latest.split())
    if not words(latest):
        return []
    focus = _tail(latest, FOCUS_WORDS)
    pieces = _parts(focus)
    out = []
    if len(pieces) <= 1 or len(words(focus)) <= WHOLE_WORDS:
        out.append(Part(focus, 1.0))
    if len(pieces) > 1:
        asking = [p for p in pieces if asks(p)]
        # Beside a question, a statement is context the whole focus already carries (or chatter): searching
        # it alone costs an embedding and a ranking of every fact, and wins nothing measurable.
        out.extend(Part(p, 1.0) for p in asking)
        if not asking:
            out.extend(Part(p, WEIGHT_STATEMENT) for p in pieces)
    earlier = [" ".join(turn.split()) for turn in context if words(turn)]
    if earlier and refers_back(focus):
        previous = _tail(earlier[-1], CONTEXT_WORDS)
        out.append(Part(f"{previous} {focus}", WEIGHT_WITH_CONTEXT))
        out.append(Part(previous, WEIGHT_CONTEXT))
        if len(earlier) > 1:
            out.append(Part(_tail(earlier[-2], CONTEXT_WORDS), WEIGHT_OLDER_CONTEXT))
    unique: dict[str, Part] = {}
    for part in out:
        if part.text not in unique or unique[part.text].weight < part.weight:
            unique[part.text] = part
    return list(unique.values())
