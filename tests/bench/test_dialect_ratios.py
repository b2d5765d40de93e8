"""The three APIs' ratios to chat (bench/perf/dialects): taken over all rounds, and within each round."""

from __future__ import annotations

from bench.perf import dialects
from bench.perf.loadgen import Sample


def _samples(ms: float, n: int = 200) -> list[Sample]:
    return [Sample(latency=(ms + 0.001 * i) / 1000, status=200) for i in range(n)]


def _round(chat: float, others: float) -> dict[str, list[Sample]]:
    """One round: every direct call takes 1 ms; chat adds ``chat`` ms, the other APIs ``others``."""
    out: dict[str, list[Sample]] = {}
    for mode in ("off", "recall"):
        for dialect in dialects.DIALECTS:
            out[f"{dialect}-direct@{mode}"] = _samples(1.0)
            out[f"{dialect}-{mode}"] = _samples(1.0 + (chat if dialect == "chat" else others))
    return out


def test_a_round_disturbed_once_moves_the_pooled_ratio_but_not_the_median_within_rounds() -> None:
    rounds = [_round(2.0, 2.0), _round(2.0, 2.0), _round(2.0, 2.0), _round(2.0, 6.0)]  # the last: a stall
    pooled = {name: [s for r in rounds for s in r[name]] for name in rounds[0]}
    split = {name: [r[name] for r in rounds] for name in rounds[0]}
    row = dialects.report({"16": pooled}, {"16": split})["16"]
    entry = row["responses-off"]
    assert entry["ratio"]["p99"] > 2.5  # the pooled p99 is the disturbed round's
    assert entry["ratio_by_round"]["p99"]["median"] == 1.0
    assert entry["ratio_by_round"]["p99"]["max"] == 3.0  # ... and the range shows it
    assert not dialects.within(row)
    lines = "\n".join(dialects.markdown({"16": row}, pinned=True))
    assert "1.00 (1.00–3.00)" in lines
