"""Fine-tuning on custom video (YouTube-VIS) and image (COCO) labels, as ``dvis finetune`` does it: :func:`finetune`.

One call takes one or more datasets (:mod:`.sources`: a YouTube-VIS folder, a COCO JSON; mixed by class name with
sampling ratios), a starting model (:mod:`.start`) and the stages
to train, then runs the stage trainers in order (segmenter -> tracker -> refiner), each in ``out/<stage>/`` with its
own checkpoints, and writes the final model into ``out`` (``VideoSegmenter.from_pretrained(out)`` loads it) with
``out/finetune.json`` (the request, the load report, validation metrics before and after). ``resume=True`` skips
finished stages and continues the interrupted one from its last checkpoint (exact: step count, optimizer, RNGs).
Training resizes exactly as inference does (shortest edge to the model's test size, ``ops.preprocess``).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..models.dvis import OnlineDVIS
from .config import PRESETS, TrainConfig, preset
from .datasets import YTVISAnnotations
from .loop import BEST_DIR
from .mixing import parse_class_map
from .pseudo_video import PseudoVideoAugmentation
from .sources import TrainSource, class_names_of, find_dataset, open_sources, ratios_of, stage_dataset
from .start import STAGES, FinetuneError, LoadReport, load_start_model, module_of

__all__ = ["finetune", "FinetuneResult", "FinetuneError", "find_dataset", "split_holdout", "STAGE_CLIPS"]

PathLike = Union[str, Path]
SUMMARY = "finetune.json"
DONE = "stage_done.json"
SEGMENTER_ONLY = "segmenter_only"  # where a better segmenter-only model is written beside the final one
MAX_PROBLEM_LINES = 20

#: clip sampling per stage (official DVIS++: 5-frame contiguous tracker clips, long reversible refiner clips)
STAGE_CLIPS: Dict[str, Dict[str, Any]] = {
    "segmenter": {"num_frames": 2, "frame_range": 10},
    "tracker": {"num_frames": 5, "frame_range": 2},
    "refiner": {"num_frames": 9, "frame_range": 4, "reverse_prob": 0.5},
}


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: the output folder, the stages trained, validation metrics before / after
    (empty without a validation split) and the load report."""

    out_dir: Path
    stages: List[str]
    before: Dict[str, float] = field(default_factory=dict)
    after: Dict[str, float] = field(default_factory=dict)
    report: Optional[LoadReport] = None


def split_holdout(ann: PathLike, holdout: float, out_dir: PathLike, seed: int = 0) -> Tuple[Path, Path]:
    """Write ``out_dir/train.json`` and ``out_dir/val.json``: ``holdout`` videos (a count, or a fraction if < 1)
    drawn with ``seed`` are the validation split. Kept as is if both exist (a resumed run sees the same split)."""
    out_dir = Path(out_dir)
    tr, va = out_dir / "train.json", out_dir / "val.json"
    if tr.is_file() and va.is_file():
        return tr, va
    data = json.loads(Path(ann).read_text())
    videos = data.get("videos") or []
    n = int(round(holdout * len(videos))) if holdout < 1 else int(holdout)
    n = max(1, n) if holdout > 0 else 0
    if n >= len(videos):
        raise FinetuneError(f"cannot hold out {n} of {len(videos)} videos: at least one must remain for training")
    pick = np.random.default_rng(seed).permutation(len(videos))[:n]
    val_ids = {videos[i]["id"] for i in pick}
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, keep in ((tr, lambda i: i not in val_ids), (va, lambda i: i in val_ids)):
        part = {**data, "videos": [v for v in videos if keep(v["id"])],
                "annotations": [a for a in data.get("annotations") or [] if keep(a["video_id"])]}
        path.write_text(json.dumps(part))
    return tr, va


