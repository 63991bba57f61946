"""``dvis`` command line: thin wrappers over the Python API.

Errors a user can fix (bad input, missing weights) end with one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any, List, Optional

from .cli_eval import add_eval_parser

TRUST_PICKLE_HELP = ("read a pickle-based --checkpoint (.pth / .pkl) with no restriction on what it may run; only "
                     "for a file from a source you trust (by default only weights-like content is read)")


DTYPE_HELP = ("inference precision (autocast): auto = bf16 on GPUs with compute capability >= 8.0, fp16 on older "
              "GPUs, fp32 on CPU; fp16 on a CPU runs fp32")


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


def _load_segmenter(args: argparse.Namespace, **settings: Any):
    from .inference.predictor import VideoSegmenter

    kwargs = dict(device=args.device, dtype=args.dtype, **settings)
    backend, providers = getattr(args, "backend", None), _providers(getattr(args, "providers", None))
    if args.config or args.checkpoint:
        if not (args.config and args.checkpoint):
            raise UserError("--config and --checkpoint go together (official yaml + official checkpoint)")
        if backend == "onnxruntime" or providers:
            raise UserError("--backend onnxruntime / --providers run an export folder: dvis export --config ... "
                            "--checkpoint ... --out DIR, then --model DIR")
        return VideoSegmenter.from_official(args.config, args.checkpoint, mode=args.mode,
                                            trust_pickle=getattr(args, "trust_pickle", False), **kwargs)
    if backend or providers:
        kwargs.update(backend=backend, providers=providers)
    return VideoSegmenter.from_pretrained(args.model, mode=args.mode, **kwargs)


_PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                   "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}


def _providers(text: Optional[str]) -> Optional[List[str]]:
    """``"tensorrt,cuda,cpu"`` (or full ONNX Runtime provider names) -> the provider list, in that order."""
    if not text:
        return None
    return [_PROVIDER_NAMES.get(p.strip().lower(), p.strip()) for p in text.split(",") if p.strip()]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Where the model comes from (predict, batch): a manifest name / saved folder / Hub id, or official files."""
    p.add_argument("--model", default=None,
                   help="manifest name, a directory saved by save_pretrained, or a Hub repo id")
    p.add_argument("--config", default=None, help="official yaml (with --checkpoint): use official weights directly")
    p.add_argument("--checkpoint", default=None, help="official checkpoint (.pth / .pkl / .safetensors)")
    p.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    p.add_argument("--mode", choices=["online", "offline", "segmenter"], default=None,
                   help="segmenter: the segmenter alone, queries matched frame to frame (official MinVIS)")


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["pytorch", "onnxruntime"], default=None,
                   help="default: onnxruntime for a `dvis export` folder (--model DIR), else pytorch")
    p.add_argument("--providers", default=None, metavar="LIST",
                   help="ONNX Runtime execution providers in order, e.g. tensorrt,cuda,cpu (default cpu)")


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference.runner import InferenceOOMError
    from .io import VideoReadError

    seg = _load_segmenter(args)
    out_root = Path(args.out)
    failed = 0
    for i, src in enumerate(args.inputs):
        name = Path(src).stem or f"video{i}"
        out_dir = out_root / name if len(args.inputs) > 1 else out_root
        start, end = args.start, args.end
        if Path(src).is_dir():  # folders of frames take frame indices
            start, end = (None if v is None else int(v) for v in (start, end))
        try:
            result = seg.predict(src, max_frames=args.max_frames, stride=args.stride, start=start, end=end,
                                 window_size=args.window_size, chunk_size=args.chunk_size, progress=not args.quiet)
        except InferenceOOMError as e:
            if e.partial is not None and e.partial.num_frames:
                e.partial.meta["partial"] = True
                path = e.partial.filter(args.score_threshold).save(out_dir, video_id=i + 1)
                print(f"dvis: error: {src}: {e} (the {e.partial.num_frames} frames done are saved in {path})",
                      file=sys.stderr)
            else:
                print(f"dvis: error: {src}: {e}", file=sys.stderr)
            failed += 1
            continue
        except (VideoReadError, FileNotFoundError) as e:
            if len(args.inputs) == 1:
                raise
            print(f"dvis: error: {e}", file=sys.stderr)  # one bad video does not stop the others
            failed += 1
            continue
        if args.score_threshold:
            result = result.filter(args.score_threshold)
        path = result.save(out_dir, video_id=i + 1)
        if args.save_video:
            from .visualize import render_video
            from .visualize_panoptic import render_dense_video

            (render_video if result.task == "vis" else render_dense_video)(result, src, out_dir / "overlay.mp4")
        if args.save_id_maps and result.task == "vis":  # panoptic / semantic results are maps already
            from .visualize import save_id_maps

            save_id_maps(result, out_dir / "id_maps")
        if not args.quiet:
            what = (f"{len(result.instances)} instances" if result.task == "vis" else
                    f"{len(result.panoptic[1])} panoptic segments" if result.task == "vps" else "semantic maps")
            print(f"{src}: {what} over {result.num_frames} frames -> {path}")
    return 1 if failed else 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import predict_folder
    from .runtime import resolve_device

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.ray is not None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UserError("--ray needs Ray: pip install 'dvis_sdk[ray]'")
    # a Ray cluster's GPUs need not be on this machine: only "auto" is resolved here for --ray
    device = args.device if args.ray is not None and args.device != "auto" else str(resolve_device(args.device))
    several = args.workers > 1 or args.devices or args.ray is not None
    # with worker processes / actors the model here only feeds them (and the fingerprint): keep it off the GPU.
    # Its spec carries --dtype as asked; each worker resolves it for its own device (fp16 on a GPU worker)
    args.device = "cpu" if several else device
    with warnings.catch_warnings():
        if several:  # "fp16 runs fp32 on CPU" is true of this feeder only, not of the workers
            warnings.filterwarnings("ignore", message="fp16 is not supported on CPU")
        seg = _load_segmenter(args, window_size=args.window_size or None, chunk_size=args.chunk_size or None)
    devices = args.devices or ([device] * args.workers if several else None)
    summary = predict_folder(seg, args.src, args.out_dir, pattern=args.pattern or "*.mp4", recursive=args.recursive,
                             save_video=args.save_video, overwrite=args.overwrite, devices=devices,
                             backend="ray" if args.ray is not None else "local",
                             ray_address=None if args.ray in (None, "local") else args.ray, progress=not args.quiet,
                             stride=args.stride, max_frames=args.max_frames, score_threshold=args.score_threshold,
                             overlap=not args.no_overlap, cpus_per_worker=args.threads)
    print(summary.table(), file=sys.stderr if summary.exit_code else sys.stdout)
    return summary.exit_code


