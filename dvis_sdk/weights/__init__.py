"""Model weights: the manifest of released models, name resolution, pinned Hugging Face downloads with sha256
checks, the converted-weights cache and the ``save_pretrained`` folder layout.

Layout: ``errors``, ``manifest`` (``weights_manifest.json``), ``checksum``, ``download`` (one pinned file; lazy
``huggingface_hub``), ``cache`` (converted folders), ``pretrained`` (save / load / push), ``resolve``.
The sub-folders beside these modules (``dvis-tiny-shapes/``) are package data: the ``embedded`` models.
"""
from .cache import CONVERTED_FORMAT
from .checksum import sha256_file, verify_sha256
from .errors import ChecksumError, PretrainedFormatError, UnknownModelError, WeightsUnavailableError
from .manifest import (
    MANIFEST_PATH,
    REQUIRED_FIELDS,
    default_model_name,
    embedded_model_path,
    entry_config_path,
    get_model_entry,
    list_models,
    load_manifest,
    validate_manifest,
)
from .pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_pretrained,
    push_to_hub,
    save_pretrained,
    tensors_for_saving,
    write_pretrained,
)
from .resolve import ResolvedModel, resolve_official, resolve_weights

__all__ = [
    "CONFIG_NAME", "CONVERTED_FORMAT", "ChecksumError", "MANIFEST_PATH", "PretrainedFormatError", "REQUIRED_FIELDS",
    "ResolvedModel", "UnknownModelError", "WEIGHTS_NAME", "WeightsUnavailableError", "default_model_name",
    "embedded_model_path", "entry_config_path", "get_model_entry", "list_models", "load_manifest", "load_pretrained",
    "push_to_hub", "resolve_official", "resolve_weights", "save_pretrained", "sha256_file", "tensors_for_saving",
    "validate_manifest", "verify_sha256", "write_pretrained",
]
