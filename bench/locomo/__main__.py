"""``python -m bench.locomo [--limit-conversations N] [--out DIR] [--set memory.min_lexical=1.01 ...]``."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.locomo import client, dataset, metrics, report
from bench.locomo.stack import ROOT, Stack, add_settings_option, parse_settings


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.locomo", description=__doc__)
    parser.add_argument("--dataset", type=Path, default=dataset.DEFAULT_PATH, help="locomo10.json")
    parser.add_argument("--limit-conversations", type=int, default=None, metavar="N")
    parser.add_argument("--limit-questions", type=int, default=None, metavar="N", help="per conversation")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/locomo-<UTC time>")
    add_settings_option(parser, "memory.min_lexical=1.01")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    overrides = parse_settings(args.settings)
    started = datetime.now(UTC)
    out: Path = args.out or ROOT / "bench" / "results" / f"locomo-{started:%Y%m%dT%H%M%SZ}"
    conversations, counts = dataset.load(args.dataset, args.limit_conversations)
    if args.limit_questions is not None:
        conversations = [
            dataclasses.replace(c, questions=c.questions[: args.limit_questions]) for c in conversations
        ]
    print(f"loaded {len(conversations)} conversations, {counts.observations} observations", flush=True)

    stack = Stack(overrides)
    t0 = time.perf_counter()
    stack.start()
    print(f"stack up in {time.perf_counter() - t0:.1f} s at {stack.url}", flush=True)
    try:
        with httpx.Client(base_url=stack.url, timeout=120.0) as http:
            imported = []
            for conv in conversations:
                one = client.import_conversation(http, conv)
                imported.append(one)
                print(f"  imported {conv.sample_id}: {dict(one.outcomes)} in {one.seconds:.1f} s", flush=True)
            client.warm_up(http, conversations[0])
            answers: list[client.Answer] = []
            for conv in conversations:
                answers += client.ask(http, conv)
                done = [a for a in answers if a.sample_id == conv.sample_id]
                hits = metrics.score(done).recall[10]
                print(f"  asked {conv.sample_id}: {len(done)} questions, R@10 {hits:.1f}", flush=True)
        settings = {
            "overrides": overrides,
            "memory": msgspec.to_builtins(stack.config.memory),
            "embeddings": {
                k: v
                for k, v in msgspec.to_builtins(stack.config.embeddings).items()
                if k in ("provider", "model", "dimensions", "threads")
            },
        }
    finally:
        stack.close()

    results, scores, ceilings = _results(args, started, counts, conversations, imported, answers, settings)
    report.write(out, results, scores, ceilings)
    _summary(scores, results)
    print(f"wrote {out / 'results.md'} and results.json", flush=True)
    return 0


def _results(
    args: argparse.Namespace,
    started: datetime,
    counts: dataset.Counts,
    conversations: list[dataset.Conversation],
    imported: list[client.Imported],
    answers: list[client.Answer],
    settings: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, metrics.Score], dict[str, float]]:
    scores = metrics.by_category(answers)
    cited = {c.sample_id: {i for o in c.observations for i in o.dia_ids} for c in conversations}
    stored = {m.sample_id: {i for ids in m.fact_ids.values() for i in ids} for m in imported}
    ceilings = _ceilings(answers, stored)
    outcomes: Counter[str] = Counter()
    for one in imported:
        outcomes.update(one.outcomes)
    seconds = sum(m.seconds for m in imported)
    facts = sum(outcomes.values())
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "dataset": {
            "path": str(args.dataset),
            "sha256": dataset.sha256(args.dataset),
            "counts": dataclasses.asdict(counts),
        },
        "recall_limit": client.RECALL_LIMIT,
        "questions_asked": len(answers),
        "questions_skipped": sum(1 for a in answers if not a.gold),
        "settings": settings,
        "machine": report.machine(),
        "latency_ms": {**metrics.latency_ms([a.seconds for a in answers]), "count": len(answers)},
        "import": {
            "seconds": round(seconds, 2),
            "facts": facts,
            "facts_per_second": facts / seconds if seconds else math.nan,
            "outcomes": dict(outcomes),
            "merged_ids_lost": sum(m.merged_ids_lost for m in imported),
            "ceiling_before_merges": metrics.coverage(answers, cited),
            "ceiling_after_merges": metrics.coverage(answers, stored),
            "per_conversation": [
                {"sample_id": m.sample_id, "seconds": round(m.seconds, 2), "outcomes": dict(m.outcomes)}
                for m in imported
            ],
        },
        "questions": [
            {
                "sample_id": a.sample_id,
                "index": a.index,
                "category": a.category,
                "gold": a.gold,
                "first_hit": metrics.first_hit(a),
                **{f"R@{k}": round(metrics.recall_at(a, k), 4) for k in metrics.KS if a.gold},
                "ms": round(a.seconds * 1000, 2),
                "ranked": a.ranked,
                "scores": a.scores,
            }
            for a in answers
        ],
    }
    return results, scores, ceilings


def _ceilings(answers: list[client.Answer], stored: dict[str, set[str]]) -> dict[str, float]:
    groups: dict[str, list[client.Answer]] = {
        f"{n} {name}": [a for a in answers if a.category == n] for n, name in dataset.CATEGORIES.items()
    }
    groups["overall (1-4)"] = [a for a in answers if a.category in metrics.PAPER_CATEGORIES]
    groups["overall (1-5)"] = list(answers)
    return {name: round(metrics.coverage(group, stored), 2) for name, group in groups.items()}


def _summary(scores: dict[str, metrics.Score], results: dict[str, Any]) -> None:
    print(f"{'category':<16} {'n':>5} " + " ".join(f"{'R@' + str(k):>6}" for k in metrics.KS))
    for name, s in scores.items():
        print(f"{name:<16} {s.questions:>5} " + " ".join(f"{s.recall[k]:6.1f}" for k in metrics.KS))
    lat = results["latency_ms"]
    imp = results["import"]
    print(f"latency ms p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']}")
    print(f"import {imp['seconds']} s, outcomes {imp['outcomes']}, merged ids lost {imp['merged_ids_lost']}")


if __name__ == "__main__":
    sys.exit(main())