def _checksum_state(m: dict) -> str:
    if m.get("source") == "external":
        return "-"
    return "verified" if m.get("sha256") else "unverified"


def _source_column(m: dict) -> str:
    if m.get("source") == "embedded":
        return "embedded in the package"
    if m.get("source") == "external":
        # on a Hub repo without published file names (DVIS-DAQ): download by hand, nothing is guessed
        return f"{m['repo_id']} (download by hand)" if m.get("repo_id") else "local file (see download page)"
    return m.get("repo_id") or "-"


def cmd_models(args: argparse.Namespace) -> int:
    from .weights import default_model_name, list_models

    default = default_model_name()
    head = ("  name", "dataset", "AP", "source", "revision", "file", "sha256")
    rows = [(("* " if m["name"] == default else "  ") + m["name"], m.get("dataset") or "-",
             str(m.get("reported_ap") if m.get("reported_ap") is not None else
                 " ".join(f"{k} {v}" for k, v in list((m.get("reported_metrics") or {}).items())[:1]) or "-"),
             _source_column(m),
             (m.get("revision") or "-")[:12], m.get("filename") or m.get("filename_glob") or "-",
             _checksum_state(m)) for m in list_models()]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    pinned = sorted({(m["repo_id"], m["revision"]) for m in list_models() if m.get("source") == "hub"})
    for repo, rev in pinned:
        print(f"{repo} is pinned to revision {rev}; 'verified' files are checked against their sha256 after download")
    unpinned = sorted({(m["repo_id"], m["config"]) for m in list_models()
                       if m.get("source") == "external" and m.get("repo_id")})
    for repo in sorted({r for r, _ in unpinned}):
        print(f"{repo}: file names not published, no revision pinned: download the file from "
              f"https://huggingface.co/{repo} and run VideoSegmenter.from_official(CONFIG, FILE) "
              f"(CONFIG: the entry's official yaml, e.g. {next(c for r, c in unpinned if r == repo)})")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .weights import resolve_weights

    resolved = resolve_weights(args.name, cache_dir=args.cache_dir, revision=args.revision)
    print(f"{args.name}: ready ({resolved.source})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .inference.predictor import VideoSegmenter

    seg = VideoSegmenter.from_official(args.config, args.checkpoint, mode=args.mode, trust_pickle=args.trust_pickle)
    path = seg.save_pretrained(args.out_dir)
    print(f"converted -> {path} (load with VideoSegmenter.from_pretrained({str(args.out_dir)!r}))")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    if (args.config is None) != (args.checkpoint is None):
        raise UserError("--config and --checkpoint go together (official yaml + official checkpoint)")
    if args.model and args.config:
        raise UserError("give MODEL or --config/--checkpoint, not both")
    size = None
    if args.size:
        try:
            size = tuple(int(v) for v in args.size.lower().split("x"))
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise UserError(f"--size: expected HxW (e.g. 384x640), got {args.size!r}") from None
    try:
        out = export_onnx(args.model, args.out, config=args.config, checkpoint=args.checkpoint, mode=args.mode,
                          opset=args.opset, simplify=not args.no_simplify, size=size)
    except ImportError as e:
        raise UserError(str(e)) from None
    print(f"exported to {out} (run it with onnxruntime: see docs/deployment.md)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .training.finetuning import finetune

    if args.iters is not None and args.iters < 1:
        raise UserError(f"--iters must be >= 1, got {args.iters}")
    if args.val_frames and not args.val_data:
        raise UserError("--val-frames needs --val-data (the validation annotation JSON or folder)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    extra = {k: getattr(args, k) for k in ("batch_size", "grad_accum", "lr", "amp", "ckpt_every", "log_every")
             if getattr(args, k) is not None}
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    warn = lambda msg: print(f"dvis: warning: {msg}", file=sys.stderr)  # noqa: E731  (also under --quiet)
    data = args.data[0] if len(args.data) == 1 else args.data
    res = finetune(data, args.out, frames=args.frames, model=args.model, config=args.config,
                   checkpoint=args.checkpoint, mode=args.mode, stages=args.stages, preset_name=args.preset,
                   iters=args.iters, val=args.val_data, val_frames=args.val_frames, holdout=args.holdout,
                   eval_every=args.eval_every, resume=args.resume, device=args.device, seed=args.seed,
                   progress=not args.quiet, trust_pickle=args.trust_pickle, num_frames=args.num_frames,
                   noise=args.noise, noise_ratio=args.noise_ratio, data_ratio=args.data_ratio,
                   class_map=args.class_map, keep_best=not args.keep_last,
                   class_init=None if args.class_init == "none" else "auto", log=log, warn=warn, **extra)
    if not args.quiet and res.after:
        print(f"validation AP before {res.before.get('AP', float('nan')):.1f} -> after {res.after['AP']:.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dvis", description="DVIS / DVIS++ / DVIS-DAQ video instance, panoptic and semantic segmentation")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict",
                        help="segment videos: tracked instances, or panoptic / semantic maps for VPS / VSS models")
    pr.add_argument("inputs", nargs="+", help="video files or folders of frames")
    _add_model_args(pr)
    pr.add_argument("--device", default="auto")
    pr.add_argument("--dtype", choices=["fp32", "fp16", "bf16", "auto"], default="fp32", help=DTYPE_HELP)
    pr.add_argument("--out", default="out")
    pr.add_argument("--save-video", action="store_true", help="also write an overlay video")
    pr.add_argument("--save-id-maps", action="store_true",
                    help="also write id_maps/000000.png ...: 16-bit PNGs of track_id + 1 per pixel (0 = background)")
    pr.add_argument("--score-threshold", type=float, default=0.0)
    pr.add_argument("--max-frames", type=int, default=None)
    pr.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    pr.add_argument("--start", type=float, default=None, help="start time in seconds (frame index for folders)")
    pr.add_argument("--end", type=float, default=None, help="end time in seconds (frame index for folders)")
    pr.add_argument("--window-size", type=int, default=None, help="frames the segmenter runs at once")
    pr.add_argument("--chunk-size", type=int, default=None,
                    help="offline mode: frames the refiner sees at once (default 300)")
    pr.add_argument("--quiet", action="store_true")
    _add_backend_args(pr)
    pr.set_defaults(func=cmd_predict)

    add_eval_parser(sub)

    ba = sub.add_parser("batch", help="segment every video of a folder / glob / list (resumable)",
                        description="Segment every video of SRC into OUT_DIR: OUT_DIR/<relative path>/results.json "
                                    "per video, a merged results.json (YouTube-VIS submission format), videos.json "
                                    "and manifest.jsonl. Rerunning resumes; exit code 1 if a video failed, 130 if "
                                    "interrupted. See docs/batch.md.")
    ba.add_argument("src", help="a folder, a glob ('data/**/*.mp4', quoted) or a text file listing videos")
    ba.add_argument("out_dir")
    _add_model_args(ba)
    ba.add_argument("--device", default="auto", help="device of the worker(s) when --devices is not given")
    ba.add_argument("--dtype", choices=["fp32", "fp16", "bf16", "auto"], default="fp32", help=DTYPE_HELP)
    ba.add_argument("--pattern", action="append", default=None,
                    help="file name pattern of the videos in a folder (default '*.mp4'; repeat for several)")
    ba.add_argument("--recursive", action="store_true", help="also look in sub-folders")
    ba.add_argument("--save-video", action="store_true", help="also write an overlay video per input")
    ba.add_argument("--workers", type=int, default=1, help="worker processes (CPU: each gets cores/N threads)")
    ba.add_argument("--devices", default=None, help="one worker per device, e.g. cuda:0,cuda:1")
    ba.add_argument("--threads", type=int, default=None, help="CPU threads per worker")
    ba.add_argument("--overwrite", action="store_true", help="reprocess videos that already have a result")
    ba.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run the workers as Ray actors on the cluster at ADDRESS (default: RAY_ADDRESS or a "
                         "local Ray)")
    ba.add_argument("--score-threshold", type=float, default=0.0)
    ba.add_argument("--max-frames", type=int, default=None)
    ba.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    ba.add_argument("--window-size", type=int, default=None, help="frames the segmenter runs at once")
    ba.add_argument("--chunk-size", type=int, default=None, help="offline mode: frames the refiner sees at once")
    ba.add_argument("--no-overlap", action="store_true", help="do not decode the next video during inference")
    ba.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_backend_args(ba)
    ba.set_defaults(func=cmd_batch)

    ex = sub.add_parser("export", help="export a model to ONNX graphs for ONNX Runtime / TensorRT (docs/deployment.md)")
    ex.add_argument("model", nargs="?", default=None,
                    help="manifest name or a directory saved by save_pretrained (or use --config/--checkpoint)")
    ex.add_argument("--format", choices=["onnx"], default="onnx")
    ex.add_argument("--out", required=True, help="output folder (ONNX graphs + config.json)")
    ex.add_argument("--config", default=None, help="official yaml (with --checkpoint)")
    ex.add_argument("--checkpoint", default=None, help="official checkpoint (.pth / .safetensors)")
    ex.add_argument("--mode", choices=["online", "offline", "segmenter"], default=None,
                    help="segmenter: the segmenter alone, queries matched frame to frame (official MinVIS)")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--no-simplify", action="store_true", help="do not run onnxslim on the graphs")
    ex.add_argument("--size", default=None, metavar="HxW",
                    help="frame size the graphs are traced at (default 128x160; sizes stay dynamic except for "
                         "ViT-Adapter backbones, which then only run at this size)")
    ex.set_defaults(func=cmd_export)

    sub.add_parser("models", help="list the models of weights_manifest.json").set_defaults(func=cmd_models)

    dl = sub.add_parser("download", help="download (and convert) a manifest model into the cache")
    dl.add_argument("name")
    dl.add_argument("--cache-dir", default=None)
    dl.add_argument("--revision", default=None)
    dl.set_defaults(func=cmd_download)

    cv = sub.add_parser("convert", help="official yaml + checkpoint -> a save_pretrained directory")
    cv.add_argument("config")
    cv.add_argument("checkpoint")
    cv.add_argument("out_dir")
    cv.add_argument("--mode", choices=["online", "offline", "segmenter"], default=None,
                    help="segmenter: the segmenter alone, queries matched frame to frame (official MinVIS)")
    cv.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    cv.set_defaults(func=cmd_convert)

    ft = sub.add_parser("finetune", help="fine-tune a model on video (YouTube-VIS) or image (COCO) labels (see "
                        "docs/training.md)",
                        description="Fine-tune the chosen stages (segmenter, tracker, refiner) of a model on "
                                    "YouTube-VIS videos and / or COCO images (each image becomes a pseudo-video "
                                    "clip); the output folder loads with VideoSegmenter.from_pretrained.")
    ft.add_argument("--data", required=True, action="append",
                    help="YouTube-VIS folder (annotation JSON + JPEGImages/) or its JSON, or a COCO instance JSON "
                         "(file_name relative to its folder); repeat to mix datasets (classes matched by name)")
    ft.add_argument("--data-ratio", default=None, metavar="R1,R2",
                    help="sampling weight of each --data, in order (official DATASET_RATIO; default equal)")
    ft.add_argument("--class-map", default=None, metavar="OLD=NEW,...",
                    help="rename classes before matching them across datasets (OLD=- drops a class)")
    ft.add_argument("--class-init", choices=["auto", "none"], default="auto",
                    help="head rows of classes new to the model: auto = from the model's class most of their "
                         "training objects get; none = fresh")
    ft.add_argument("--frames", default=None, help="frames / images folder of a single --data, if not JPEGImages/ "
                    "(videos) or the JSON's folder (images)")
    ft.add_argument("--out", required=True, help="output folder (stage checkpoints, metrics, the fine-tuned model)")
    ft.add_argument("--model", default=None, help="manifest name or save_pretrained folder (default: the manifest's)")
    ft.add_argument("--config", default=None, help="official yaml or config.json (with --checkpoint)")
    ft.add_argument("--checkpoint", default=None, help="official / model-zoo checkpoint (.pth / .pkl / .safetensors)")
    ft.add_argument("--trust-pickle", action="store_true", help="unpickle --checkpoint without restrictions")
    ft.add_argument("--mode", choices=["online", "offline"], default=None,
                    help="offline: add a fresh refiner to an online model (train it with --stages ...,refiner)")
    ft.add_argument("--stages", default="tracker", help="comma-separated: segmenter,tracker,refiner")
    ft.add_argument("--preset", default="tiny", choices=["tiny", "small", "official"],
                    help="training schedule: tiny (tens of videos), small (hundreds), official")
    ft.add_argument("--iters", type=int, default=None, help="iterations per stage (default: the preset's)")
    ft.add_argument("--val-data", default=None, help="validation split (folder or annotation JSON)")
    ft.add_argument("--val-frames", default=None)
    ft.add_argument("--holdout", type=float, default=0,
                    help="hold out this many videos (or this fraction, if < 1) of --data for validation")
    ft.add_argument("--eval-every", type=int, default=None, help="validate every N iterations (default: at each "
                    "checkpoint)")
    ft.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    ft.add_argument("--keep-last", action="store_true", help="keep each stage's last iteration, not the one of best "
                    "validation AP")
    ft.add_argument("--noise", choices=["none", "weighted_average", "crop_concat", "shuffle", "wa", "cc", "rs"],
                    default=None, help="tracker query noise (default: the model config's)")
    ft.add_argument("--noise-ratio", type=float, default=None, help="probability that a frame is noised")
    ft.add_argument("--batch-size", type=int, default=None, help="clips per step")
    ft.add_argument("--grad-accum", type=int, default=None)
    ft.add_argument("--lr", type=float, default=None)
    ft.add_argument("--num-frames", type=int, default=None, help="frames per training clip (default per stage)")
    ft.add_argument("--device", default="auto")
    ft.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"], default=None)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--ckpt-every", type=int, default=None)
    ft.add_argument("--log-every", type=int, default=None)
    ft.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    ft.add_argument("--quiet", action="store_true")
    ft.set_defaults(func=cmd_finetune)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    from .batch import BatchLockedError
    from .io import VideoReadError, VideoWriteError
    from .official import ConversionError
    from .weights import ChecksumError, UnknownModelError, WeightsUnavailableError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `dvis models | head`
        return 0
    except KeyboardInterrupt:
        print("dvis: interrupted", file=sys.stderr)
        return 130
    except (UserError, ConversionError, ChecksumError, UnknownModelError, WeightsUnavailableError, VideoReadError,
            VideoWriteError, FileNotFoundError, ValueError, BatchLockedError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"dvis: error: {msg}", file=sys.stderr)
        return 2
    except ImportError as e:
        if "pip install" not in str(e):  # only the optional-extra messages are the user's to fix
            raise
        print(f"dvis: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if "CUDA" in str(e):
            print(f"dvis: error: {e}", file=sys.stderr)
            return 2
        raise


def entry() -> None:
    """The ``dvis`` console script: :func:`main`, then exit with its code. After an interrupt (130) every finished
    result is already on disk (atomic writes), so the process ends without interpreter finalisation: a native
    decoder thread still winding down there can otherwise abort the process (SIGABRT) instead of exiting 130."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    entry()
