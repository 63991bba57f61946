"""The ``save_pretrained`` folder: ``config.json`` (:meth:`DVISConfig.to_json`) + ``model.safetensors`` (our key
names) + a short model card. Written by :func:`save_pretrained` / :func:`write_pretrained` (also used by training),
read by :func:`load_pretrained`, uploaded by :func:`push_to_hub`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from .._version import __version__
from ..config import DVISConfig
from .errors import PretrainedFormatError

PathLike = Union[str, Path]
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _unwrap(model: Any) -> torch.nn.Module:
    inner = getattr(model, "model", None)  # a VideoSegmenter
    if isinstance(inner, torch.nn.Module) and not isinstance(model, torch.nn.Module):
        return inner
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"expected a DVIS model (nn.Module) or a VideoSegmenter, got {type(model).__name__}")
    return model


def tensors_for_saving(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Detached, contiguous, CPU tensors ready for safetensors, which refuses tensors that share memory (so
    repeats are copied). The given tensors are not changed."""
    out: Dict[str, torch.Tensor] = {}
    seen = set()
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        t = v.detach().to("cpu").contiguous()
        key = t.untyped_storage().data_ptr() if t.numel() else None
        if key is not None and key in seen:
            t = t.clone()
        elif key is not None:
            seen.add(key)
        out[k] = t
    return out


def _model_card(config: DVISConfig) -> str:
    bb = config.backbone.type
    return (f"---\nlibrary_name: dvis_sdk\ntags:\n- video-instance-segmentation\n- {config.variant}\n---\n\n"
            f"# {config.variant.upper()} ({config.mode}, {bb} backbone)\n\n"
            f"Weights in the `dvis_sdk` layout: `{CONFIG_NAME}` (DVISConfig) + `{WEIGHTS_NAME}`.\n"
            f"Dataset: {config.dataset or 'custom'}; {config.segmenter.num_classes} classes; test size "
            f"{config.input.min_size_test}/{config.input.max_size_test}.\n\n"
            "```python\nfrom dvis_sdk import VideoSegmenter\nseg = VideoSegmenter.from_pretrained(\"<this folder or "
            "repo id>\")\n```\n")


def write_pretrained(directory: PathLike, config: DVISConfig, state_dict: Mapping[str, torch.Tensor],
                     card: bool = True) -> Path:
    """Write a ``save_pretrained`` folder from a config and a state dict (our key names). Returns the folder.

    The public writer for code that holds weights but no model (training checkpoints, conversions).
    """
    from safetensors.torch import save_file

    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    config.to_json(directory / CONFIG_NAME)
    save_file(tensors_for_saving(state_dict), str(directory / WEIGHTS_NAME),
              metadata={"format": "pt", "dvis_sdk_version": __version__})
    if card and not (directory / "README.md").exists():
        (directory / "README.md").write_text(_model_card(config))
    return directory


def save_pretrained(model: Any, directory: PathLike, config: Optional[DVISConfig] = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ a short ``README.md`` model card if none exists).

    ``model`` is a DVIS model (its ``cfg`` is saved unless ``config`` is given) or a ``VideoSegmenter``.
    Returns the folder.
    """
    module = _unwrap(model)
    cfg = config or getattr(module, "cfg", None) or getattr(model, "cfg", None)
    if not isinstance(cfg, DVISConfig):
        raise ValueError("the model has no DVISConfig (.cfg); pass config=...")
    return write_pretrained(directory, cfg, module.state_dict())


def is_pretrained_weights(path: Path) -> bool:
    """Whether ``path`` is the weights file of a ``save_pretrained`` folder."""
    return (path.parent / CONFIG_NAME).is_file() and path.name == WEIGHTS_NAME


def load_safetensors(path: PathLike) -> Dict[str, torch.Tensor]:
    """A safetensors file as a state dict; :class:`PretrainedFormatError` (one line) if unreadable."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise PretrainedFormatError(f"cannot read weights {path}: {e}") from None


def read_pretrained_files(cfg_path: PathLike, weights_path: PathLike) -> Tuple[DVISConfig, Dict[str, torch.Tensor]]:
    """``(DVISConfig, state_dict)`` from the two files of a ``save_pretrained`` layout."""
    try:
        cfg = DVISConfig.from_json(Path(cfg_path).read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise PretrainedFormatError(f"invalid {cfg_path}: {e}") from None
    sd = load_safetensors(Path(weights_path))
    if not sd:
        raise PretrainedFormatError(f"{weights_path} holds no tensors")
    return cfg, sd


def load_pretrained(directory: PathLike) -> Tuple[DVISConfig, Dict[str, torch.Tensor]]:
    """Read a ``save_pretrained`` folder: returns ``(DVISConfig, state_dict)``.

    Checks that both files exist and parse; whether the weights fit the model is left to strict loading.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"model folder not found: {directory}")
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (directory / n).is_file()]
    if missing:
        present = sorted(p.name for p in directory.iterdir())[:20]
        raise FileNotFoundError(f"{directory} is not a save_pretrained folder: missing {missing} (found {present}). "
                                "Official checkpoints (.pth) need their config: use resolve_official(config, file).")
    return read_pretrained_files(directory / CONFIG_NAME, directory / WEIGHTS_NAME)


def push_to_hub(directory: PathLike, repo_id: str, token: Optional[str] = None, private: bool = True,
                commit_message: str = "Upload DVIS model (dvis_sdk)", revision: Optional[str] = None) -> str:
    """Upload a ``save_pretrained`` folder to the Hub repo ``repo_id`` (created if needed). Returns the repo URL."""
    from huggingface_hub import HfApi

    directory = Path(directory).expanduser()
    load_pretrained(directory)  # refuse to upload something that would not load back
    api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="model",
                      commit_message=commit_message, revision=revision)
    return str(url)
