"""The starting model of a fine-tuning run: a manifest name, a ``save_pretrained`` folder, or an official yaml (or our
``config.json``) + checkpoint (``.pth`` / model-zoo ``.pkl`` / ``.safetensors``), adapted to the dataset's classes
and loaded non-strictly with a report of what was loaded, re-initialised, missing and ignored.

The stages run in order (segmenter -> tracker -> refiner); training one needs every module before it loaded or
trained in the same run, so weights missing there are an error, while a module after the last trained stage may
stay untrained (reported: e.g. a Mask2Former segmenter checkpoint trained with ``stages=("segmenter",)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..config import DVISConfig
from ..models.dvis import OnlineDVIS, build_model

__all__ = ["STAGES", "STAGE_MODULES", "FinetuneError", "LoadReport", "load_start_model", "load_source_model",
           "module_of"]

PathLike = Union[str, Path]
STAGES: Tuple[str, ...] = ("segmenter", "tracker", "refiner")
STAGE_MODULES: Dict[str, Tuple[str, ...]] = {"segmenter": ("backbone", "pixel_decoder", "decoder"),
                                             "tracker": ("tracker",), "refiner": ("refiner",)}
_STAGE_OF = {m: s for s, mods in STAGE_MODULES.items() for m in mods}


class FinetuneError(ValueError):
    """A fine-tuning request that cannot work as given; the message says what to change."""


def module_of(key: str) -> str:
    """The stage owning a state-dict key (``decoder.class_embed.weight`` -> ``segmenter``)."""
    return _STAGE_OF.get(key.split(".", 1)[0], key.split(".", 1)[0])


@dataclass
class LoadReport:
    """What the non-strict load did, per stage: keys loaded / total, re-initialised class heads, missing keys (fresh
    initialisation) and checkpoint keys the model has no place for."""

    source: str
    loaded: Dict[str, int] = field(default_factory=dict)
    total: Dict[str, int] = field(default_factory=dict)
    missing: Dict[str, List[str]] = field(default_factory=dict)
    reinitialised: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: the starting model's class names (None when it has none)
    start_class_names: Optional[List[str]] = None

    def lines(self) -> List[str]:
        """Human-readable summary, one line per stage and per note."""
        out = [f"start: {self.source}"]
        for s in STAGES:
            if s not in self.total:
                continue
            miss = self.missing.get(s, [])
            extra = f"; missing (fresh init): {len(miss)} e.g. {miss[:3]}" if miss else ""
            out.append(f"  {s}: {self.loaded.get(s, 0)}/{self.total[s]} weights loaded{extra}")
        if self.reinitialised:
            out.append(f"  re-initialised (new classes): {self.reinitialised}")
        if self.ignored:
            out.append(f"  ignored checkpoint keys (no place in this model): {len(self.ignored)} e.g. "
                       f"{self.ignored[:3]}")
        return out + [f"  note: {n}" for n in self.notes]

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": self.loaded, "total": self.total,
                "missing": {k: len(v) for k, v in self.missing.items()}, "reinitialised": self.reinitialised,
                "ignored": len(self.ignored), "notes": self.notes}


def _read_checkpoint(path: PathLike, cfg: DVISConfig, trust_pickle: bool) -> Dict[str, torch.Tensor]:
    """Official (``sem_seg_head.*`` ...) or our key names -> ours; training-only / unknown keys are kept with their
    names so the load reports them as ignored."""
    from ..official import CONSTANT_KEYS, KEY_PREFIXES, TRAINING_ONLY_PREFIXES, load_official_checkpoint

    sd = load_official_checkpoint(path, trust_pickle=trust_pickle)
    if isinstance(sd.get("model"), Mapping):
        sd = sd["model"]
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or k.startswith(TRAINING_ONLY_PREFIXES) or k in CONSTANT_KEYS:
            continue
        for src, dst in KEY_PREFIXES.items():
            if k.startswith(src):
                k = dst + k[len(src):]
                break
        out[k] = v
    if not out:
        raise FinetuneError(f"checkpoint {path} holds no weight tensors")
    return out


def _source_weights(model: Optional[PathLike], config: Optional[PathLike], checkpoint: Optional[PathLike],
                    trust_pickle: bool) -> Tuple[DVISConfig, Dict[str, torch.Tensor], str]:
    if config is not None or checkpoint is not None:
        if model is not None:
            raise FinetuneError("give either a model (manifest name / folder) or --config + --checkpoint, not both")
        if config is None or checkpoint is None:
            raise FinetuneError("--config and --checkpoint go together (official yaml or config.json + weights)")
        cpath = Path(config)
        if cpath.suffix == ".json":
            if not cpath.is_file():
                raise FileNotFoundError(f"config not found: {cpath}")
            cfg = DVISConfig.from_json(cpath)
        else:
            from ..official import load_official_config

            cfg = load_official_config(config)
        return cfg, _read_checkpoint(checkpoint, cfg, trust_pickle), f"{config} + {checkpoint}"
    from ..weights import default_model_name, resolve_weights

    name = str(model) if model is not None else default_model_name()
    resolved = resolve_weights(name)
    return resolved.config, dict(resolved.state_dict), name


def _target_config(cfg: DVISConfig, class_names: Sequence[str], mode: Optional[str],
                   report: LoadReport, stages: Sequence[str] = ()) -> DVISConfig:
    d = cfg.to_dict()
    if cfg.mode == "segmenter" and mode is None and any(s in stages for s in ("tracker", "refiner")):
        mode = "online"  # a segmenter-only start gets a fresh tracker to train
    if mode is not None and mode != cfg.mode:
        d["mode"] = mode
        d["refiner"] = None if mode == "online" else d.get("refiner")  # offline: DVISConfig adds a default one
        what = {"offline": ": a fresh refiner is added", "online": ": the refiner is dropped"}.get(mode, "")
        if cfg.mode == "segmenter":
            what = ": a fresh tracker is added" + (" and a fresh refiner" if mode == "offline" else "")
        report.notes.append(f"mode {cfg.mode} -> {mode}{what}")
    old_k, new_k = cfg.segmenter.num_classes, len(class_names)
    if cfg.class_names and list(cfg.class_names) != list(class_names):
        kept = [n for n in class_names if n in cfg.class_names]
        report.notes.append(f"class names {list(cfg.class_names)} -> {list(class_names)}: the class heads are matched "
                            f"by name (kept: {kept}; new: {[n for n in class_names if n not in kept]})")
    elif old_k != new_k:
        report.notes.append(f"class count {old_k} -> {new_k}: the class heads are re-initialised")
    d["segmenter"]["num_classes"] = new_k
    d["class_names"] = list(class_names)
    return DVISConfig.from_dict(d)


def load_source_model(*, model: Optional[PathLike] = None, config: Optional[PathLike] = None,
                      checkpoint: Optional[PathLike] = None, trust_pickle: bool = False) -> OnlineDVIS:
    """The starting model as it is (its own classes; weights it lacks stay freshly initialised), in eval mode."""
    cfg, sd, _ = _source_weights(model, config, checkpoint, trust_pickle)
    net = build_model(cfg)
    own = net.state_dict()
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items() if k in own and own[k].shape == v.shape},
                        strict=False)
    return net.eval()


def load_start_model(class_names: Sequence[str], stages: Sequence[str], *, model: Optional[PathLike] = None,
                     config: Optional[PathLike] = None, checkpoint: Optional[PathLike] = None,
                     mode: Optional[str] = None, trust_pickle: bool = False, seed: int = 0,
                     class_init: Optional[Mapping[str, str]] = None) -> Tuple[OnlineDVIS, LoadReport]:
    """Build the model to fine-tune for ``class_names`` and load the starting weights into it non-strictly.

    Keys of the right shape are loaded; class heads whose size changed keep their fresh (seeded) initialisation;
    keys the checkpoint lacks stay freshly initialised. Raises :class:`FinetuneError` when a module that comes
    before a trained stage (and so stays frozen while it feeds it) lacks weights or had its class head replaced,
    or when a non-class weight has the wrong shape (the config does not describe the checkpoint).
    ``class_init`` ``{new class: start class}`` starts a new class's head rows from a start class's
    (:mod:`.class_transfer`); they still count as new (the head must be trained).
    """
    cfg, sd, source = _source_weights(model, config, checkpoint, trust_pickle)
    report = LoadReport(source, start_class_names=list(cfg.class_names) if cfg.class_names else None)
    target = _target_config(cfg, class_names, mode, report, stages)
    torch.manual_seed(seed)  # fresh heads / refiner: the same initialisation on a resumed run
    net = build_model(target)
    own = net.state_dict()
    load: Dict[str, torch.Tensor] = {}
    old_names = report.start_class_names
    by_name = old_names is not None and list(old_names) != list(class_names)
    for k, v in own.items():
        s = module_of(k)
        report.total[s] = report.total.get(s, 0) + 1
        if k not in sd:
            report.missing.setdefault(s, []).append(k)
        elif by_name and ".class_embed." in k and sd[k].shape[1:] == v.shape[1:] and \
                sd[k].shape[0] == len(old_names) + 1:  # type: ignore[arg-type]
            load[k], complete = _rows_by_name(sd[k], v, old_names, class_names, class_init)  # type: ignore[arg-type]
            report.loaded[s] = report.loaded.get(s, 0) + 1
            if not complete:
                report.reinitialised.append(k)
        elif tuple(sd[k].shape) != tuple(v.shape):
            if ".class_embed." not in k:
                raise FinetuneError(f"weight {k} has shape {tuple(sd[k].shape)} in the checkpoint but "
                                    f"{tuple(v.shape)} in the model: the config does not describe this checkpoint")
            report.reinitialised.append(k)
        else:
            load[k] = sd[k].to(v.dtype)
            report.loaded[s] = report.loaded.get(s, 0) + 1
    dropped_refiner = [k for k in sd if k not in own and k.startswith("refiner.")]
    report.ignored = sorted(k for k in sd if k not in own and not k.startswith("refiner."))
    if dropped_refiner:
        report.notes.append(f"the checkpoint's refiner ({len(dropped_refiner)} weights) is not used: online model")
    net.load_state_dict(load, strict=False)
    _check_upstream(report, stages)
    return net, report


def _rows_by_name(old: torch.Tensor, fresh: torch.Tensor, old_names: Sequence[str], new_names: Sequence[str],
                  init: Optional[Mapping[str, str]] = None) -> Tuple[torch.Tensor, bool]:
    """A class head (rows: classes, then no-object) for ``new_names`` from one for ``old_names``: a class's row is
    its old row when the name is known (or ``init[name]`` is), else the fresh initialisation; the no-object row is
    kept. Returns the rows and whether every class was known by its own name."""
    index = {n: i for i, n in enumerate(old_names)}
    rows = fresh.detach().clone()
    for i, n in enumerate(new_names):
        src = n if n in index else (init or {}).get(n)
        if src in index:
            rows[i] = old[index[src]]
    rows[-1] = old[-1]
    return rows.to(fresh.dtype), all(n in index for n in new_names)


def _check_upstream(report: LoadReport, stages: Sequence[str]) -> None:
    trained = [s for s in STAGES if s in stages]
    last = max(STAGES.index(s) for s in trained)

    def incomplete(s: str) -> bool:
        return bool(report.missing.get(s)) or any(module_of(k) == s for k in report.reinitialised)

    need = [s for s in STAGES[: last + 1] if s in trained or (s in report.total and incomplete(s))]
    for s in STAGES[: last + 1]:
        if s in trained or s not in report.total or not incomplete(s):
            continue
        miss = report.missing.get(s, [])
        if miss:
            why = (f"the starting weights lack {len(miss)} of its {report.total[s]} weights (e.g. {miss[0]})")
        else:
            why = "the class count changed, so its class head is new"
        raise FinetuneError(f"the {s} feeds the trained stage(s) {','.join(trained)} but {why}: train it too "
                            f"(--stages {','.join(need)}) or start from weights that have it")
    for s in STAGES[last + 1:]:
        if s in report.total and incomplete(s):
            report.notes.append(f"the {s} is not trained in this run and lacks weights (fresh initialisation): "
                                f"train it (--stages {s}) before using the model")
