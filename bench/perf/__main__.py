"""``python -m bench.perf``: Mémoire's hot paths beside the peers, in one run (see bench/README.md).

Starts everything on loopback (fake upstream, embedded PostgreSQL, Redis, Mémoire, the LiteLLM proxy),
measures, stops everything it started, then runs the LoCoMo retrieval benchmark on its own stack, and
writes ``results.json``, ``results.md`` and PNG plots to ``bench/results/perf-<UTC time>/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.locomo.report import machine
from bench.perf import corpus, dialects, ingest, overhead, recall_scale, report
from bench.perf.stack import MODEL_DIR, ROOT, PerfStack

#: The run's sections, in the order they run.
SECTIONS = ("latency", "dialects", "streams", "max-rate", "ingest", "recall-scale", "soak")


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "").replace("k", "000").replace("M", "000000")) for x in text.split(",") if x]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__)
    p.add_argument("--out", type=Path, default=None, help="default: bench/results/perf-<UTC time>")
    p.add_argument("--concurrency", type=_ints, default=[1, 16, 64], help="levels (default 1,16,64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per level (default 3)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per mode per round (default 3)")
    p.add_argument("--chunks", type=int, default=20, help="events per stream (default 20)")
    p.add_argument("--interval", type=float, default=0.01, help="seconds between events (default 0.01)")
    p.add_argument("--rate-step", type=float, default=3.0, help="seconds per open-loop rate step (default 3)")
    p.add_argument("--soak", type=float, default=600.0, help="soak seconds at 50 streams/s (default 600)")
    p.add_argument("--recall-sizes", type=_ints, default=[10_000, 100_000, 1_000_000],
                   help="total facts, in turn (default 10k,100k,1M)")  # fmt: skip
    p.add_argument("--recall-requests", type=int, default=300, help="recalls timed per size (default 300)")
    p.add_argument("--worker-seconds", type=float, default=60.0, help="worker throughput window (default 60)")
    p.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out (it installs once, ~1 min)")
    p.add_argument("--no-locomo", action="store_true", help="leave the LoCoMo quality run out")
    quick = "a short look: 1 round of 1 s, levels 1,16, 10k facts, 30 s soak, no LoCoMo"
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--only", choices=SECTIONS, action="append", default=None,
                   help="run only this section (repeatable); default: all")  # fmt: skip
    return p


async def _measure(stack: PerfStack, args: argparse.Namespace, results: dict[str, Any]) -> None:
    texts, vectors, embedder = await recall_scale.embed_pool(str(MODEL_DIR), 1000)
    await embedder.close()
    assert stack.tenant_id is not None
    await recall_scale.load_user(stack.dsn, stack.tenant_id, overhead.PERF_USER, texts, vectors)
    async with httpx.AsyncClient() as http:  # the recall-on mode really recalls
        probe = await http.post(
            f"{stack.memoire}/v1/chat/completions", headers={"authorization": f"Bearer {stack.key}"},
            json={"model": "fake-chat", "user": overhead.PERF_USER,
                  "messages": [{"role": "user", "content": "Which city do I live in?"}]},
        )  # fmt: skip
    results["recall_probe"] = {k: probe.headers.get(k) for k in ("x-memoire-recalled", "x-memoire-status")}
    if probe.headers.get("x-memoire-recalled", "0") == "0":
        raise RuntimeError(f"the recall-on mode recalls nothing: {dict(probe.headers)}")
    results["rss_mb"] = {"memoire at start": round(stack.rss("memoire") / 2**20, 1)}
    if stack.litellm:
        results["rss_mb"]["litellm at start"] = round(stack.rss("litellm") / 2**20, 1)
    wanted = set(args.only or SECTIONS)
    plain = overhead.targets(stack, stream=False, questions=60_000)
    if "latency" in wanted:
        print("latency …", flush=True)
        runs = await overhead.interleaved(plain, args.concurrency, rounds=args.rounds, duration=args.duration)
        results["latency"] = overhead.latency_report(runs, args.rounds * args.duration)
    if "dialects" in wanted:
        print("the three APIs …", flush=True)
        levels = [level for level in args.concurrency if level in (1, 16)] or args.concurrency[:1]
        results["dialects"], results["dialects_pinned"] = await dialects.run(
            stack, levels, rounds=args.rounds, duration=args.duration
        )
    if "streams" in wanted:
        print("streams …", flush=True)
        streamed = overhead.targets(stack, stream=True, questions=20_000)
        runs = await overhead.interleaved(
            streamed, args.concurrency, rounds=args.rounds, duration=args.duration
        )
        results["streams"] = overhead.stream_report(runs)
    if "max-rate" in wanted:
        print("max rate …", flush=True)
        results["max_rate"] = {
            name: await overhead.max_rate(target, step_seconds=args.rate_step)
            for name, target in plain.items()
        }
    results["rss_mb"]["memoire after load"] = round(stack.rss("memoire") / 2**20, 1)
    if stack.litellm:
        results["rss_mb"]["litellm after load"] = round(stack.rss("litellm") / 2**20, 1)
    if "ingest" in wanted:
        print("ingest …", flush=True)
        accepted = await ingest.acceptance(stack, [1, 16, 64], duration=max(args.duration, 2.0))
        results["ingest"] = {
            "acceptance": accepted,
            "worker": await ingest.worker_throughput(stack, args.worker_seconds),
        }
    if "recall-scale" in wanted:
        print("recall at scale …", flush=True)
        results["recall_scale"] = await recall_scale.run(
            stack.dsn,
            stack.tenant_id,
            stack.memoire,
            stack.key,
            str(MODEL_DIR),
            args.recall_sizes,
            args.recall_requests,
        )
    if args.soak > 0 and "soak" in wanted:
        print(f"soak ({args.soak:.0f} s) …", flush=True)
        soak_target = overhead.targets(stack, stream=True, questions=40_000, seed=17)["memoire-recall"]
        results["soak"] = await overhead.soak(stack, soak_target, rate=50, seconds=args.soak)


def _locomo(out: Path) -> dict[str, Any] | None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.locomo", "--out", str(out / "locomo")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"LoCoMo run failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    scores: dict[str, Any] = json.loads((out / "locomo" / "results.json").read_text())["scores"]
    return dict(scores["overall (1-4)"])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.concurrency = 1, 1.0, [1, 16]
        args.recall_sizes, args.recall_requests, args.soak, args.no_locomo = [10_000], 100, 30.0, True
        args.worker_seconds, args.rate_step = 15.0, 1.5
    started = datetime.now(UTC)
    out = args.out or ROOT / "bench" / "results" / f"perf-{started:%Y%m%dT%H%M%SZ}"
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.perf", *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(),
        "settings": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
        "corpus_questions": len(corpus.QUESTIONS),
    }
    clock = time.monotonic()
    stack = PerfStack(chunks=args.chunks, interval=args.interval, litellm=not args.no_litellm).start()
    try:
        uvloop.run(_measure(stack, args, results))
    finally:
        stack.close()
    if not args.no_locomo:
        print("LoCoMo …", flush=True)
        results["locomo"] = _locomo(out)
    results["machine"] = machine()
    results["seconds"] = round(time.monotonic() - clock)
    report.write(out, results)
    print((out / "results.md").read_text())
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