def _parse_stages(stages: Union[str, Sequence[str]]) -> List[str]:
    items = [s.strip() for s in (stages.split(",") if isinstance(stages, str) else stages) if s.strip()]
    bad = [s for s in items if s not in STAGES]
    if bad or not items:
        raise FinetuneError(f"unknown stage(s) {bad or items}; choose from {','.join(STAGES)}")
    return [s for s in STAGES if s in items]


def _trainer(stage: str, model: OnlineDVIS, dataset: Any, out: Path, cfg: TrainConfig,
             val: Optional[Tuple[Path, Path]], noise: Optional[str], noise_ratio: Optional[float]):
    from .stages import DenoisingTrainer, RefinerTrainer, SegmenterTrainer

    if stage == "segmenter":
        return SegmenterTrainer(model, dataset, out, cfg, val)
    if stage == "tracker":
        return DenoisingTrainer(model, dataset, out, cfg, val, noise=noise, noise_ratio=noise_ratio)
    return RefinerTrainer(model, dataset, out, cfg, val)


def _short(metrics: Dict[str, Any]) -> str:
    keys = [k for k in ("AP", "AP50", "AP75", "IDF1", "HOTA") if k in metrics]
    text = " ".join(f"{k} {metrics[k]:.1f}" for k in keys)
    alone = metrics.get("segmenter_only")
    if isinstance(alone, dict):
        text += " | segmenter alone (MinVIS association): " + _short(alone)
    return text


def _warn_lines(lines: Sequence[str], warn: Callable[[str], None]) -> None:
    for line in lines[:MAX_PROBLEM_LINES]:
        warn(line)
    if len(lines) > MAX_PROBLEM_LINES:
        warn(f"... and {len(lines) - MAX_PROBLEM_LINES} more skipped entries")


def _segmenter_only_output(net: OnlineDVIS, todo: Sequence[str], report: LoadReport,
                           class_names: Sequence[str]) -> bool:
    """Whether the run's model is the segmenter alone (MinVIS association): only the segmenter is trained and the
    tracker cannot serve these classes (its class head is new, it lacks weights, or the class names changed)."""
    if net.cfg.mode == "segmenter":
        return True
    if todo != ["segmenter"]:
        return False
    tracker_new = bool(report.missing.get("tracker")) or any(module_of(k) == "tracker" for k in report.reinitialised)
    renamed = report.start_class_names is not None and list(report.start_class_names) != list(class_names)
    return tracker_new or renamed


