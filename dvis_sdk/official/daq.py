"""DVIS-DAQ's part of an official cfg tree: ``MODEL.VIDEO_HEAD`` -> :class:`DAQConfig` (validated)."""
from __future__ import annotations

from typing import Any, Mapping

from ..config import DAQConfig
from .errors import ConversionError


def daq_config_from_tree(tree: Mapping[str, Any]) -> DAQConfig:
    """``MODEL.VIDEO_HEAD`` of an official DAQ cfg tree (defaults already merged) -> :class:`DAQConfig`.

    Raises :class:`ConversionError` naming the key and the fix for a cfg this SDK cannot run.
    """
    model = tree["MODEL"]
    vh = model.get("VIDEO_HEAD", {})
    mf = model["MASK_FORMER"]
    if vh["NUM_NEW_INS"] != mf["NUM_OBJECT_QUERIES"]:
        raise ConversionError(
            f"MODEL.VIDEO_HEAD.NUM_NEW_INS ({vh['NUM_NEW_INS']}) must equal MODEL.MASK_FORMER.NUM_OBJECT_QUERIES "
            f"({mf['NUM_OBJECT_QUERIES']}): each new-instance query takes the position of one segmenter query")
    if mf["HIDDEN_DIM"] != model["SEM_SEG_HEAD"]["MASK_DIM"]:
        raise ConversionError(
            f"DVIS-DAQ needs MODEL.MASK_FORMER.HIDDEN_DIM ({mf['HIDDEN_DIM']}) == MODEL.SEM_SEG_HEAD.MASK_DIM "
            f"({model['SEM_SEG_HEAD']['MASK_DIM']}): the track module uses HIDDEN_DIM as its mask width")
    return DAQConfig(
        num_new_ins=int(vh["NUM_NEW_INS"]), num_slots=int(vh["NUM_SLOTS"]),
        inference_select_threshold=float(vh["INFERENCE_SELECT_THRESHOLD"]),
        aux_inference_select_threshold=float(vh["AUX_INFERENCE_SELECT_THRESHOLD"]),
        dis_fg_threshold=float(vh["DIS_FG_THRESHOLD"]), noise_frame_num=int(vh["NOISE_FRAME_NUM"]),
        offline_topk_num=int(vh["OFFLINE_TOPK_NUM"]), ovis_infer=bool(vh["OVIS_INFER"]),
        use_local_attn=bool(vh["USE_LOCAL_ATTN"]))
