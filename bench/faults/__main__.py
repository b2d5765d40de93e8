"""``python -m bench.faults``: kill each part of a running stack under traffic, and count what it cost.

Starts the suite's stack (:mod:`bench.faults.stack`: PostgreSQL, Redis, the fake provider, ``memoire up``
with two API processes and a worker), keeps lanes of distinct chat calls going with memory on
(:mod:`bench.faults.traffic`), and injects each fault in turn:

- ``api``: SIGKILL one API process (uvicorn starts another);
- ``worker``: SIGKILL the worker (``memoire up`` starts another);
- ``redis``: SIGKILL redis-server, start it again ``--down`` seconds later;
- ``postgres``: SIGKILL PostgreSQL's postmaster, start it again ``--down`` seconds later.

Each fault has three phases of ``--phase`` seconds: before, during (from the kill, the service down) and
after (from its return). Per phase: calls, failed calls, and added p50/p99. Once the traffic stops, the
suite waits for every answered call's exchange to be stored and extracted, then reports, per fault (each
call counts for the fault whose phases it started in): exchanges answered, stored once, stored twice, lost,
and extraction LLM calls per exchange. Targets: 0 lost, 0 stored twice, no call fails but those in flight on
an API process killed, and an exchange goes to the LLM again only when the answer to its call before was
lost with the fault (the call was in flight when the worker was killed, or PostgreSQL was down to keep it).
A repeated call counts for the fault it is explained by, else for the fault injected last before it.

Writes ``results.json`` and ``results.md`` to ``bench/results/faults-<UTC time>/``; ``--server-path``
serves another checkout's ``memoire`` (a before/after comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.faults.provider import MARKER
from bench.faults.stack import FaultStack, gone
from bench.faults.traffic import Call, Traffic
from bench.perf.stats import summary

FAULTS = ("api", "worker", "redis", "postgres")
#: Seconds after an API process is gone during which a call may still fail: one sent on a kept-alive
#: connection to it before the client's end read that connection's close.
CLOSING = 0.05
#: Seconds an extraction LLM call may be in flight before its answer is kept (the fake answers at once).
IN_FLIGHT = 1.0
#: Seconds the suite waits for the exchanges to be stored and extracted once the traffic stops (a claim
#: a killed process held lapses after ``spool.claim_seconds``, 30 s; a killed worker's job is retried after
#: its timeout).
DRAIN = 420.0


async def _inject(stack: FaultStack, fault: str, down: float) -> tuple[float, float, float]:
    """Inject ``fault``; returns when the kill was sent, when the part was gone, and when it was back (or
    started again)."""
    killed = time.monotonic()
    if fault in ("api", "worker"):
        pids = stack.api_processes() if fault == "api" else stack.worker_processes()
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        while not gone(victim):  # noqa: ASYNC110 (polls /proc)
            await asyncio.sleep(0.001)
        return killed, time.monotonic(), time.monotonic()
    if fault == "redis":
        kill, start = stack.kill_redis, stack.start_redis
    else:
        kill, start = stack.kill_postgres, stack.start_postgres
    await asyncio.to_thread(kill)
    gone_at = time.monotonic()
    await asyncio.sleep(down)
    await asyncio.to_thread(start)
    return killed, gone_at, time.monotonic()


async def drive(
    stack: FaultStack, faults: list[str], lanes: int, phase: float, down: float
) -> dict[str, Any]:
    traffic = Traffic(stack.url, stack.key, lanes)
    stop = asyncio.Event()
    running = asyncio.create_task(traffic.run(stop))
    windows: dict[str, dict[str, float]] = {}
    start = time.monotonic()  # the first fault's calls include the warm-up's
    try:
        await asyncio.sleep(phase)  # warm: connections, the embedder, the first users
        for fault in faults:
            before = time.monotonic()
            await asyncio.sleep(phase)
            killed, gone_at, back = await _inject(stack, fault, down)
            during_end = max(back, gone_at + phase)
            await asyncio.sleep(during_end - time.monotonic() + phase)
            windows[fault] = {"start": start, "before": before, "killed": killed, "gone": gone_at,
                              "back": back, "during_end": during_end, "end": time.monotonic()}  # fmt: skip
            start = windows[fault]["end"]
            print(
                f"{fault}: gone after {gone_at - start:.1f} s, back {back - gone_at:.1f} s later", flush=True
            )
    finally:
        stop.set()
        await running
    return {"windows": windows, "calls": traffic.calls}


async def _stored(dsn: str) -> dict[str, list[str]]:
    """Each marker's stored exchanges' statuses."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT messages::text AS m, status FROM chat_logs")
    finally:
        await conn.close()
    found: dict[str, list[str]] = {}
    for row in rows:
        for marker in {m.decode() for m in MARKER.findall(row["m"].encode())}:
            found.setdefault(marker, []).append(row["status"])
    return found


