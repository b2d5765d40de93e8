"""What a proxy adds to a call: the same requests direct to the fake upstream and through each proxy,
interleaved in rounds (each round runs the modes in a new random order), at each concurrency.

Modes:
- ``direct``: to the fake upstream;
- ``memoire-off``: through Mémoire with ``X-Memoire-Recall: off`` and ``X-Memoire-Ingest: off`` (the relay,
  with auth and the rate limit);
- ``memoire-recall``: through Mémoire, recalling for a user with 1,000 facts, each request a question not
  asked before (the query is embedded every time), ingest off (ingest is measured on its own);
- ``litellm``: through the LiteLLM proxy, with its master key.

Reported per mode and concurrency: latency p50/p95/p99 and what it adds to ``direct`` (each percentile's
difference); for streams, the time to the first event and the gap distortion; the highest open-loop rate
whose p99 stays within twice the p99 at the lowest rate.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from bench.locomo.metrics import percentile
from bench.perf import corpus
from bench.perf.loadgen import Sample, Target, closed_loop, open_loop
from bench.perf.stack import LITELLM_KEY, PerfStack
from bench.perf.stats import summary

PERF_USER = "perf-user"
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}


def targets(stack: PerfStack, *, stream: bool, questions: int, seed: int | None = None) -> dict[str, Target]:
    """The modes' requests, each asking one of ``questions`` distinct questions in turn."""
    picked = seed if seed is not None else 5 if stream else 3
    asked = [f"{q} (#{picked}-{n})" for n, q in enumerate(corpus.questions(questions, seed=picked))]

    def bodies(user: str) -> list[dict[str, object]]:
        return [
            {"model": "fake-chat", "user": user, "stream": stream,
             "messages": [SYSTEM, {"role": "user", "content": q}]}
            for q in asked
        ]  # fmt: skip

    bearer = {"authorization": f"Bearer {stack.key}"}
    modes = {
        "direct": Target(
            f"{stack.upstream}/chat/completions", bodies(PERF_USER),
            {"authorization": "Bearer sk-fake-upstream"},
        ),
        "memoire-off": Target(
            f"{stack.memoire}/v1/chat/completions", bodies(PERF_USER),
            {**bearer, "x-memoire-recall": "off", "x-memoire-ingest": "off"},
        ),
        "memoire-recall": Target(
            f"{stack.memoire}/v1/chat/completions", bodies(PERF_USER), {**bearer, "x-memoire-ingest": "off"}
        ),
    }  # fmt: skip
    if stack.litellm:
        modes["litellm"] = Target(
            f"{stack.litellm}/v1/chat/completions",
            bodies(PERF_USER),
            {"authorization": f"Bearer {LITELLM_KEY}"},
        )
    return modes


def _latency(samples: list[Sample]) -> dict[str, Any]:
    """Percentiles of the answered requests, and how many failed (counted apart, never as latencies)."""
    ok = [s.latency for s in samples if s.status == 200]
    return {**summary(ok), "errors": len(samples) - len(ok)}


def _added(mode: dict[str, Any], direct: dict[str, Any]) -> dict[str, float]:
    return {q: round(mode[q] - direct[q], 3) for q in ("p50", "p95", "p99")}


async def interleaved(
    modes: dict[str, Target],
    levels: list[int],
    *,
    rounds: int,
    duration: float,
    seed: int = 1,
    settle: float = 0.0,
    by_round: dict[str, dict[str, list[list[Sample]]]] | None = None,
) -> dict[str, dict[str, list[Sample]]]:
    """Samples per concurrency level and mode; every mode gets the same time (``rounds × duration``).
    ``settle`` seconds pass between two modes, so work a mode leaves behind (writes the proxy defers) is not
    timed as the next one's. ``by_round`` is filled with each round's samples apart (per level, per mode,
    a list a round), for comparisons made within a round."""
    rng = random.Random(seed)
    out: dict[str, dict[str, list[Sample]]] = {}
    for level in levels:
        for target in modes.values():  # warm-up: connections, caches, lazy imports
            await closed_loop(target, level, duration=0.5)
        per_mode: dict[str, list[Sample]] = {name: [] for name in modes}
        for _ in range(rounds):
            order = list(modes)
            rng.shuffle(order)
            for name in order:
                samples = await closed_loop(modes[name], level, duration=duration)
                per_mode[name] += samples
                if by_round is not None:
                    by_round.setdefault(str(level), {}).setdefault(name, []).append(samples)
                if settle:
                    await asyncio.sleep(settle)
        out[str(level)] = per_mode
    return out


