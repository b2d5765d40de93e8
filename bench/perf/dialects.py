"""The three APIs side by side: what Mémoire adds to chat completions, the Responses API and Anthropic's
Messages API, memory off and recall on, in the same interleaved run.

Each API has its own ``direct`` mode (the same request to the fake upstream, which answers each dialect in
its own format) and its added latency is taken over it. The Responses modes let the upstream store the
response (the default), so every call also links its response id (:mod:`proxy.response_owners`).

Reported per concurrency: added p50 and p99 per API and mode, and each one's ratio to chat's; the target is
a ratio of at most 1.10. Beside the ratio over all rounds, the ratio is also taken within each round (all
of a group's modes ran once in it, in a shuffled order) and its median and range over the rounds given:
with unchanged code, the pooled p99 ratio moved 0.86–1.19 from run to run on a 2-CPU VM, and the range
within a run shows how far one run's figure can be trusted.

The figures compared are measured together: the memory-off modes are interleaved with the direct calls,
and the recall modes with them again, apart, so a recall slice at concurrency 16 (a heap to collect,
statistics to write) is never timed as part of the memory-off slice after it. Between two slices the proxy
is left :data:`SETTLE` seconds, longer than the response-link writer's interval, so the writes a slice
defers land in its own time or in the pause, never in another mode's.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.perf import corpus
from bench.perf.loadgen import Sample, Target
from bench.perf.overhead import PERF_USER, SYSTEM, interleaved
from bench.perf.stack import PerfStack
from bench.perf.stats import summary

DIALECTS = ("chat", "responses", "anthropic")
#: A dialect's added latency may be at most this many times chat's.
WITHIN = 1.10
#: Seconds between two slices (proxy.response_owners.WRITE_INTERVAL is 1 s).
SETTLE = 1.2


def _bodies(dialect: str, asked: list[str]) -> list[dict[str, object]]:
    if dialect == "responses":
        return [{"model": "fake-chat", "user": PERF_USER, "instructions": SYSTEM["content"], "input": q}
                for q in asked]  # fmt: skip
    if dialect == "anthropic":
        return [{"model": "claude-bench", "max_tokens": 256, "metadata": {"user_id": PERF_USER},
                 "system": SYSTEM["content"], "messages": [{"role": "user", "content": q}]}
                for q in asked]  # fmt: skip
    return [{"model": "fake-chat", "user": PERF_USER, "messages": [SYSTEM, {"role": "user", "content": q}]}
            for q in asked]  # fmt: skip


_PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/anthropic/v1/messages"}
_DIRECT = {"chat": "/chat/completions", "responses": "/responses", "anthropic": "/messages"}


def targets(stack: PerfStack, questions: int = 30_000, seed: int = 23) -> dict[str, Target]:
    """``<dialect>-direct``, ``<dialect>-off`` and ``<dialect>-recall`` for each dialect."""
    asked = [f"{q} (#{seed}-{n})" for n, q in enumerate(corpus.questions(questions, seed=seed))]
    modes: dict[str, Target] = {}
    for dialect in DIALECTS:
        bodies = _bodies(dialect, asked)
        if dialect == "anthropic":
            key = {"x-api-key": stack.key, "anthropic-version": "2023-06-01"}
            upstream = {"x-api-key": "sk-fake-upstream", "anthropic-version": "2023-06-01"}
        else:
            key = {"authorization": f"Bearer {stack.key}"}
            upstream = {"authorization": "Bearer sk-fake-upstream"}
        modes[f"{dialect}-direct"] = Target(f"{stack.upstream}{_DIRECT[dialect]}", bodies, upstream)
        modes[f"{dialect}-off"] = Target(
            f"{stack.memoire}{_PATHS[dialect]}",
            bodies,
            {**key, "x-memoire-recall": "off", "x-memoire-ingest": "off"},
        )
        modes[f"{dialect}-recall"] = Target(
            f"{stack.memoire}{_PATHS[dialect]}", bodies, {**key, "x-memoire-ingest": "off"}
        )
    return modes


async def run(
    stack: PerfStack, levels: list[int], *, rounds: int, duration: float
) -> tuple[dict[str, Any], bool]:
    """The report per level, and whether the stack had a CPU of its own (see ``PerfStack.pinned``)."""
    modes = targets(stack)
    runs: dict[str, dict[str, list[Sample]]] = {}
    split: dict[str, dict[str, list[list[Sample]]]] = {}
    with stack.pinned() as pinned:
        for mode in ("off", "recall"):
            group = {name: t for name, t in modes.items() if name.endswith(("-direct", f"-{mode}"))}
            per_round: dict[str, dict[str, list[list[Sample]]]] = {}
            measured = await interleaved(
                group, levels, rounds=rounds, duration=duration, seed=7, settle=SETTLE, by_round=per_round
            )
            for level, per_mode in measured.items():
                for name, samples in per_mode.items():
                    key = f"{name}@{mode}" if name.endswith("-direct") else name
                    runs.setdefault(level, {})[key] = samples
                    split.setdefault(level, {})[key] = per_round[level][name]
    return report(runs, split), pinned


def _added(per_mode: dict[str, list[Sample]]) -> dict[str, dict[str, float]]:
    """Added p50 and p99 of each API and mode over its own direct call."""
    stats = {
        name: summary([s.latency for s in samples if s.status == 200]) for name, samples in per_mode.items()
    }
    return {
        f"{dialect}-{mode}": {q: stats[f"{dialect}-{mode}"][q] - stats[f"{dialect}-direct@{mode}"][q]
                              for q in ("p50", "p99")}
        for dialect in DIALECTS for mode in ("off", "recall")
    }  # fmt: skip


def round_ratios(rounds: dict[str, list[list[Sample]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each non-chat mode's ratio to chat's, taken within each round: median, min and max over the rounds."""
    count = min(len(r) for r in rounds.values())
    added = [_added({name: r[i] for name, r in rounds.items()}) for i in range(count)]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dialect in DIALECTS[1:]:
        for mode in ("off", "recall"):
            name = f"{dialect}-{mode}"
            out[name] = {}
            for q in ("p50", "p99"):
                ratios = [a[name][q] / a[f"chat-{mode}"][q] for a in added if a[f"chat-{mode}"][q] > 0]
                if ratios:
                    out[name][q] = {"median": round(statistics.median(ratios), 3),
                                    "min": round(min(ratios), 3), "max": round(max(ratios), 3)}  # fmt: skip
    return out


