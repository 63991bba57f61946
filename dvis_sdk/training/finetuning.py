"""Fine-tuning on a custom YouTube-VIS dataset, as ``dvis finetune`` does it: :func:`finetune`.

One call takes a dataset folder (annotation JSON + ``JPEGImages/``), a starting model (:mod:`.start`) and the stages
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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..models.dvis import OnlineDVIS
from .config import PRESETS, TrainConfig, preset
from .datasets import DatasetError, VideoClipDataset, YTVISAnnotations
from .start import STAGES, FinetuneError, LoadReport, load_start_model

__all__ = ["finetune", "FinetuneResult", "FinetuneError", "find_dataset", "split_holdout", "STAGE_CLIPS"]

PathLike = Union[str, Path]
SUMMARY = "finetune.json"
DONE = "stage_done.json"
_ANN_NAMES = ("annotations.json", "train.json", "instances.json", "valid.json", "val.json")

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


def find_dataset(data: PathLike, frames: Optional[PathLike] = None) -> Tuple[Path, Path]:
    """``(annotation json, frames folder)`` of a YouTube-VIS dataset given as its folder or its JSON file.

    A folder holds one annotation JSON (``annotations.json`` / ``train.json`` / ... or the only ``*.json``) and the
    frames in ``JPEGImages/`` (or ``<split>/JPEGImages/``, the official layout); a JSON file's frames are looked for
    beside it. ``frames`` overrides the frames folder.
    """
    p = Path(data).expanduser()
    if p.is_dir():
        cands = [p / n for n in _ANN_NAMES if (p / n).is_file()] or sorted(p.glob("*.json"))
        if not cands:
            raise DatasetError(f"no annotation JSON in {p} (expected annotations.json / train.json / one *.json)")
        if len(cands) > 1 and cands[0].name not in _ANN_NAMES:
            raise DatasetError(f"several JSON files in {p} ({[c.name for c in cands]}): pass the annotation file")
        ann = cands[0]
    elif p.is_file():
        ann = p
    else:
        raise DatasetError(f"annotation file not found: {p}")
    if frames is not None:
        root = Path(frames).expanduser()
    else:
        base = ann.parent
        opts = [base / "JPEGImages", base / ann.stem / "JPEGImages", base]
        root = next((o for o in opts[:2] if o.is_dir()), None)
        if root is None:
            raise DatasetError(f"no JPEGImages folder next to {ann} (looked in {opts[0]} and {opts[1]}); pass the "
                               "frames folder (--frames)")
    if not root.is_dir():
        raise DatasetError(f"frames folder not found: {root}")
    return ann, root


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


def _trainer(stage: str, model: OnlineDVIS, dataset: VideoClipDataset, out: Path, cfg: TrainConfig,
             val: Optional[Tuple[Path, Path]], noise: Optional[str], noise_ratio: Optional[float]):
    from .stages import DenoisingTrainer, RefinerTrainer, SegmenterTrainer

    if stage == "segmenter":
        return SegmenterTrainer(model, dataset, out, cfg, val)
    if stage == "tracker":
        return DenoisingTrainer(model, dataset, out, cfg, val, noise=noise, noise_ratio=noise_ratio)
    return RefinerTrainer(model, dataset, out, cfg, val)


def _evaluate(model: OnlineDVIS, val: Tuple[Path, Path], device: str) -> Dict[str, float]:
    from ..runtime import resolve_device
    from .validation import evaluate_model

    return evaluate_model(model, val[0], val[1], device=resolve_device(device))


def _short(metrics: Dict[str, float]) -> str:
    keys = [k for k in ("AP", "AP50", "AP75", "IDF1", "HOTA") if k in metrics]
    return " ".join(f"{k} {metrics[k]:.1f}" for k in keys)


def finetune(data: PathLike, out: PathLike, *, frames: Optional[PathLike] = None, model: Optional[PathLike] = None,
             config: Optional[PathLike] = None, checkpoint: Optional[PathLike] = None, mode: Optional[str] = None,
             stages: Union[str, Sequence[str]] = ("tracker",), preset_name: str = "tiny",
             iters: Optional[int] = None, val: Optional[PathLike] = None, val_frames: Optional[PathLike] = None,
             holdout: float = 0, eval_every: Optional[int] = None, evaluate_before: bool = True,
             resume: bool = False, device: str = "auto", seed: int = 0, progress: bool = True,
             trust_pickle: bool = False, num_frames: Optional[int] = None, noise: Optional[str] = None,
             noise_ratio: Optional[float] = None, log: Optional[Callable[[str], None]] = None,
             **train_overrides: Any) -> FinetuneResult:
    """Fine-tune a model on a YouTube-VIS dataset; returns a :class:`FinetuneResult`.

    Args:
        data: the dataset folder (annotation JSON + ``JPEGImages/``) or its annotation JSON (see
            :func:`find_dataset`; ``frames`` overrides the frames folder).
        out: output folder: ``<stage>/`` (checkpoints, ``metrics.jsonl``), ``splits/``, the final model,
            ``finetune.json``.
        model: manifest name or ``save_pretrained`` folder (default: the manifest's default model); or ``config``
            (official yaml or our ``config.json``) + ``checkpoint`` (``.pth`` / ``.pkl`` / ``.safetensors``, read
            with a restricted unpickler unless ``trust_pickle``).
        mode: ``"offline"`` turns an online model into an offline one with a fresh refiner (train it with the
            ``refiner`` stage); ``"online"`` drops a refiner.
        stages: any of ``segmenter``, ``tracker``, ``refiner`` (a list or ``"segmenter,tracker"``); run in that order.
        preset_name: :data:`~dvis_sdk.training.config.PRESETS` (``tiny`` tens of videos, ``small`` hundreds,
            ``official``); ``iters`` and ``train_overrides`` (any :class:`TrainConfig` field) override it.
        val / val_frames: a validation split (folder or JSON); or ``holdout`` videos (count, or fraction if < 1)
            of ``data`` held out (written to ``out/splits``). Evaluated before training (``evaluate_before``),
            every ``eval_every`` iterations (default: at each checkpoint) and at the end: AP, and IDF1 / HOTA with
            ``trackeval`` installed.
        resume: continue a killed run in ``out``: finished stages are kept, the current one resumes exactly.
        num_frames: frames per training clip for every stage (default :data:`STAGE_CLIPS`).
        noise / noise_ratio: the tracker's query noise (default: the model config's).
        log: where progress messages go (default: stderr).
    """
    say = log or (lambda msg: print(msg, file=sys.stderr))
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
    ann, root = find_dataset(data, frames)
    val_split: Optional[Tuple[Path, Path]] = None
    if val is not None:
        if holdout:
            raise FinetuneError("give either a validation split or a hold-out, not both")
        val_split = find_dataset(val, val_frames)
    elif holdout:
        ann, va = split_holdout(ann, holdout, out / "splits", seed)
        val_split = (va, root)
    train_ann = YTVISAnnotations(ann, root)
    if val_split is not None:
        YTVISAnnotations(*val_split)  # fail now, not after the first stage

    net, report = load_start_model(train_ann.class_names, todo, model=model, config=config, checkpoint=checkpoint,
                                   mode=mode, trust_pickle=trust_pickle, seed=seed)
    if "refiner" in todo and getattr(net, "refiner", None) is None:
        raise FinetuneError("the refiner stage needs an offline model: this one is online; pass mode='offline' "
                            "(--mode offline) to add a fresh refiner to it")
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
    summary.update({"data": str(ann), "frames": str(root), "val": [str(p) for p in val_split] if val_split else None,
                    "stages": todo, "preset": preset_name, "start": report.to_dict(),
                    "class_names": list(train_ann.class_names)})
    result = FinetuneResult(out, todo, report=report)
    if val_split is not None and evaluate_before:
        if "before" not in summary:
            summary["before"] = _evaluate(net, val_split, device)
        result.before = summary["before"]
        say(f"validation before: {_short(result.before)}")
    (out / SUMMARY).write_text(json.dumps(_clean(summary), indent=2))

    last_eval: Optional[Dict[str, float]] = None
    for stage in todo:
        net, last_eval = _run_stage(stage, net, train_ann, out, cfg, val_split, resume, num_frames, noise,
                                    noise_ratio, say)

    from ..weights import write_pretrained
    from .utils import export_state_dict

    write_pretrained(out, net.cfg, export_state_dict(net))
    if val_split is not None:
        # the last stage validated its final weights already (the same model as the export)
        result.after = last_eval if last_eval is not None else _evaluate(net, val_split, device)
        summary["after"] = result.after
        say(f"validation after: {_short(result.after)}")
    summary["done"] = True
    (out / SUMMARY).write_text(json.dumps(_clean(summary), indent=2))
    say(f"fine-tuned ({','.join(todo)}) -> {out} (load with VideoSegmenter.from_pretrained({str(out)!r}))")
    return result


def _run_stage(stage: str, net: OnlineDVIS, ann: YTVISAnnotations, out: Path, cfg: TrainConfig,
               val: Optional[Tuple[Path, Path]], resume: bool, num_frames: Optional[int], noise: Optional[str],
               noise_ratio: Optional[float],
               say: Callable[[str], None]) -> Tuple[OnlineDVIS, Optional[Dict[str, float]]]:
    """Train one stage in ``out/<stage>`` (or reload it when a resumed run finished it); returns the model and
    its validation metrics at the last iteration (None when not validated there)."""
    from .checkpoint import CHECKPOINT_DIR

    sdir = out / stage
    if resume and (sdir / DONE).is_file():
        from ..weights import load_pretrained

        _, sd = load_pretrained(sdir)
        net.load_state_dict(sd, strict=True)
        net.cfg = type(net.cfg).from_json(sdir / "config.json")
        say(f"{stage}: already trained (kept from {sdir})")
        return net, None
    clips = dict(STAGE_CLIPS[stage])
    if num_frames is not None:
        clips.update(num_frames=num_frames, frame_range=max(num_frames // 2, 1))
    inp = net.cfg.input
    # the inference resize: shortest edge to the test size, capped by the test max size (ops.preprocess)
    dataset = VideoClipDataset(ann, min_sizes=(inp.min_size_test,), max_size=inp.max_size_test, **clips)
    trainer = _trainer(stage, net, dataset, sdir, cfg, val, noise, noise_ratio)
    has_ckpt = (sdir / CHECKPOINT_DIR / "last").is_file()
    if has_ckpt and resume:
        say(f"{stage}: resuming from iteration {trainer.resume()}")
    elif has_ckpt:
        raise FinetuneError(f"{sdir} holds checkpoints of an earlier run: pass --resume or choose another output")
    elif (sdir / "metrics.jsonl").is_file():
        (sdir / "metrics.jsonl").unlink()  # killed before its first checkpoint: starts over
    say(f"{stage}: training {cfg.iters} iterations on {len(ann)} videos ({dataset.num_frames}-frame clips)")
    trainer.train()
    (sdir / DONE).write_text(json.dumps({"iter": trainer.iter, "last_eval": _clean(trainer.last_eval)}))
    return trainer.model, trainer.last_eval


def _clean(x: Any) -> Any:
    from .checkpoint import jsonable

    return jsonable(x)