def latency_report(runs: dict[str, dict[str, list[Sample]]], seconds: float) -> dict[str, Any]:
    """``seconds``: the time each mode ran at each level (rounds × duration)."""
    report: dict[str, Any] = {}
    for level, per_mode in runs.items():
        direct = _latency(per_mode["direct"])
        report[level] = {}
        for name, samples in per_mode.items():
            stats = _latency(samples)
            stats["throughput_rps"] = round(sum(s.status == 200 for s in samples) / seconds, 1)
            if name != "direct":
                stats["added"] = _added(stats, direct)
            report[level][name] = stats
    return report


def stream_report(runs: dict[str, dict[str, list[Sample]]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for level, per_mode in runs.items():
        first_direct = summary(
            [s.first_event for s in per_mode["direct"] if s.first_event is not None and s.status == 200]
        )
        report[level] = {}
        for name, samples in per_mode.items():
            first = summary([s.first_event for s in samples if s.first_event is not None and s.status == 200])
            gaps = [g for s in samples if s.status == 200 for g in s.distortion]
            entry: dict[str, Any] = {
                "streams": len(samples),
                "errors": sum(s.status != 200 for s in samples),
                "first_event": first,
                "gap_distortion": summary(gaps),
            }
            if name != "direct":
                entry["first_event_added"] = _added(first, first_direct)
            report[level][name] = entry
    return report


async def max_rate(
    target: Target, *, step_seconds: float, start: float = 50, factor: float = 1.5, ceiling: float = 20_000
) -> dict[str, Any]:
    """Open-loop rates from ``start``, ×``factor`` each step, until the p99 doubles from the first step's
    (taken as at least 1 ms: below that, timer jitter alone would double it), the answers fall behind
    (achieved < 90 % of offered), or a request fails.

    A warm-up step at ``start`` opens the connections first and is not counted. *Sustained* means on two
    tries: a step that fails is run once more, and only a second failure ends the ramp (one pause of the
    process, a garbage collection, say, can double a 3-second step's p99 by itself).
    """
    await open_loop(target, start, duration=min(step_seconds, 1.0))
    steps = []
    baseline: float | None = None
    best = 0.0
    rate = start
    while rate <= ceiling:
        for attempt in (1, 2):
            samples, achieved = await open_loop(target, rate, duration=step_seconds)
            p99 = percentile([s.latency * 1000 for s in samples], 99)
            errors = sum(s.status != 200 for s in samples)
            steps.append(
                {"offered": round(rate), "achieved": round(achieved, 1), "p99": round(p99, 3),
                 "errors": errors, "try": attempt}
            )  # fmt: skip
            if baseline is None:
                baseline = max(p99, 1.0)
            held = not errors and achieved >= 0.9 * rate and p99 <= 2 * baseline
            if held:
                break
        if not held:
            break
        best = rate
        rate *= factor
    return {"max_rps": round(best), "baseline_p99": round(baseline or 0, 3), "steps": steps}


async def soak(stack: PerfStack, target: Target, *, rate: float, seconds: float) -> dict[str, Any]:
    """Streams at ``rate`` per second for ``seconds``, the proxy's RSS read every 5 s."""
    rss: list[tuple[float, int]] = []
    errors = 0
    latencies: list[float] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        samples, _ = await open_loop(target, rate, duration=min(5.0, seconds - elapsed), connections=64)
        errors += sum(s.status != 200 for s in samples)
        latencies += [s.latency for s in samples if s.status == 200]
        rss.append((round(time.monotonic() - started, 1), stack.rss("memoire")))
    half = [r for t, r in rss if t >= seconds / 2]
    return {
        "rate": rate,
        "seconds": seconds,
        "streams": len(latencies) + errors,
        "errors": errors,
        "latency": summary(latencies),
        "rss_mb": [(t, round(r / 2**20, 1)) for t, r in rss],
        "rss_start_mb": round(rss[0][1] / 2**20, 1) if rss else None,
        "rss_end_mb": round(rss[-1][1] / 2**20, 1) if rss else None,
        "rss_second_half_spread_mb": round((max(half) - min(half)) / 2**20, 1) if half else None,
        "rss_second_half_median_mb": round(statistics.median(half) / 2**20, 1) if half else None,
    }
