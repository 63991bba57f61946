"""``dvis eval``: the official metrics of every task (video AP, VPQ / STQ, mIoU / VC) on the command line."""
from __future__ import annotations

import argparse
from typing import Any


class EvalUsageError(ValueError):
    """A wrong combination of ``dvis eval`` arguments; printed as one line (exit code 2)."""


def cmd_eval(args: argparse.Namespace) -> int:
    import json
    import math

    from .evaluation import evaluate_ytvis, format_table

    if args.task != "vis":
        return _eval_segmentation(args)

    results = args.results[0] if len(args.results) == 1 else args.results
    stats = evaluate_ytvis(args.gt, results, per_category=args.per_category)
    if args.json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in stats.items()}
        if "per_category" in clean:
            clean["per_category"] = {k: (None if math.isnan(v) else v) for k, v in stats["per_category"].items()}
        print(json.dumps(clean, indent=2))
        return 0
    print(format_table(stats))
    if args.per_category:
        width = max([len(n) for n in stats["per_category"]] + [8])
        print(f"\n{'category':<{width}}  AP")
        for name, ap in stats["per_category"].items():
            print(f"{name:<{width}}  {'-' if math.isnan(ap) else f'{ap:.1f}'}")
    return 0


def _eval_segmentation(args: argparse.Namespace) -> int:
    """`dvis eval --task vps|vss`: VIPSeg VPQ/STQ or VSPW mIoU/VC, as the official scripts print them."""
    import json
    import math

    from .evaluation import evaluate_vps, evaluate_vss, format_vps, format_vss

    if len(args.results) != 1:
        raise EvalUsageError(f"--task {args.task} takes one prediction argument, got {len(args.results)}")
    if args.task == "vps":
        if args.gt_dir is None:
            raise EvalUsageError("--task vps needs --gt-dir (the GT panoptic PNG folder, <gt_dir>/<video>/<file>)")
        stats = evaluate_vps(args.gt, args.gt_dir, args.results[0], args.pred_dir, workers=args.workers)
        text = format_vps(stats)
    else:
        stats = evaluate_vss(args.gt, args.results[0], args.num_classes, workers=args.workers)
        text = format_vss(stats)
    if args.json:
        def clean(x):
            if isinstance(x, dict):
                return {str(k): clean(v) for k, v in x.items()}
            return None if isinstance(x, float) and math.isnan(x) else x
        print(json.dumps(clean(stats), indent=2))
    else:
        print(text)
    return 0


def add_eval_parser(sub: Any) -> None:
    """The ``eval`` sub-command on the ``dvis`` parser's sub-parsers."""
    ev = sub.add_parser("eval", help="official metrics: video AP (YouTube-VIS / OVIS), VPQ + STQ (VIPSeg), mIoU + "
                                     "VC (VSPW)")
    ev.add_argument("gt", metavar="GT", help="YouTube-VIS annotation file; --task vps: panoptic_gt_VIPSeg_val.json; "
                                             "--task vss: the VSPW root (val.txt, data/)")
    ev.add_argument("results", metavar="RESULTS", nargs="+",
                    help="YouTube-VIS results list, or results.json files written by `dvis predict` (one per video); "
                         "--task vps: pred.json (or its folder); --task vss: the prediction PNG folder")
    ev.add_argument("--task", choices=("vis", "vps", "vss"), default="vis",
                    help="vis: video AP (default); vps: VIPSeg VPQ/STQ; vss: VSPW mIoU/VC8/VC16")
    ev.add_argument("--gt-dir", default=None, help="--task vps: the GT panoptic PNGs, <gt_dir>/<video>/<file_name>")
    ev.add_argument("--pred-dir", default=None, help="--task vps: the predicted PNGs (default: next to pred.json, "
                                                     "its pan_pred/ if present)")
    ev.add_argument("--num-classes", type=int, default=124, help="--task vss: classes (default 124)")
    ev.add_argument("--workers", type=int, default=1, help="--task vps/vss: threads decoding PNGs ahead")
    ev.add_argument("--per-category", action="store_true", help="also print the AP of each category")
    ev.add_argument("--json", action="store_true", help="print the numbers as JSON instead of the table (on the "
                                                       "official scales: AP and VPQ 0-100, the others 0-1)")
    ev.set_defaults(func=cmd_eval)