async def drain(stack: FaultStack, answered: set[str]) -> tuple[dict[str, list[str]], float]:
    """Wait until every answered exchange is stored and none is pending; what is stored, and the seconds it
    took."""
    started = time.monotonic()
    while True:
        stored = await _stored(stack.dsn)
        pending = [m for m in answered if m not in stored or "pending" in stored[m]]
        if not pending or time.monotonic() - started > DRAIN:
            return stored, time.monotonic() - started
        await asyncio.sleep(1.0)


def _phase(calls: list[Call], since: float, until: float) -> dict[str, Any]:
    inside = [c for c in calls if since <= c.started < until]
    latency = summary([c.ended - c.started for c in inside if c.failure is None])
    return {
        "calls": len(inside),
        "failed": sum(c.failure is not None for c in inside),
        "p50_ms": latency["p50"] if inside else None,
        "p99_ms": latency["p99"] if inside else None,
    }


def report(
    windows: dict[str, dict[str, float]],
    calls: list[Call],
    stored: dict[str, list[str]],
    llm_calls: dict[str, list[float]],
) -> dict[str, Any]:
    llm = {marker: len(times) for marker, times in llm_calls.items()}
    repeats = [_repeat(windows, sorted(times)[i - 1], t) for times in llm_calls.values()
               for i, t in enumerate(sorted(times)) if i]  # fmt: skip
    out: dict[str, Any] = {}
    for fault, w in windows.items():
        mine = [c for c in calls if w["start"] <= c.started < w["end"]]
        answered = [c.marker for c in mine if c.failure is None]
        failed = [c for c in mine if c.failure is not None]
        # Only an API kill may fail calls: those it caught in flight (sent before the process was seen gone,
        # and still unanswered when it was killed).
        new_failed = [
            c for c in failed
            if not (fault == "api" and c.started <= w["gone"] + CLOSING and c.ended >= w["killed"])
        ]  # fmt: skip
        per_llm = Counter(llm.get(m, 0) for m in answered)
        out[fault] = {
            "phases": {
                "before": _phase(calls, w["before"], w["gone"]),
                "during": _phase(calls, w["gone"], w["during_end"]),
                "after": _phase(calls, w["during_end"], w["end"]),
            },
            "down_s": round(w["back"] - w["gone"], 2),
            "calls": len(mine),
            "failed": len(failed),
            "failed_in_flight": len(failed) - len(new_failed),
            "failed_new": len(new_failed),
            "failures": sorted({c.failure or "" for c in failed})[:5],
            "answered": len(answered),
            "stored_once": sum(len(stored.get(m, [])) == 1 for m in answered),
            "stored_twice": sum(len(stored.get(m, [])) > 1 for m in answered),
            "lost": sum(m not in stored for m in answered),
            "extracted": sum("extracted" in stored.get(m, []) for m in answered),
            "llm_calls": {str(k): v for k, v in sorted(per_llm.items())},
            "llm_calls_max": max(per_llm, default=0),
            "llm_more_than_once": sorted(m for m in answered if llm.get(m, 0) > 1)[:5],
            "llm_repeats_lost_answer": sum(r == (fault, True) for r in repeats),
            "llm_repeats_unexplained": sum(r == (fault, False) for r in repeats),
        }
    return {"faults": out, "llm_repeats_before_any_fault": sum(r == (None, False) for r in repeats)}


