"""The results of a run: `results.json` (all of it), `results.md` (tables, targets), PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.perf import dialects

MODES = ["memoire-off", "memoire-recall", "litellm"]


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, target, measured, met) for each target of the issue that this run measured."""
    out: list[tuple[str, str, str, bool | None]] = []
    lat = results.get("latency", {})
    if "16" in lat and "memoire-off" in lat["16"]:
        added, errors = lat["16"]["memoire-off"]["added"], lat["16"]["memoire-off"]["errors"]
        out.append(("added latency, memory off, concurrency 16", "p50 ≤ 1 ms, p99 ≤ 5 ms",
                    f"p50 {added['p50']:.2f} ms, p99 {added['p99']:.2f} ms, {errors} errors",
                    added["p50"] <= 1 and added["p99"] <= 5 and not errors))  # fmt: skip
    for level in ("1", "16"):
        if level in lat and "memoire-recall" in lat[level]:
            added, errors = lat[level]["memoire-recall"]["added"], lat[level]["memoire-recall"]["errors"]
            out.append((f"added latency, recall on, 1,000 facts, concurrency {level}",
                        "p50 ≤ 8 ms, p99 ≤ 20 ms",
                        f"p50 {added['p50']:.2f} ms, p99 {added['p99']:.2f} ms, {errors} errors",
                        added["p50"] <= 8 and added["p99"] <= 20 and not errors))  # fmt: skip
    for level in ("1", "16", "64"):
        row = lat.get(level, {})
        if "litellm" in row and "memoire-off" in row:
            ours, theirs = row["memoire-off"]["added"]["p50"], row["litellm"]["added"]["p50"]
            clean = row["memoire-off"]["errors"] == 0 and row["litellm"]["errors"] == 0
            if ours < 0.05:  # within the noise of the direct call: no ratio can be read off
                out.append((f"overhead vs LiteLLM, p50, concurrency {level}", "≥ 5× lower",
                            f"not measurable ({ours:.2f} vs {theirs:.2f} ms)", None))  # fmt: skip
            else:
                ratio = theirs / ours
                measured = f"{ratio:.1f}× ({ours:.2f} vs {theirs:.2f} ms)"
                out.append((f"overhead vs LiteLLM, p50, concurrency {level}", "≥ 5× lower", measured,
                            ratio >= 5 and clean))  # fmt: skip
    for level, row in results.get("dialects", {}).items():
        worst = max(
            (r for name, e in row.items() if "ratio" in e for r in e["ratio"].values() if r is not None),
            default=None,
        )
        measured = "not measurable" if worst is None else f"worst {worst:.2f}×"
        out.append((f"responses and anthropic added latency vs chat's, concurrency {level}",
                    f"≤ {dialects.WITHIN:.2f}× (p50 and p99, off and recall)", measured,
                    dialects.within(row)))  # fmt: skip
    streams = results.get("streams", {})
    if "1" in streams and "memoire-recall" in streams["1"]:
        first = streams["1"]["memoire-recall"]["first_event_added"]["p50"]
        recall = lat.get("1", {}).get("memoire-recall", {}).get("added", {}).get("p50")
        if recall is not None:
            off = lat["1"]["memoire-off"]["added"]["p50"]
            budget = max(recall - off, 0) + 1
            out.append(("streaming, first byte (p50, concurrency 1)", "≤ recall time + 1 ms",
                        f"{first:.2f} ms (recall {recall - off:.2f} ms)", first <= budget))  # fmt: skip
    worst = max(
        (m["gap_distortion"]["p99"] for level in streams.values() for name, m in level.items()
         if name.startswith("memoire") and m["gap_distortion"]["n"]),
        default=None,
    )  # fmt: skip
    if worst is not None:
        out.append(
            ("streaming, chunk gaps", "distortion p99 ≤ 1 ms", f"{worst:.2f} ms (worst level)", worst <= 1)
        )
    scale = results.get("recall_scale", {})
    if scale:
        alone = scale["query_embedding_in_process"]["p50"]
        out.append(("query embedding", "p50 ≤ 4 ms", f"{alone:.2f} ms", alone <= 4))
        biggest = max(scale["levels"], key=lambda level: level["facts"])
        p95 = biggest["end_to_end"]["p95"]
        per_user = biggest["facts"] // biggest["users"]
        out.append((f"recall at {biggest['facts']:,} facts ({per_user:,} a user: the exact path), end to end",
                    "p95 ≤ 15 ms", f"{p95:.2f} ms",
                    p95 <= 15 if biggest["facts"] >= 1_000_000 else None))  # fmt: skip
    ingest = results.get("ingest", {}).get("acceptance", {})
    if ingest:
        p99 = ingest.get("1", {}).get("p99")
        best = max(level["exchanges_per_s"] for level in ingest.values())
        out.append(("/v1/ingest", "p99 ≤ 5 ms, ≥ 1,000 exchanges/s", f"p99 {_f(p99)} ms, {best:.0f}/s",
                    p99 is not None and p99 <= 5 and best >= 1000))  # fmt: skip
    soak = results.get("soak")
    if soak:
        spread = soak["rss_second_half_spread_mb"]
        measured = (
            f"{soak['rss_start_mb']} → {soak['rss_end_mb']} MB (spread {spread} MB in the second half), "
            f"{soak['errors']} errors"
        )
        flat = soak["errors"] == 0 and spread is not None and spread <= 10
        out.append(("proxy RSS, soak", "flat, no pool exhaustion", measured, flat))
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Performance, {results['started']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {results['python']}.",
        f"Command: `{results['command']}`.",
        "",
        "## Targets",
        "",
        "| figure | target | measured | met |",
        "|---|---|---|---|",
    ]
    for figure, target, measured, met in targets(results):
        lines.append(
            f"| {figure} | {target} | {measured} | {'yes' if met else '–' if met is None else 'no'} |"
        )
    lines += ["", "## Added latency (ms over direct; non-streamed, closed loop, interleaved)", ""]
    lines += [
        "| concurrency | mode | p50 | p95 | p99 | errors | direct p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for level, row in results.get("latency", {}).items():
        direct = row["direct"]
        for name in MODES:
            if name in row:
                a = row[name]["added"]
                lines.append(
                    f"| {level} | {name} | {a['p50']:.2f} | {a['p95']:.2f} | {a['p99']:.2f} "
                    f"| {row[name]['errors']} "
                    f"| {direct['p50']:.2f} / {direct['p99']:.2f} |"
                )
    if results.get("dialects"):
        lines += dialects.markdown(results["dialects"], results.get("dialects_pinned", False))
    lines += ["", "## Streams (ms): first event added over direct, and gap distortion p99", ""]
    lines += [
        "| concurrency | mode | first event +p50 | +p99 | gap distortion p99 |",
        "|---|---|---|---|---|",
    ]
    for level, row in results.get("streams", {}).items():
        for name in ["direct", *MODES]:
            if name in row:
                e = row[name]
                added = e.get("first_event_added", {"p50": 0.0, "p99": 0.0})
                lines.append(
                    f"| {level} | {name} | {added['p50']:.2f} | {added['p99']:.2f} "
                    f"| {_f(e['gap_distortion']['p99'])} |"
                )
    if results.get("max_rate"):
        lines += [
            "",
            "## Max sustained rate (open loop, until p99 doubles)",
            "",
            "| mode | max RPS | p99 at start |",
        ]
        lines.append("|---|---|---|")
        for name, r in results["max_rate"].items():
            lines.append(f"| {name} | {r['max_rps']} | {r['baseline_p99']:.2f} ms |")
    if results.get("rss_mb"):
        lines += ["", "## Proxy RSS (MB)", ""]
        for name, value in results["rss_mb"].items():
            lines.append(f"- {name}: {value}")
    scale = results.get("recall_scale")
    if scale:
        q = scale["query_embedding_in_process"]
        lines += ["", "## Recall at scale (1,000 users; ms)", "",
                  f"Query embedding alone, in process: p50 {q['p50']:.2f}, p95 {q['p95']:.2f}, "
                  f"p99 {q['p99']:.2f}.", "",
                  "| facts | end to end p50 / p95 / p99 | database p50 / p95 / p99 | embedding p50 "
                  "| load + index s |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for level in scale["levels"]:
            e, d = level["end_to_end"], level["db"]
            lines.append(
                f"| {level['facts']:,} | {e['p50']:.2f} / {e['p95']:.2f} / {e['p99']:.2f} "
                f"| {d['p50']:.2f} / {d['p95']:.2f} / {d['p99']:.2f} | {level['embed']['p50']:.2f} "
                f"| {level['load_s']:.0f} + {level['index_s']:.0f} |"
            )
    ingest = results.get("ingest")
    if ingest:
        lines += [
            "",
            "## Ingest",
            "",
            "| concurrency | p50 | p95 | p99 ms | exchanges/s |",
            "|---|---|---|---|---|",
        ]
        for level, r in ingest["acceptance"].items():
            lines.append(
                f"| {level} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {r['exchanges_per_s']} |"
            )
        w = ingest.get("worker")
        if w:
            lines += ["", f"Worker, extraction LLM answering at once: {w['exchanges_per_s']} exchanges/s, "
                      f"{w['facts_per_s']} facts/s ({w['ms_per_fact']} ms a fact) "
                      f"over {w['seconds']} s."]  # fmt: skip
    soak = results.get("soak")
    if soak:
        lines += ["", f"## Soak: {soak['rate']} streams/s for {soak['seconds']} s", "",
                  f"{soak['streams']} streams, {soak['errors']} errors; "
                  f"latency p50 {soak['latency']['p50']:.1f}, p99 {soak['latency']['p99']:.1f} ms; "
                  f"RSS {soak['rss_start_mb']} → {soak['rss_end_mb']} MB."]  # fmt: skip
    quality = results.get("locomo")
    if quality:
        lines += ["", "## Quality: LoCoMo retrieval (overall, categories 1-4)", "",
                  " · ".join(f"{k} {v}" for k, v in quality.items() if k.startswith("R@"))]  # fmt: skip
    return "\n".join(lines) + "\n"


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    lat = results.get("latency", {})
    if lat:
        fig, axes = plt.subplots(1, len(lat), figsize=(4 * len(lat), 3.5), squeeze=False)
        for ax, (level, row) in zip(axes[0], lat.items(), strict=True):
            names = [n for n in MODES if n in row]
            for i, q in enumerate(("p50", "p95", "p99")):
                ax.bar(
                    [x + i * 0.27 for x in range(len(names))],
                    [row[n]["added"][q] for n in names],
                    0.27,
                    label=q,
                )
            ax.set_xticks([x + 0.27 for x in range(len(names))], names, fontsize=8)
            ax.set_title(f"added latency, concurrency {level}")
            ax.set_ylabel("ms")
            ax.set_yscale("log")
        axes[0][0].legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        made.append("latency.png")
    soak = results.get("soak")
    if soak:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([t for t, _ in soak["rss_mb"]], [r for _, r in soak["rss_mb"]])
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS, MB")
        ax.set_title(f"Mémoire RSS, {soak['rate']} streams/s")
        ax.set_ylim(bottom=0)
        fig.tight_layout()
        fig.savefig(out / "soak_rss.png", dpi=110)
        plt.close(fig)
        made.append("soak_rss.png")
    scale = results.get("recall_scale")
    if scale:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        sizes = [level["facts"] for level in scale["levels"]]
        for q in ("p50", "p95", "p99"):
            ax.plot(
                sizes,
                [level["end_to_end"][q] for level in scale["levels"]],
                marker="o",
                label=f"end to end {q}",
            )
        ax.plot(
            sizes,
            [level["db"]["p95"] for level in scale["levels"]],
            marker="x",
            ls="--",
            label="database p95",
        )
        ax.set_xscale("log")
        ax.set_xlabel("facts (1,000 users)")
        ax.set_ylabel("ms")
        ax.set_title("/v1/recall")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "recall_scale.png", dpi=110)
        plt.close(fig)
        made.append("recall_scale.png")
    return made


def write(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
