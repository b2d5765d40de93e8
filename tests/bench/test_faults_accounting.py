"""The fault suite's accounting (bench/faults): what its verdict and the figures in bench/README.md rest on.

The suite itself runs for minutes against a whole stack and is run by hand; here its counting is held to
made-up runs whose answers are known.
"""

from __future__ import annotations

from typing import Any

from bench.faults.__main__ import report, within
from bench.faults.traffic import Call

#: Two faults, 20 s each: the worker killed at 10 s, PostgreSQL killed at 30 s and back at 36 s.
WINDOWS = {
    "worker": {"start": 0.0, "before": 5.0, "killed": 10.0, "gone": 10.0, "back": 10.0,
               "during_end": 15.0, "end": 20.0},
    "postgres": {"start": 20.0, "before": 25.0, "killed": 30.0, "gone": 30.0, "back": 36.0,
                 "during_end": 36.0, "end": 41.0},
}  # fmt: skip


def _run(calls: list[Call], stored: dict[str, list[str]], llm: dict[str, list[float]]) -> dict[str, Any]:
    return {"drained": True, **report(WINDOWS, calls, stored, llm)}


def _ok(marker: str, at: float) -> Call:
    return Call(marker, at, at + 0.1, None)


def test_a_clean_run_meets_every_target() -> None:
    calls = [_ok("a", 1.0), _ok("b", 12.0), _ok("c", 31.0)]
    stored = {"a": ["extracted"], "b": ["extracted"], "c": ["extracted"]}
    results = _run(calls, stored, {"a": [2.0], "b": [13.0], "c": [37.0]})
    assert within(results)
    assert results["faults"]["worker"]["answered"] == 2  # the warm-up's call counts with the first fault
    assert results["faults"]["postgres"]["phases"]["during"]["calls"] == 1


def test_a_lost_exchange_one_stored_twice_or_one_left_pending_fails_the_run() -> None:
    calls = [_ok("a", 1.0), _ok("b", 12.0), _ok("c", 31.0)]
    llm = {"a": [2.0], "b": [13.0], "c": [37.0]}
    lost = _run(calls, {"a": ["extracted"], "b": ["extracted"]}, llm)
    assert lost["faults"]["postgres"]["lost"] == 1
    assert not within(lost)
    twice = _run(calls, {"a": ["extracted"], "b": ["extracted", "extracted"], "c": ["extracted"]}, llm)
    assert twice["faults"]["worker"]["stored_twice"] == 1
    assert not within(twice)
    pending = _run(calls, {"a": ["extracted"], "b": ["pending"], "c": ["extracted"]}, llm)
    assert not within(pending)


def test_only_an_api_kill_excuses_a_failed_call_and_only_one_it_caught_in_flight() -> None:
    calls = [_ok("a", 1.0), Call("x", 9.9, 10.2, "ReadError"), _ok("c", 31.0)]
    stored = {"a": ["extracted"], "c": ["extracted"]}
    results = _run(calls, stored, {"a": [2.0], "c": [37.0]})
    assert results["faults"]["worker"]["failed_new"] == 1  # a worker kill must fail no call at all
    assert not within(results)
    api = {"api": WINDOWS["worker"], "postgres": WINDOWS["postgres"]}
    as_api = {"drained": True, **report(api, calls, stored, {"a": [2.0], "c": [37.0]})}
    assert as_api["faults"]["api"]["failed_in_flight"] == 1
    assert within(as_api)
    # A call sent after the process was gone, or one that had failed before the kill, is no excuse.
    for call in (Call("y", 10.5, 10.6, "ConnectError"), Call("z", 8.0, 8.5, "500 internal error")):
        later = {"drained": True, **report(api, [*calls, call], stored, {"a": [2.0], "c": [37.0]})}
        assert later["faults"]["api"]["failed_new"] == 1


def test_an_llm_call_repeated_counts_against_the_run_unless_the_fault_took_its_answer() -> None:
    calls = [_ok("a", 1.0), _ok("b", 12.0)]
    stored = {"a": ["extracted"], "b": ["extracted"]}
    in_flight_at_the_kill = _run(calls, stored, {"a": [9.7, 25.0], "b": [13.0]})
    assert in_flight_at_the_kill["faults"]["worker"]["llm_repeats_lost_answer"] == 1
    assert within(in_flight_at_the_kill)
    while_the_database_was_down = _run(calls, stored, {"a": [2.0], "b": [33.0, 40.0]})
    assert while_the_database_was_down["faults"]["postgres"]["llm_repeats_lost_answer"] == 1
    assert within(while_the_database_was_down)
    unexplained = _run(calls, stored, {"a": [2.0], "b": [13.0, 22.0]})
    assert unexplained["faults"]["worker"]["llm_repeats_unexplained"] == 1
    assert not within(unexplained)
    before_any_fault = _run(calls, stored, {"a": [2.0, 3.0], "b": [13.0]})
    assert before_any_fault["llm_repeats_before_any_fault"] == 1
    assert not within(before_any_fault)
