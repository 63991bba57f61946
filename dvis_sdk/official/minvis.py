"""The official stage-1 meta-architectures ``MinVIS`` / ``CTMinVIS`` (the segmenter alone) as a config.

Both exist in the DVIS++ repository (``dvis_Plus/meta_architecture.py``, ``dvis_Plus/ctvis.py``; DVIS-DAQ carries
the same copies) and MinVIS in the original DVIS repository (``dvis/meta_architecture.py``). Their inference does
not read ``TEST.MAX_NUM``, ``TEST.WINDOW_SIZE`` nor ``TEST.TASK``: it keeps the top 10 (hard-coded), segments
windows of 3 frames (hard-coded; memory only) and always returns video instances, also for the VIPSeg / VSPW yamls.
"""
from __future__ import annotations

from typing import Mapping

from ..config import DVISConfig, segmenter_only_config
from .errors import ConversionError

#: the official stage-1 inference keeps this many instances per video whatever TEST.MAX_NUM says
STAGE1_MAX_NUM = 10
#: transformer decoder name -> our decoder variant ("_minvis" is the original-DVIS decoder minus mask_features)
_DECODERS = {
    "VideoMultiScaleMaskedTransformerDecoder_minvis": "dvis",
    "VideoMultiScaleMaskedTransformerDecoder_dvis": "dvis",
    "VideoMultiScaleMaskedTransformerDecoder_dvisPlus": "dvis++",
}
#: what each stage-1 meta-architecture matches frames by
_MATCH = {"MinVIS": "embeds", "CTMinVIS": "reid"}


def decoder_variant(mask_former: Mapping) -> str:
    """Our decoder variant for ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``; one-line error for others."""
    name = mask_former.get("TRANSFORMER_DECODER_NAME")
    if name not in _DECODERS:
        raise ConversionError(f"unsupported MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME {name!r} for a segmenter-only "
                              f"model; supported: {sorted(_DECODERS)}")
    return _DECODERS[name]


def stage1_config(cfg: DVISConfig, arch: str) -> DVISConfig:
    """``cfg`` (built from the yaml's segmenter, backbone and input) as the official stage-1 model ``arch``
    ("MinVIS" / "CTMinVIS") or, for any other META_ARCHITECTURE run with ``mode="segmenter"``, the segmenter-only
    model of that checkpoint (DVIS++: matched by its re-identification embeddings, as CTMinVIS)."""
    match = _MATCH.get(arch)
    if match == "reid" and cfg.variant != "dvis++":
        raise ConversionError("CTMinVIS matches by the re-identification embeddings of the DVIS++ decoder: set "
                              "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME to "
                              "'VideoMultiScaleMaskedTransformerDecoder_dvisPlus'")
    return segmenter_only_config(cfg, max_num=STAGE1_MAX_NUM, match_embedding=match)