def finetune(data: Union[PathLike, Sequence[PathLike]], out: PathLike, *, frames: Optional[PathLike] = None,
             model: Optional[PathLike] = None, config: Optional[PathLike] = None,
             checkpoint: Optional[PathLike] = None, mode: Optional[str] = None,
             stages: Union[str, Sequence[str]] = ("tracker",), preset_name: str = "tiny",
             iters: Optional[int] = None, val: Optional[PathLike] = None, val_frames: Optional[PathLike] = None,
             holdout: float = 0, eval_every: Optional[int] = None, evaluate_before: bool = True,
             resume: bool = False, device: str = "auto", seed: int = 0, progress: bool = True,
             trust_pickle: bool = False, num_frames: Optional[int] = None, noise: Optional[str] = None,
             noise_ratio: Optional[float] = None, data_ratio: Union[str, Sequence[float], None] = None,
             class_map: Union[str, Mapping[str, str], None] = None, keep_best: bool = True,
             pseudo_augmentation: Optional[PseudoVideoAugmentation] = None,
             class_init: Union[str, Mapping[str, str], None] = "auto",
             log: Optional[Callable[[str], None]] = None, warn: Optional[Callable[[str], None]] = None,
             **train_overrides: Any) -> FinetuneResult:
    """Fine-tune a model on video (YouTube-VIS) and / or image (COCO) labels; returns a :class:`FinetuneResult`.

    Args:
        data: a dataset folder or annotation JSON, or a list of them to mix: YouTube-VIS (JSON + ``JPEGImages/``,
            see :func:`find_dataset`) or COCO instance JSON (``file_name`` relative to its folder; each image
            becomes a pseudo-video clip, :mod:`.pseudo_video`). ``frames`` overrides the frames / images folder
            of a single dataset.
        out: output folder: ``<stage>/`` (checkpoints, ``metrics.jsonl``, ``best/``), ``splits/``, the final
            model, ``finetune.json``.
        model: manifest name or ``save_pretrained`` folder (default: the manifest's default model); or ``config``
            (official yaml or our ``config.json``) + ``checkpoint`` (``.pth`` / ``.pkl`` / ``.safetensors``, read
            with a restricted unpickler unless ``trust_pickle``).
        mode: ``"offline"`` turns an online model into an offline one with a fresh refiner (train it with the
            ``refiner`` stage); ``"online"`` drops a refiner.
        stages: any of ``segmenter``, ``tracker``, ``refiner`` (a list or ``"segmenter,tracker"``); run in that order.
            Training only the segmenter for classes the tracker does not know saves a segmenter-only video model
            (``mode="segmenter"``: queries associated frame to frame by embedding similarity, the official MinVIS).
        preset_name: :data:`~dvis_sdk.training.config.PRESETS` (``tiny`` tens of videos, ``small`` hundreds,
            ``official``); ``iters`` and ``train_overrides`` (any :class:`TrainConfig` field) override it.
        val / val_frames: a YouTube-VIS validation split (folder or JSON); or ``holdout`` videos (count, or fraction
            if < 1) of a single video ``data`` held out (written to ``out/splits``). Evaluated before training
            (``evaluate_before``), every ``eval_every`` iterations (default: at each checkpoint) and at the end: AP,
            and IDF1 / HOTA with ``trackeval`` installed; a model with a tracker is also scored with its segmenter
            alone. Validation classes are matched to the model's by name.
        resume: continue a killed run in ``out``: finished stages are kept, the current one resumes exactly.
        num_frames: frames per training clip for every stage (default :data:`STAGE_CLIPS`).
        noise / noise_ratio: the tracker's query noise (default: the model config's).
        data_ratio: sampling weight of each ``data`` set (official ``DATASET_RATIO``; ``"1,0.75"`` or a list).
        class_map: renames classes before they are matched across sets (``{"person": "human"}`` or
            ``"person=human,bicycle=-"``; ``-`` drops a class).
        keep_best: with validation, keep each stage's iteration of best validation AP rather than its last.
        pseudo_augmentation: how images become clips (default: the official pseudo-video settings).
        class_init: where the head rows of classes the starting model does not know by name start: ``"auto"``
            from the start class most of their training objects get from the starting model
            (:mod:`.class_transfer`), a ``{new: start class}`` dict, or None (fresh rows).
        log: where progress messages go (default: stderr); ``warn``: where skipped entries and other warnings go
            (default: stderr; keep it when silencing ``log``).
    """
    say = log or (lambda msg: print(msg, file=sys.stderr))
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    out = Path(out).expanduser()
    todo = _parse_stages(stages)
    if preset_name not in PRESETS:
        raise FinetuneError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    if mode not in (None, "online", "offline"):
        raise FinetuneError(f"mode must be 'online' or 'offline', got {mode!r}")
    if iters is not None and iters < 1:
        raise FinetuneError(f"iters must be >= 1, got {iters}")
    if (out / SUMMARY).is_file() and not resume:
        raise FinetuneError(f"{out} already holds a fine-tuning run: pass --resume to continue it or choose another "
                            "output folder")
    sources = open_sources(data, frames)
    for s in sources:
        _warn_lines(s.problems, warn)
    ratios = ratios_of(data_ratio, len(sources))
    cmap = parse_class_map(class_map) if isinstance(class_map, str) else dict(class_map or {})
    class_names, unmatched = class_names_of(sources, cmap)
    if unmatched:
        warn(unmatched)
    val_split: Optional[Tuple[Path, Path]] = None
    if val is not None:
        if holdout:
            raise FinetuneError("give either a validation split or a hold-out, not both")
        val_split = find_dataset(val, val_frames)
    elif holdout:
        if len(sources) != 1 or sources[0].kind != "ytvis":
            raise FinetuneError("a hold-out is drawn from a single video dataset; give a validation split (--val-data)")
        tr, va = split_holdout(sources[0].path, holdout, out / "splits", seed)
        sources = [TrainSource(tr, sources[0].root, YTVISAnnotations(tr, sources[0].root), "ytvis")]
        val_split = (va, sources[0].root)
    if val_split is not None:
        from .validation import category_mapping

        val_ann = YTVISAnnotations(*val_split)  # fail now, not after a stage
        _, missing = category_mapping(class_names, val_ann)
        if missing:
            say(f"validation: {val_split[0]} has no class {missing}: their predictions are not scored")
        unknown = [n for n in val_ann.class_names if n not in class_names]
        if unknown:
            warn(f"validation: the model learns no class {unknown} of {val_split[0]}: they score 0 AP (rename with "
                 "--class-map, or drop them from the validation file)")

    init = _class_init(class_init, class_names, sources, cmap, ratios, model, config, checkpoint, trust_pickle,
                       seed) if class_init == "auto" else dict(class_init or {})
    net, report = load_start_model(class_names, todo, model=model, config=config, checkpoint=checkpoint,
                                   mode=mode, trust_pickle=trust_pickle, seed=seed, class_init=init)
    if init:
        report.notes.append("new classes start from the class the starting model gives most of their objects: " +
                            ", ".join(f"{k} <- {v}" for k, v in init.items()) + " (class_init=None: fresh rows)")
    if "refiner" in todo and getattr(net, "refiner", None) is None:
        raise FinetuneError("the refiner stage needs an offline model: this one is online; pass mode='offline' "
                            "(--mode offline) to add a fresh refiner to it")
    if _segmenter_only_output(net, todo, report, class_names) and net.cfg.mode != "segmenter":
        from ..models.minvis import segmenter_only

        net = segmenter_only(net, class_names)
        report.notes = [n for n in report.notes if not n.startswith("the tracker ")]
        report.notes.append("only the segmenter is trained for classes its tracker does not know: the model is the "
                            "segmenter alone (queries matched frame to frame, official MinVIS); train the tracker "
                            "too (--stages segmenter,tracker) for a DVIS++ model")
    for line in report.lines():
        say(line)
    overrides = {"seed": seed, "device": device, "progress": progress, **train_overrides}
    if iters is not None:
        overrides["iters"] = iters
    try:
        cfg = preset(preset_name, **overrides)
    except TypeError as e:
        raise FinetuneError(f"unknown training setting: {e}") from None
    if val_split is not None:
        cfg = cfg.replace(eval_every=cfg.ckpt_every if eval_every is None else eval_every)

    out.mkdir(parents=True, exist_ok=True)
    summary: Dict[str, Any] = json.loads((out / SUMMARY).read_text()) if (out / SUMMARY).is_file() else {}
    if summary.get("stages") not in (None, todo):
        raise FinetuneError(f"{out} holds a run of the stages {','.join(summary['stages'])}: resume it with the same "
                            "stages, or choose another output folder")
    summary.update({"data": [str(s.path) for s in sources], "kinds": [s.kind for s in sources],
                    "frames": [str(s.root) for s in sources], "data_ratio": ratios, "class_map": cmap,
                    "val": [str(p) for p in val_split] if val_split else None, "stages": todo,
                    "preset": preset_name, "start": report.to_dict(), "class_names": list(class_names),
                    "model_mode": net.cfg.mode})
    result = FinetuneResult(out, todo, report=report)
    if val_split is not None and evaluate_before:
        if "before" not in summary:
            summary["before"] = _validate(net, val_split, device)
        result.before = summary["before"]
        say(f"validation before: {_short(result.before)}")
    (out / SUMMARY).write_text(json.dumps(_clean(summary), indent=2))

    plan = _Plan(sources, cfg, val_split, resume, num_frames, noise, noise_ratio, cmap, ratios, keep_best,
                 pseudo_augmentation)
    kept_eval: Optional[Dict[str, Any]] = None
    for stage in todo:
        net, kept_eval = _run_stage(stage, net, out, plan, say)

    from ..weights import write_pretrained
    from .utils import export_state_dict

    write_pretrained(out, net.cfg, export_state_dict(net))
    if val_split is not None:
        # the last stage validated the kept weights already (the same model as the export)
        result.after = _validate(net, val_split, device, known=kept_eval)
        summary["after"] = result.after
        say(f"validation after: {_short(result.after)}")
        verdict = _tracker_verdict(net, result.after, out)
        if verdict:
            warn(verdict)
    summary["done"] = True
    (out / SUMMARY).write_text(json.dumps(_clean(summary), indent=2))
    kind = "segmenter-only video model" if net.cfg.mode == "segmenter" else f"{net.cfg.mode} model"
    say(f"fine-tuned ({','.join(todo)}) -> {out}: a {kind} (load with VideoSegmenter.from_pretrained({str(out)!r}))")
    return result


