"""``results.json`` (everything, per question by id only) and ``results.md`` (the tables)."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.locomo.metrics import DRAGON_OBSERVATIONS, KS, Score


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the machine skews the latencies: the 1, 5 and 15 minute load averages at the end.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"  # NaN


def _score_table(scores: dict[str, Score], ceilings: dict[str, float]) -> list[str]:
    head = "| category | questions | " + " | ".join(f"R@{k}" for k in KS) + " | ceiling |"
    lines = [head, "|" + " --- |" * (len(KS) + 3)]
    for name, s in scores.items():
        cells = " | ".join(_fmt(s.recall[k]) for k in KS)
        lines.append(f"| {name} | {s.questions} | {cells} | {_fmt(ceilings.get(name, float('nan')))} |")
    dragon = " | ".join(_fmt(DRAGON_OBSERVATIONS[k]) for k in KS)
    lines.append(f"| paper: DRAGON on observations (1-4) | | {dragon} | |")
    return lines


def markdown(results: dict[str, Any], scores: dict[str, Score], ceilings: dict[str, float]) -> str:
    lat = results["latency_ms"]
    imp = results["import"]
    counts = results["dataset"]["counts"]
    settings = results["settings"]
    lines = [
        f"# LoCoMo retrieval — {results['started']}",
        "",
        f"Dataset: `{results['dataset']['path']}` (sha256 `{results['dataset']['sha256'][:16]}…`, "
        "CC BY-NC 4.0, read at run time). "
        f"{counts['conversations']} conversations, {counts['observations']} observations imported through "
        f"`POST /v1/facts`, {results['questions_asked']} questions asked through `POST /v1/recall` "
        f"(limit {results['recall_limit']}, temporal all; R@5 and R@10 are the top of that list).",
        "",
        "Recall of the gold evidence dia_ids among the top-k facts' dia_ids, in %. *ceiling*: recall with k "
        "unbounded (gold ids that some stored fact carries); overall (1-4) is the paper's convention.",
        "",
        *_score_table(scores, ceilings),
        "",
        "## Latency (client-measured, end to end, one request at a time)",
        "",
        "| p50 ms | p95 ms | p99 ms | mean ms | max ms | recalls |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {lat['p50']} | {lat['p95']} | {lat['p99']} | {lat['mean']} | {lat['max']} | {lat['count']} |",
        "",
        "## Import",
        "",
        f"- {imp['seconds']:.1f} s for {imp['facts']} facts ({imp['facts_per_second']:.0f} facts/s)",
        f"- outcomes: {', '.join(f'{k} {v}' for k, v in sorted(imp['outcomes'].items()))}",
        f"- merged observations' dia_ids lost (not on the fact they merged into): {imp['merged_ids_lost']}; "
        f"gold ids reachable before merges {imp['ceiling_before_merges']:.1f} %, after "
        f"{imp['ceiling_after_merges']:.1f} % (overall 1-5)",
        "",
        "## Counts",
        "",
        *(f"- {k}: {v}" for k, v in counts.items()),
        f"- questions skipped (no usable evidence): {results['questions_skipped']}",
        "",
        "## Settings",
        "",
        f"- overrides: `{json.dumps(settings['overrides'])}`",
        f"- memory: `{json.dumps(settings['memory'])}`",
        f"- embeddings: `{json.dumps(settings['embeddings'])}`",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in results["machine"].items()),
        "",
    ]
    return "\n".join(lines)


def write(out: Path, results: dict[str, Any], scores: dict[str, Score], ceilings: dict[str, float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "scores": {k: s.as_dict() for k, s in scores.items()}, "ceilings": ceilings}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_default) + "\n")
    (out / "results.md").write_text(markdown(results, scores, ceilings))


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