def report(
    runs: dict[str, dict[str, list[Sample]]], split: dict[str, dict[str, list[list[Sample]]]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level, per_mode in runs.items():
        stats = {
            name: summary([s.latency for s in samples if s.status == 200])
            for name, samples in per_mode.items()
        }
        errors = {name: sum(s.status != 200 for s in samples) for name, samples in per_mode.items()}
        row: dict[str, Any] = {}
        for dialect in DIALECTS:
            for mode in ("off", "recall"):
                direct = stats[f"{dialect}-direct@{mode}"]
                name = f"{dialect}-{mode}"
                row[name] = {
                    "added": {q: round(stats[name][q] - direct[q], 3) for q in ("p50", "p99")},
                    "errors": errors[name] + errors[f"{dialect}-direct@{mode}"],
                    "direct": {q: direct[q] for q in ("p50", "p99")},
                }
        for dialect in DIALECTS[1:]:
            for mode in ("off", "recall"):
                ours, chat = row[f"{dialect}-{mode}"]["added"], row[f"chat-{mode}"]["added"]
                row[f"{dialect}-{mode}"]["ratio"] = {
                    q: round(ours[q] / chat[q], 3) if chat[q] > 0 else None for q in ("p50", "p99")
                }
        if split is not None and level in split:
            for name, spread in round_ratios(split[level]).items():
                row[name]["ratio_by_round"] = spread
        out[level] = row
    return out


def within(row: dict[str, Any]) -> bool:
    """Whether every non-chat mode's added p50 and p99 are within :data:`WITHIN` of chat's (or below)."""
    return all(
        entry["errors"] == 0 and all(r is not None and r <= WITHIN for r in entry["ratio"].values())
        for name, entry in row.items()
        if not name.startswith("chat-")
    )


def markdown(results: dict[str, Any], pinned: bool) -> list[str]:
    stack = "Mémoire and its database on one CPU, the load and the fake upstream on the rest"
    where = stack if pinned else "unpinned"
    lines = [
        "",
        "## The three APIs (ms added over each API's own direct call; non-streamed, interleaved)",
        "",
        f"Memory-off and recall modes interleaved apart, each with the direct calls; {where}.",
        "",
        "| concurrency | API | mode | +p50 | +p99 | ratio to chat p50 / p99 "
        "| within a round: median (range) p50 / p99 | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, row in results.items():
        for name, entry in row.items():
            dialect, mode = name.rsplit("-", 1)
            ratio = entry.get("ratio")
            shown = f"{_r(ratio['p50'])} / {_r(ratio['p99'])}" if ratio else "1"
            spread = entry.get("ratio_by_round")
            rounds = " / ".join(_spread(spread.get(q)) for q in ("p50", "p99")) if spread else "–"
            lines.append(
                f"| {level} | {dialect} | {mode} | {entry['added']['p50']:.2f} | {entry['added']['p99']:.2f} "
                f"| {shown} | {rounds} | {entry['errors']} |"
            )
    return lines


def _spread(value: dict[str, float] | None) -> str:
    return "–" if value is None else f"{value['median']:.2f} ({value['min']:.2f}–{value['max']:.2f})"


def _r(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
