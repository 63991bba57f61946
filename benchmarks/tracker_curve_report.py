"""Compact markdown tables of the tracker learning curve (`benchmarks/results/tracker_curve.json`), as in
docs/training.md: the curve per (init, lr, arm), the longest budget against segmenter-only association, shuffle -
none, and the first budget from which a trained tracker stays ahead of segmenter-only association.

Reads only the JSON (no torch): ``python benchmarks/tracker_curve_report.py [path] [--budgets 4000 8000 ...]``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

DEFAULT = Path(__file__).resolve().parent / "results" / "tracker_curve.json"
Key = Tuple[str, float, str]  # init, lr, arm


def _fmt(d: Dict[str, Any]) -> str:
    return f"{d['diff']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"


def rows_by_run(report: Dict[str, Any]) -> Dict[Key, Dict[int, List[dict]]]:
    """(init, lr, arm) -> iteration -> the table rows of its seeds."""
    out: Dict[Key, Dict[int, List[dict]]] = {}
    for r in report["table"]:
        out.setdefault((r["init"], r["lr"], r["arm"]), {}).setdefault(r["iter"], []).append(r)
    return out


def _mean(rows: List[dict], side: str, *path: str) -> float:
    vals = []
    for r in rows:
        v: Any = r[side]
        for p in path:
            v = v[p]
        vals.append(v)
    return float(np.mean(vals))


def _order(k: Key) -> tuple:
    return (k[0] != "fresh", -k[1], k[2])


def curve_table(runs: Dict[Key, Dict[int, List[dict]]], budgets: List[int]) -> str:
    head = "| init | lr | arm | seeds | " + " | ".join(f"{b // 1000}k" for b in budgets) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(budgets)]
    for key in sorted(runs, key=_order):
        pts = runs[key]
        seeds = max((len(pts[b]) for b in budgets if b in pts), default=0)
        cells = [f"{_mean(pts[b], 'tracker', 'AP'):.1f} / {_mean(pts[b], 'tracker', 'at_best', 'IDF1'):.1f}"
                 + ("" if len(pts[b]) == seeds else f" ({len(pts[b])})") if b in pts else "" for b in budgets]
        lines.append(f"| {key[0]} | {key[1]:g} | {key[2]} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_table(report: Dict[str, Any], runs: Dict[Key, Dict[int, List[dict]]]) -> str:
    comp = {(c["init"], c["lr"], c["iter"]): c for c in report["comparisons"]}
    c = report["cosine"]
    lines = ["| init | lr | arm | budget | seeds | AP | IDF1 @best | AssA @best | IDTP / IDFP @best | "
             "tracker - segmenter-only: AP per video | IDF1 @best | swap - segmenter-only: IDF1 @best |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| segmenter-only (cosine) | | | | | {c['AP']:.1f} | {c['at_best']['IDF1']:.1f} | "
             f"{c['at_best']['AssA']:.1f} | {c['at_best']['IDTP']:.0f} / {c['at_best']['IDFP']:.0f} | | | |"]
    for key in sorted(runs, key=_order):
        pts = runs[key]
        b = max(pts)
        rs = pts[b]
        cm = comp.get((key[0], key[1], b), {})
        vs, sw = cm.get(f"{key[2]}-cosine"), cm.get(f"{key[2]}_swap-cosine")
        lines.append(
            f"| {key[0]} | {key[1]:g} | {key[2]} | {b // 1000}k | {len(rs)} | {_mean(rs, 'tracker', 'AP'):.1f} | "
            f"{_mean(rs, 'tracker', 'at_best', 'IDF1'):.1f} | {_mean(rs, 'tracker', 'at_best', 'AssA'):.1f} | "
            f"{_mean(rs, 'tracker', 'at_best', 'IDTP'):.0f} / {_mean(rs, 'tracker', 'at_best', 'IDFP'):.0f} | "
            + (f"{_fmt(vs['AP_per_video'])} | {_fmt(vs['IDF1_best'])} | {_fmt(sw['IDF1_best'])} |" if vs else "| | |"))
    return "\n".join(lines)


def noise_table(report: Dict[str, Any], budgets: List[int]) -> str:
    lines = ["| init | lr | budget | seeds | shuffle - none: AP per video | IDF1 @best | IDF1 @0.3 |",
             "|---|---|---|---|---|---|---|"]
    for c in sorted(report["comparisons"], key=lambda c: (c["init"] != "fresh", -c["lr"], c["iter"])):
        d = c.get("shuffle-none")
        if d and c["iter"] in budgets:
            lines.append(f"| {c['init']} | {c['lr']:g} | {c['iter'] // 1000}k | {d['AP_per_video']['seeds']} | "
                         f"{_fmt(d['AP_per_video'])} | {_fmt(d['IDF1_best'])} | {_fmt(d['IDF1_0.3'])} |")
    return "\n".join(lines)


def first_ahead(report: Dict[str, Any], metric: str) -> Dict[Key, Optional[int]]:
    """The first budget from which the tracker - segmenter-only interval stays above zero to the last point."""
    out: Dict[Key, Optional[int]] = {}
    by: Dict[Key, Dict[int, bool]] = {}
    for c in report["comparisons"]:
        for arm in ("none", "shuffle"):
            d = c.get(f"{arm}-cosine")
            if d:
                by.setdefault((c["init"], c["lr"], arm), {})[c["iter"]] = d[metric]["ci95"][0] > 0
    for key, pts in by.items():
        first = None
        for it in sorted(pts, reverse=True):
            if not pts[it]:
                break
            first = it
        out[key] = first
    return out


def ahead_table(report: Dict[str, Any]) -> str:
    ap, idf1 = first_ahead(report, "AP_per_video"), first_ahead(report, "IDF1_best")
    runs = rows_by_run(report)
    lines = ["| init | lr | arm | evaluated to | ahead in AP from | ahead in IDF1 @best from |",
             "|---|---|---|---|---|---|"]
    show = lambda v: "never" if v is None else f"{v // 1000}k"  # noqa: E731
    for key in sorted(ap, key=_order):
        lines.append(f"| {key[0]} | {key[1]:g} | {key[2]} | {max(runs[key]) // 1000}k | {show(ap[key])} | "
                     f"{show(idf1[key])} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--budgets", type=int, nargs="+", default=[2000, 4000, 8000, 12000, 16000, 20000])
    a = ap.parse_args(argv)
    report = json.loads(a.path.read_text())
    runs = rows_by_run(report)
    text = "\n\n".join([
        "AP / IDF1 at the tracker's best threshold (mean over seeds; a count in brackets: fewer seeds there):",
        curve_table(runs, a.budgets),
        "At each run's longest budget (paired bootstrap 95% intervals over validation videos and seeds):",
        final_table(report, runs),
        "First budget from which the interval of tracker - segmenter-only stays above zero:",
        ahead_table(report),
        noise_table(report, a.budgets)])
    print(text)
    return text


if __name__ == "__main__":
    main()
