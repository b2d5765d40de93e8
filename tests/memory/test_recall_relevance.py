"""Recall finds what the user means: paraphrases, several questions at once, follow-ups, long messages.

Against the real local embedder (all-MiniLM-L6-v2), through ``POST /v1/recall``.
"""

from __future__ import annotations

import pytest

from tests.support.facts import Api, texts
from tests.support.life import LIFE

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def life(api: Api) -> Api:
    for start in range(0, len(LIFE), 20):
        api.facts("rita", *({"text": text} for text in LIFE[start : start + 20]))
    return api


def test_a_paraphrase_in_a_small_memory_is_found(api: Api) -> None:
    api.facts(
        "nina",
        {"text": "Is a nurse at St. Mary's"},
        {"text": "Has a dog named Rex"},
        {"text": "Lives in Leeds"},
        {"text": "Enjoys climbing on weekends"},
    )
    # No word in common with the fact, and a cosine well under any fixed floor that would keep noise out.
    hits = api.recall("nina", "What do I do for a living?")
    # A small memory is offered whole, ranked: the caller's limit is the cut.
    assert sorted(texts(hits)) == [
        "Enjoys climbing on weekends",
        "Has a dog named Rex",
        "Is a nurse at St. Mary's",
        "Lives in Leeds",
    ]
    assert len(api.recall("nina", "What do I do for a living?", limit=2)) == 2


def test_two_questions_in_one_message_find_both_facts(life: Api) -> None:
    hits = texts(life.recall("rita", "Where do I live now, and which languages am I learning?", limit=5))
    assert "Lives in Porto since last spring" in hits
    assert "Is learning Japanese and Spanish" in hits


def test_a_follow_up_is_understood_through_the_conversation(life: Api) -> None:
    question = "What does she do?"
    assert texts(life.recall("rita", question, limit=1)) == ["Mother is a retired teacher"]
    context = ["My best friend Joana is coming over tonight"]
    assert texts(life.recall("rita", question, context=context, limit=1)) == [
        "Best friend is Joana, a pharmacist"
    ]
    # Context is only for a message that refers back: one that stands alone is searched alone.
    alone = "Which musical instrument do I play in my orchestra on weekends?"
    assert texts(life.recall("rita", alone, context=context)) == texts(life.recall("rita", alone))
    assert texts(life.recall("rita", alone, limit=1)) == ["Plays the cello in a community orchestra"]


def test_a_long_message_is_searched_by_its_end(life: Api) -> None:
    chatter = "Today was busy, I walked around the old town and stopped for a pastry with a friend. " * 22
    message = chatter + "Remind me, what instrument do I play?"
    assert len(message) > 1900
    # The embedder reads a text's first 256 tokens: the whole message would be chatter to it.
    assert "Plays the cello in a community orchestra" in texts(life.recall("rita", message, limit=3))


def test_a_larger_memory_is_not_offered_whole(life: Api) -> None:
    # Only the facts that stand out of the user's own for this query: far fewer than the limit.
    hits = life.recall("rita", "Which instrument do I play?", limit=len(LIFE))
    assert texts(hits)[0] == "Plays the cello in a community orchestra"
    assert len(hits) < len(LIFE) // 3


def test_min_score_is_a_cut_on_the_fused_score(life: Api) -> None:
    hits = life.recall("rita", "Which instrument do I play?", limit=10)
    scores = [fact["score"] for fact in hits]
    assert scores == sorted(scores, reverse=True)
    cut = (scores[0] + scores[1]) / 2
    assert texts(life.recall("rita", "Which instrument do I play?", min_score=cut)) == texts(hits[:1])


def test_the_context_field_is_validated(api: Api) -> None:
    response = api.client.post("/v1/recall", json={"user_id": "x", "query": "hi", "context": "not a list"})
    assert response.status_code == 400
    assert "context" in response.json()["error"]["message"]
