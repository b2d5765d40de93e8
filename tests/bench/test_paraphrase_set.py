"""The paraphrase benchmark's data and scoring: what its figures in bench/README.md rest on."""

from __future__ import annotations

from collections import Counter

from bench.paraphrase import dataset, metrics


def test_the_set_is_sound_and_as_large_as_documented() -> None:
    users = dataset.load()
    assert dataset.check(users) == []
    assert len(users) >= 20
    assert sum(len(u.facts) for u in users) >= 200
    kinds = Counter(q.kind for u in users for q in u.questions)
    assert sum(kinds.values()) >= 400
    assert set(kinds) == set(dataset.KINDS)
    # Small and larger memories both: relevance works differently for each.
    assert any(len(u.facts) <= 30 for u in users)
    assert any(len(u.facts) > 30 for u in users)


def test_a_paraphrase_sharing_a_word_with_its_fact_is_caught() -> None:
    [user] = [u for u in dataset.load() if u.id == "u01"]
    fact = user.facts[0]
    leaky = dataset.Question(kind="paraphrase", text=f"Is it true that I {fact.text}?", gold=[fact.key])
    broken = dataset.User(id=user.id, persona=user.persona, facts=user.facts, questions=[leaky])
    [problem] = dataset.check([broken])
    assert "shares" in problem.what


def answer(kind: str, gold: tuple[str, ...], ranked: list[str]) -> metrics.Answer:
    return metrics.Answer("u", 0, kind, gold, ranked, [1.0] * len(ranked), 0.01, {})


def test_scores_count_each_gold_fact_and_empty_answers() -> None:
    answers = [
        answer("multi", ("a", "b"), ["a", "x", "y", "z", "w", "b"]),  # a at 1, b at 6
        answer("paraphrase", ("c",), []),
    ]
    score = metrics.score(answers)
    assert score.recall[1] == 25.0  # (1/2 + 0) / 2
    assert score.recall[5] == 25.0
    assert score.recall[10] == 50.0
    assert score.mrr == 0.5
    assert score.empty == 50.0
    assert metrics.score([answer("unanswerable", (), ["a"])]).questions == 0


def test_separability_is_the_chance_an_answerable_top_score_beats_an_unanswerable_one() -> None:
    assert metrics.auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert metrics.auc([0.1], [0.9]) == 0.0
    assert metrics.auc([0.5, 0.5], [0.5]) == 0.5  # ties count half
    assert metrics.auc([0.3, 0.7], [0.5]) == 0.5
    scored = [
        metrics.Answer("u", 0, "paraphrase", ("a",), ["a"], [0.9], 0.01, {}),
        metrics.Answer("u", 1, "unanswerable", (), ["a"], [0.4], 0.01, {}),
        metrics.Answer("u", 2, "unanswerable", (), [], [], 0.01, {}),
    ]
    none = metrics.unanswerable(scored, 12)
    assert none.separability == 1.0
    assert none.any_fact == 50.0
