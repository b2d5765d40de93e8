"""``python -m bench.paraphrase``: Mémoire's own paraphrase set through ``POST /v1/recall`` (bench/README.md).

Imports each user's facts through ``POST /v1/facts`` (the write path's embedding and dedup), then asks every
question through ``POST /v1/recall`` as the proxy would: the latest message as ``query`` and, with
``--history`` (the default), the previous user turns as ``context``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.locomo.metrics import latency_ms, percentile
from bench.locomo.report import machine
from bench.locomo.stack import ROOT, Stack, add_settings_option, parse_settings
from bench.paraphrase import dataset, long_messages, metrics

#: Facts asked for per question; R@1, @5 and @10 are read off the top of the same list.
RECALL_LIMIT = 25
#: Facts the proxy puts into one call (``memory.recall_limit``'s default).
INJECTED = 12


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.paraphrase", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/paraphrase-<UTC time>")
    parser.add_argument(
        "--history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send the previous user turns as context (--no-history: the latest message alone)",
    )
    add_settings_option(parser, "memory.small_memory=0")
    parser.add_argument(
        "--long",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time long messages for a user with 1,000 facts (bench/paraphrase/long_messages.py)",
    )
    parser.add_argument("--label", default="", help="a name for this run in results.md")
    return parser.parse_args(argv)


def import_user(http: httpx.Client, user: dataset.User) -> tuple[Counter[str], dict[str, str]]:
    """Store the user's facts; the outcomes, and each stored fact's id → its key."""
    facts = [
        {
            "text": f.text,
            "category": f.category,
            "slot": f.slot,
            "temporal_status": f.temporal_status,
            "metadata": {"key": f.key},
        }
        for f in user.facts
    ]
    response = http.post("/v1/facts", json={"user_id": user.id, "facts": facts})
    response.raise_for_status()
    outcomes = Counter(r["outcome"] for r in response.json()["results"])
    keys: dict[str, str] = {}
    page = http.get(f"/v1/users/{user.id}/facts", params={"status": ["active", "superseded"], "limit": 500})
    page.raise_for_status()
    for item in page.json()["facts"]:
        keys[str(item["id"])] = str((item.get("metadata") or {}).get("key", ""))
    return outcomes, keys


def ask(http: httpx.Client, user: dataset.User, keys: dict[str, str], history: bool) -> list[metrics.Answer]:
    answers = []
    for index, question in enumerate(user.questions):
        body: dict[str, Any] = {
            "user_id": user.id,
            "query": question.text,
            "limit": RECALL_LIMIT,
            "temporal": ["all"],
        }
        if history and question.history:
            body["context"] = question.history
        started = time.perf_counter()
        response = http.post("/v1/recall", json=body)
        seconds = time.perf_counter() - started
        response.raise_for_status()
        facts = response.json()["facts"]
        answers.append(
            metrics.Answer(
                user=user.id,
                index=index,
                kind=question.kind,
                gold=tuple(question.gold),
                ranked=[keys.get(str(f["id"]), "") for f in facts],
                scores=[float(f.get("score") or 0.0) for f in facts],
                seconds=seconds,
                server_ms=metrics.server_timing(response.headers.get("server-timing", "")),
            )
        )
    return answers


def _table(rows: dict[str, metrics.Score]) -> list[str]:
    head = "| questions | n | " + " | ".join(f"R@{k}" for k in metrics.KS) + " | MRR | empty % |"
    lines = [head, "|" + " --- |" * (len(metrics.KS) + 4)]
    for name, s in rows.items():
        cells = " | ".join(f"{s.recall[k]:.1f}" for k in metrics.KS)
        lines.append(f"| {name} | {s.questions} | {cells} | {s.mrr:.3f} | {s.empty:.1f} |")
    return lines


def report(
    out: Path, results: dict[str, Any], rows: dict[str, metrics.Score], none: metrics.Unanswerable
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lat, server = results["latency_ms"], results["server_ms"]
    lines = [
        f"# Paraphrase recall — {results['started']}"
        + (f" — {results['label']}" if results["label"] else ""),
        "",
        f"{results['counts']['users']} users, {results['counts']['facts']} facts "
        f"(import outcomes {results['import_outcomes']}), {results['counts']['questions']} questions "
        f"through `POST /v1/recall` (limit {RECALL_LIMIT}, "
        f"history {'sent' if results['history'] else 'not sent'}).",
        "",
        *_table(rows),
        "",
        f"Unanswerable ({none.questions}): {none.any_fact:.1f} % got a fact within the proxy's {INJECTED}, "
        f"{none.mean_facts:.2f} facts on average; mean top score {none.mean_top_score:.3f} "
        f"(answerable: {none.answerable_top_score:.3f}); top score AUC, answerable against unanswerable, "
        f"{none.separability:.3f}.",
        "",
        f"Latency, client end to end: p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms. "
        f"Server (Server-Timing embed + db): p50 {server['p50']} ms, p95 {server['p95']} ms, "
        f"p99 {server['p99']} ms.",
        "",
        *_long(results["long_messages"]),
        f"Settings: `{json.dumps(results['settings']['overrides'])}`. Machine: {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores, load {results['machine']['load_average_at_end']}.",
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def _long(long: dict[str, Any] | None) -> list[str]:
    if long is None:
        return []
    lines = [
        f"Long messages: server time (embed + db) for one user with {long['facts']} facts, "
        f"{long_messages.PER_LENGTH} new messages per length, two earlier turns as context.",
        "",
        "| characters | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | --- | --- |",
    ]
    for length, t in [*long["by_length"].items(), ("all", long["all"])]:
        lines.append(f"| {length} | {t['p50']} | {t['p95']} | {t['p99']} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    users = dataset.load()
    problems = dataset.check(users)
    if problems:
        for problem in problems:
            print(f"{problem.where}: {problem.what}", file=sys.stderr)
        return 2
    overrides = parse_settings(args.settings)
    started = datetime.now(UTC)
    out: Path = args.out or ROOT / "bench" / "results" / f"paraphrase-{started:%Y%m%dT%H%M%SZ}"
    stack = Stack(overrides).start()
    try:
        with httpx.Client(base_url=stack.url, timeout=60.0) as http:
            outcomes: Counter[str] = Counter()
            keyed = []
            for user in users:
                got, keys = import_user(http, user)
                outcomes.update(got)
                keyed.append((user, keys))
            for user, keys in keyed[:2]:  # warm-up, not measured
                ask(http, user, keys, args.history)
            answers = [a for user, keys in keyed for a in ask(http, user, keys, args.history)]
            long = long_messages.run(http, users, history=args.history) if args.long else None
        memory_settings = msgspec.to_builtins(stack.config.memory)
    finally:
        stack.close()

    rows: dict[str, metrics.Score] = {
        kind: metrics.score([a for a in answers if a.kind == kind]) for kind in dataset.KINDS[:3]
    }
    rows["answerable"] = metrics.score([a for a in answers if a.gold])
    none = metrics.unanswerable(answers, INJECTED)
    server = [a.server_ms.get("embed", 0.0) + a.server_ms.get("db", 0.0) for a in answers]
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "label": args.label,
        "history": args.history,
        "counts": {
            "users": len(users),
            "facts": sum(len(u.facts) for u in users),
            "questions": len(answers),
            "by_kind": dict(Counter(a.kind for a in answers)),
        },
        "import_outcomes": dict(outcomes),
        "scores": {name: s.as_dict() for name, s in rows.items()},
        "unanswerable": none.as_dict(),
        "latency_ms": latency_ms([a.seconds for a in answers]),
        "server_ms": {f"p{q}": round(percentile(server, q), 2) for q in (50, 95, 99)},
        "long_messages": long,
        "settings": {"overrides": overrides, "memory": memory_settings},
        "machine": machine(),
        "answers": [
            {"user": a.user, "index": a.index, "kind": a.kind, "gold": a.gold, "ranked": a.ranked[:10]}
            for a in answers
        ],
    }
    report(out, results, rows, none)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