def _class_init(mode: str, class_names: Sequence[str], sources: Sequence[TrainSource], cmap: Mapping[str, str],
                ratios: Optional[List[float]], model: Optional[PathLike], config: Optional[PathLike],
                checkpoint: Optional[PathLike], trust_pickle: bool, seed: int) -> Dict[str, str]:
    """``class_init="auto"``: vote with the unchanged starting model on a few training clips (still frames)."""
    from .class_transfer import class_init_from_votes, vote_classes
    from .start import load_source_model

    start = load_source_model(model=model, config=config, checkpoint=checkpoint, trust_pickle=trust_pickle)
    old = list(start.cfg.class_names or [])
    if not old or all(n in old for n in class_names):
        return {}
    still = PseudoVideoAugmentation(rotation=(0.0, 0.0), crop_prob=0.0, flip_prob=0.0)
    inp = start.cfg.input
    data = stage_dataset(sources, {"num_frames": 1, "frame_range": 1}, inp.min_size_test, inp.max_size_test, cmap,
                         ratios, still)
    return class_init_from_votes(vote_classes(start, data, seed=seed), class_names, old)


def _validate(net: OnlineDVIS, val: Tuple[Path, Path], device: str,
              known: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    from ..runtime import resolve_device
    from .validation import evaluate_with_segmenter_only

    return evaluate_with_segmenter_only(net, val[0], val[1], device=resolve_device(device), known=known)


def _tracker_verdict(net: OnlineDVIS, after: Mapping[str, Any], out: Path) -> Optional[str]:
    """One line when the model's tracker scores a lower AP than its segmenter alone; that model is then written to
    ``out/segmenter_only`` so the line can say how to run it."""
    alone = after.get("segmenter_only")
    if not isinstance(alone, dict) or not alone.get("AP", float("nan")) > after.get("AP", float("nan")):
        return None  # also when either AP is undefined (nan: nothing to score)
    from ..models.minvis import segmenter_only
    from ..weights import write_pretrained
    from .utils import export_state_dict

    m = segmenter_only(net)
    write_pretrained(out / SEGMENTER_ONLY, m.cfg, export_state_dict(m))
    idf1 = (f", IDF1 {after['IDF1']:.1f} vs {alone['IDF1']:.1f}" if "IDF1" in after and "IDF1" in alone else "")
    return (f"the trained tracker is worse than the segmenter alone on the validation set (AP {after['AP']:.1f} vs "
            f"{alone['AP']:.1f}{idf1}): run the segmenter-only model with VideoSegmenter.from_pretrained("
            f"{str(out / SEGMENTER_ONLY)!r}) or `dvis predict --model {out / SEGMENTER_ONLY}`")


@dataclass
class _Plan:
    """What every stage of one run shares."""

    sources: List[TrainSource]
    cfg: TrainConfig
    val: Optional[Tuple[Path, Path]]
    resume: bool
    num_frames: Optional[int]
    noise: Optional[str]
    noise_ratio: Optional[float]
    class_map: Dict[str, str]
    ratios: Optional[List[float]]
    keep_best: bool
    augmentation: Optional[PseudoVideoAugmentation]


def _run_stage(stage: str, net: OnlineDVIS, out: Path, plan: _Plan, say: Callable[[str], None]
               ) -> Tuple[OnlineDVIS, Optional[Dict[str, Any]]]:
    """Train one stage in ``out/<stage>`` (or reload it when a resumed run finished it); with validation, the
    iteration of best validation AP is kept (``plan.keep_best``). Returns the model and its validation metrics
    (None when it was not validated at the kept iteration)."""
    from ..weights import load_pretrained
    from .checkpoint import CHECKPOINT_DIR

    sdir = out / stage
    if plan.resume and (sdir / DONE).is_file():
        _, sd = load_pretrained(sdir)
        net.load_state_dict(sd, strict=True)
        net.cfg = type(net.cfg).from_json(sdir / "config.json")
        say(f"{stage}: already trained (kept from {sdir})")
        return net, None
    clips = dict(STAGE_CLIPS[stage])
    if plan.num_frames is not None:
        clips.update(num_frames=plan.num_frames, frame_range=max(plan.num_frames // 2, 1))
    inp = net.cfg.input
    # the inference resize: shortest edge to the test size, capped by the test max size (ops.preprocess)
    dataset = stage_dataset(plan.sources, clips, inp.min_size_test, inp.max_size_test, plan.class_map, plan.ratios,
                            plan.augmentation)
    cfg = plan.cfg
    trainer = _trainer(stage, net, dataset, sdir, cfg, plan.val, plan.noise, plan.noise_ratio)
    has_ckpt = (sdir / CHECKPOINT_DIR / "last").is_file()
    if has_ckpt and plan.resume:
        say(f"{stage}: resuming from iteration {trainer.resume()}")
    elif has_ckpt:
        raise FinetuneError(f"{sdir} holds checkpoints of an earlier run: pass --resume or choose another output")
    elif (sdir / "metrics.jsonl").is_file():
        (sdir / "metrics.jsonl").unlink()  # killed before its first checkpoint: starts over
    what = " + ".join(s.describe() for s in plan.sources)
    say(f"{stage}: training {cfg.iters} iterations on {what} ({dataset.num_frames}-frame clips)")
    trainer.train()
    best, last = trainer.best_eval, trainer.last_eval
    kept, kept_eval = trainer.iter, last
    if plan.keep_best and best is not None and last is not None and best["AP"] > last.get("AP", float("-inf")):
        _, sd = load_pretrained(sdir / BEST_DIR)
        net.load_state_dict(sd, strict=True)
        kept, kept_eval = int(best["iter"]), {k: v for k, v in best.items() if k != "iter"}
        say(f"{stage}: kept iteration {kept} (validation AP {best['AP']:.1f}) rather than the last, {trainer.iter} "
            f"(AP {last['AP']:.1f})")
        from ..weights import write_pretrained
        from .utils import export_state_dict

        write_pretrained(sdir, net.cfg, export_state_dict(net))
    (sdir / DONE).write_text(json.dumps({"iter": trainer.iter, "kept_iter": kept, "last_eval": _clean(last),
                                         "best_eval": _clean(best)}))
    return trainer.model, kept_eval


def _clean(x: Any) -> Any:
    from .checkpoint import jsonable

    return jsonable(x)