def _repeat(windows: dict[str, dict[str, float]], previous: float, at: float) -> tuple[str | None, bool]:
    """The fault a repeated LLM call at ``at`` goes with, and whether the answer to the call before it
    (at ``previous``) was lost before it could be stored: that call was in flight when the worker was
    killed, or when PostgreSQL went down or while it was. Otherwise, the fault injected last before it."""
    for fault, w in windows.items():
        lost_until = w["gone"] if fault == "worker" else w["back"] if fault == "postgres" else None
        if lost_until is not None and w["gone"] - IN_FLIGHT <= previous <= lost_until:
            return fault, True
    before = [(w["gone"], fault) for fault, w in windows.items() if w["gone"] <= at]
    return (max(before)[1] if before else None), False


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        "# Fault suite",
        "",
        f"{results['machine']}; {results['lanes']} lanes of distinct chat calls, memory on; phases of "
        f"{results['phase']} s, PostgreSQL and Redis down {results['down']} s. "
        + (
            f"Drained in {results['drain_s']} s."
            if results["drained"]
            else f"**Not drained** after {results['drain_s']} s: an exchange was lost or left pending."
        )
        + f" LLM calls repeated before any fault: {results['llm_repeats_before_any_fault']}.",
        "",
        "| fault | phase | calls | failed | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for fault, r in results["faults"].items():
        for name, p in r["phases"].items():
            lines.append(
                f"| {fault} | {name} | {p['calls']} | {p['failed']} | {p['p50_ms']} | {p['p99_ms']} |"
            )
    lines += [
        "",
        "| fault | calls | failed (in flight / new) | answered | stored once | stored twice | lost | "
        "extracted | LLM calls per exchange (calls: exchanges) | "
        "LLM calls repeated: answer lost in the fault / other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fault, r in results["faults"].items():
        llm = ", ".join(f"{k}: {v}" for k, v in r["llm_calls"].items())
        lines.append(
            f"| {fault} | {r['calls']} | {r['failed']} ({r['failed_in_flight']} / {r['failed_new']}) | "
            f"{r['answered']} | {r['stored_once']} | {r['stored_twice']} | {r['lost']} | "
            f"{r['extracted']} | {llm} | "
            f"{r['llm_repeats_lost_answer']} / {r['llm_repeats_unexplained']} |"
        )
    failures = {f: r["failures"] for f, r in results["faults"].items() if r["failures"]}
    if failures:
        lines += ["", "Failures seen: " + json.dumps(failures)]
    return lines


def within(results: dict[str, Any]) -> bool:
    """Every exchange stored once and extracted, no call failed but those an API kill caught in flight,
    and an exchange sent to the LLM again only when the answer to its call before was lost with the
    fault."""
    return (
        results["drained"]
        and results["llm_repeats_before_any_fault"] == 0
        and all(
            (r["lost"], r["stored_twice"], r["failed_new"], r["llm_repeats_unexplained"]) == (0, 0, 0, 0)
            and r["extracted"] == r["answered"]
            for r in results["faults"].values()
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"in turn (default {','.join(FAULTS)})")
    parser.add_argument("--lanes", type=int, default=8, help="calls in flight (default 8)")
    parser.add_argument("--phase", type=float, default=5.0, help="seconds per phase (default 5)")
    parser.add_argument("--down", type=float, default=5.0, help="seconds PostgreSQL and Redis stay down")
    parser.add_argument("--server-path", type=Path, help="serve this checkout's memoire (default: this one)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs, spool)")
    args = parser.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    out = args.out or Path("bench/results") / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    stack = FaultStack(args.server_path).start()
    try:
        run = asyncio.run(drive(stack, faults, args.lanes, args.phase, args.down))
        calls: list[Call] = run["calls"]
        answered = {c.marker for c in calls if c.failure is None}
        stored, drained = asyncio.run(drain(stack, answered))
        results = {
            "machine": f"{platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}",
            "lanes": args.lanes,
            "phase": args.phase,
            "down": args.down,
            "server": str(args.server_path or "this checkout"),
            "drain_s": round(drained, 1),
            "drained": all(m in stored and "pending" not in stored[m] for m in answered),
            **report(run["windows"], calls, stored, stack.llm_calls()),
        }
    finally:
        stack.close(keep=args.keep)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = "\n".join(markdown(results)) + "\n"
    (out / "results.md").write_text(text)
    print(text)
    print(f"written to {out}")
    return 0 if within(results) else 1


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
