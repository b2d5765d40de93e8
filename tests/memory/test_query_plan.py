"""The recall query's plan: what is embedded for a message, and how much each part counts."""

from __future__ import annotations

from memory import query_plan
from memory.query_plan import Part, plan


def texts(parts: list[Part]) -> list[str]:
    return [part.text for part in parts]


def test_a_plain_question_is_searched_as_it_is() -> None:
    assert plan("  What do I do   for a living? ") == [Part("What do I do for a living?", 1.0)]
    assert plan("?! ...") == []
    assert plan("") == []


def test_two_questions_in_one_message_are_searched_apart_and_whole() -> None:
    parts = plan("Where do I live now, and which languages am I learning?")
    assert texts(parts) == [
        "Where do I live now, and which languages am I learning?",
        "Where do I live now",
        "which languages am I learning?",
    ]
    assert [part.weight for part in parts] == [1.0, 1.0, 1.0]
    # "and" inside one question does not split it.
    assert texts(plan("Do I like cats and dogs?")) == ["Do I like cats and dogs?"]


def test_a_statement_beside_a_question_is_searched_only_within_the_whole() -> None:
    assert plan("I had a long day at work. What should I cook tonight?") == [
        Part("I had a long day at work. What should I cook tonight?", 1.0),
        Part("What should I cook tonight?", 1.0),
    ]
    # Statements alone: each counts half.
    parts = plan("I moved to Porto last spring. My sister stayed in Lyon.")
    assert Part("I moved to Porto last spring.", query_plan.WEIGHT_STATEMENT) in parts
    assert Part("My sister stayed in Lyon.", query_plan.WEIGHT_STATEMENT) in parts


def test_a_long_message_is_cut_to_its_last_sentences() -> None:
    chatter = "So yesterday I went to the market and looked at vegetables for a while. " * 30
    message = chatter + "Anyway, where does my sister live?"
    parts = plan(message)
    assert all(len(query_plan.words(p.text)) <= query_plan.FOCUS_WORDS for p in parts)
    assert any(p.text.endswith("where does my sister live?") for p in parts)
    # One sentence longer than the focus: its last words.
    run_on = " ".join(["word"] * 300) + " so which car do I drive"
    [whole] = plan(run_on)
    assert whole.text.endswith("so which car do I drive")
    assert len(query_plan.words(whole.text)) == query_plan.FOCUS_WORDS


def test_a_follow_up_is_searched_with_the_turn_before() -> None:
    context = ["Tell me about my cat", "My sister Mia is visiting next week"]
    parts = plan("And what about her birthday?", context)
    assert parts == [
        Part("And what about her birthday?", 1.0),
        Part(
            "My sister Mia is visiting next week And what about her birthday?", query_plan.WEIGHT_WITH_CONTEXT
        ),
        Part("My sister Mia is visiting next week", query_plan.WEIGHT_CONTEXT),
        Part("Tell me about my cat", query_plan.WEIGHT_OLDER_CONTEXT),
    ]


def test_a_message_that_stands_alone_ignores_the_conversation() -> None:
    context = ["My sister Mia is visiting next week"]
    message = "Which programming languages did I say I want to learn for my new job at the bank?"
    assert texts(plan(message, context)) == [message]
    assert texts(plan("When was it?", [])) == ["When was it?"]
    assert texts(plan("When was it?", ["  ", ""])) == ["When was it?"]


def test_the_wording_is_what_the_message_asks_not_its_chatter() -> None:
    chatter = "My flatmate Sami moved to Bergen last month. What's my sister's name?"
    assert query_plan.wording(chatter) == "What's my sister's name?"
    both = "Which race am I training for, and what do I put in my coffee?"
    assert query_plan.wording(both) == "Which race am I training for what do I put in my coffee?"
    # A message that asks nothing, or too short to split, is matched whole.
    assert query_plan.wording("I moved to Porto. My sister stayed in Lyon.") == (
        "I moved to Porto. My sister stayed in Lyon."
    )
    assert query_plan.wording("  Caroline  ") == "Caroline"
