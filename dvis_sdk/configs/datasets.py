"""Class names of the datasets the official DVIS / DVIS++ checkpoints were trained on.

Source: the official dataset registration, ``ytvis.py`` (YTVIS_CATEGORIES_2019, YTVIS_CATEGORIES_2021,
OVIS_CATEGORIES) and ``builtin.py``:

* original DVIS: zhang-tao-whu/DVIS ``dvis/data_video/datasets/{ytvis,builtin}.py`` @5cad4d9
* DVIS++: zhang-tao-whu/DVIS_Plus ``DVIS_DAQ/dvis_Plus/data_video/datasets/ytvis.py`` @c0eb249,
  ``dvis_Plus/data_video/datasets/builtin.py`` @8d01001 and
  ``DVIS_Plus/mask2former_video/data_video/datasets/builtin.py`` @c0eb249 (same category tables).

Lists are in official id order: the model's class index ``i`` is the category with official id
``i + 1`` (``thing_dataset_id_to_contiguous_id = {id: i}``); the extra last logit is "no object".
Names are verbatim (OVIS is capitalised, and its class 25 is spelled "Vehical" officially).

The coco->video training sets (``coco2ovis_train`` ...) are registered with COCO's 80-class
metadata, but their annotations are mapped onto the target dataset's categories
(``DATASET_NEED_MAP``), so the model's classes are those of the target dataset.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .vipseg import CLASS_NAMES_MODEL_ORDER, MODEL_ORDER, PANOPTIC_DATASETS

__all__ = ["CLASS_NAMES", "CLASS_COLORS", "DATASET_TO_CLASSES", "dataset_key"]

_YTVIS_2019: List[Tuple[str, Tuple[int, int, int]]] = [
    ("person", (220, 20, 60)),
    ("giant_panda", (0, 82, 0)),
    ("lizard", (119, 11, 32)),
    ("parrot", (165, 42, 42)),
    ("skateboard", (134, 134, 103)),
    ("sedan", (0, 0, 142)),
    ("ape", (255, 109, 65)),
    ("dog", (0, 226, 252)),
    ("snake", (5, 121, 0)),
    ("monkey", (0, 60, 100)),
    ("hand", (250, 170, 30)),
    ("rabbit", (100, 170, 30)),
    ("duck", (179, 0, 194)),
    ("cat", (255, 77, 255)),
    ("cow", (120, 166, 157)),
    ("fish", (73, 77, 174)),
    ("train", (0, 80, 100)),
    ("horse", (182, 182, 255)),
    ("turtle", (0, 143, 149)),
    ("bear", (174, 57, 255)),
    ("motorbike", (0, 0, 230)),
    ("giraffe", (72, 0, 118)),
    ("leopard", (255, 179, 240)),
    ("fox", (0, 125, 92)),
    ("deer", (209, 0, 151)),
    ("owl", (188, 208, 182)),
    ("surfboard", (145, 148, 174)),
    ("airplane", (106, 0, 228)),
    ("truck", (0, 0, 70)),
    ("zebra", (199, 100, 0)),
    ("tiger", (166, 196, 102)),
    ("elephant", (110, 76, 0)),
    ("snowboard", (133, 129, 255)),
    ("boat", (0, 0, 192)),
    ("shark", (183, 130, 88)),
    ("mouse", (130, 114, 135)),
    ("frog", (107, 142, 35)),
    ("eagle", (0, 228, 0)),
    ("earless_seal", (174, 255, 243)),
    ("tennis_racket", (255, 208, 186)),
]

_YTVIS_2021: List[Tuple[str, Tuple[int, int, int]]] = [
    ("airplane", (106, 0, 228)),
    ("bear", (174, 57, 255)),
    ("bird", (255, 109, 65)),
    ("boat", (0, 0, 192)),
    ("car", (0, 0, 142)),
    ("cat", (255, 77, 255)),
    ("cow", (120, 166, 157)),
    ("deer", (209, 0, 151)),
    ("dog", (0, 226, 252)),
    ("duck", (179, 0, 194)),
    ("earless_seal", (174, 255, 243)),
    ("elephant", (110, 76, 0)),
    ("fish", (73, 77, 174)),
    ("flying_disc", (250, 170, 30)),
    ("fox", (0, 125, 92)),
    ("frog", (107, 142, 35)),
    ("giant_panda", (0, 82, 0)),
    ("giraffe", (72, 0, 118)),
    ("horse", (182, 182, 255)),
    ("leopard", (255, 179, 240)),
    ("lizard", (119, 11, 32)),
    ("monkey", (0, 60, 100)),
    ("motorbike", (0, 0, 230)),
    ("mouse", (130, 114, 135)),
    ("parrot", (165, 42, 42)),
    ("person", (220, 20, 60)),
    ("rabbit", (100, 170, 30)),
    ("shark", (183, 130, 88)),
    ("skateboard", (134, 134, 103)),
    ("snake", (5, 121, 0)),
    ("snowboard", (133, 129, 255)),
    ("squirrel", (188, 208, 182)),
    ("surfboard", (145, 148, 174)),
    ("tennis_racket", (255, 208, 186)),
    ("tiger", (166, 196, 102)),
    ("train", (0, 80, 100)),
    ("truck", (0, 0, 70)),
    ("turtle", (0, 143, 149)),
    ("whale", (0, 228, 0)),
    ("zebra", (199, 100, 0)),
]

_OVIS: List[Tuple[str, Tuple[int, int, int]]] = [
    ("Person", (220, 20, 60)),
    ("Bird", (255, 109, 65)),
    ("Cat", (255, 77, 255)),
    ("Dog", (0, 226, 252)),
    ("Horse", (182, 182, 255)),
    ("Sheep", (0, 125, 92)),
    ("Cow", (120, 166, 157)),
    ("Elephant", (110, 76, 0)),
    ("Bear", (174, 57, 255)),
    ("Zebra", (199, 100, 0)),
    ("Giraffe", (72, 0, 118)),
    ("Poultry", (179, 0, 194)),
    ("Giant_panda", (0, 82, 0)),
    ("Lizard", (119, 11, 32)),
    ("Parrot", (165, 42, 42)),
    ("Monkey", (0, 60, 100)),
    ("Rabbit", (100, 170, 30)),
    ("Tiger", (166, 196, 102)),
    ("Fish", (73, 77, 174)),
    ("Turtle", (0, 143, 149)),
    ("Bicycle", (134, 134, 103)),
    ("Motorcycle", (0, 0, 230)),
    ("Airplane", (106, 0, 228)),
    ("Boat", (0, 0, 192)),
    ("Vehical", (0, 0, 70)),
]

#: dataset key -> class names, index = model class id (official category id - 1).
CLASS_NAMES: Dict[str, List[str]] = {
    "ovis": [n for n, _ in _OVIS],
    "ytvis_2019": [n for n, _ in _YTVIS_2019],
    "ytvis_2021": [n for n, _ in _YTVIS_2021],
    # VIPSeg / VSPW (video panoptic / semantic): class index order = things then stuff (configs/vipseg.py)
    "vipseg": list(CLASS_NAMES_MODEL_ORDER),
    "vspw": list(CLASS_NAMES_MODEL_ORDER),
}

#: dataset key -> official RGB visualisation colours, same order as CLASS_NAMES.
CLASS_COLORS: Dict[str, List[Tuple[int, int, int]]] = {
    "ovis": [c for _, c in _OVIS],
    "ytvis_2019": [c for _, c in _YTVIS_2019],
    "ytvis_2021": [c for _, c in _YTVIS_2021],
    "vipseg": [c[3] for c in MODEL_ORDER],
    "vspw": [c[3] for c in MODEL_ORDER],
}

#: registered dataset name (DATASETS.TRAIN / DATASETS.TEST) -> key of CLASS_NAMES.
#: ytvis_2022_val (DVIS++ builtin.py @8d01001) and ytvis_2023_val (DVIS_Plus/mask2former_video builtin.py)
#: are registered with the YouTube-VIS 2021 metadata.
DATASET_TO_CLASSES: Dict[str, str] = {
    # OVIS
    "ovis_train": "ovis",
    "ovis_val": "ovis",
    "ovis_test": "ovis",
    "coco2ovis_train": "ovis",
    "coco2ovis_val": "ovis",
    # YouTube-VIS 2019
    "ytvis_2019_train": "ytvis_2019",
    "ytvis_2019_val": "ytvis_2019",
    "ytvis_2019_test": "ytvis_2019",
    "coco2ytvis2019_train": "ytvis_2019",
    "coco2ytvis2019_val": "ytvis_2019",
    # YouTube-VIS 2021 (+ 2022 / 2023 validation sets, same categories)
    "ytvis_2021_train": "ytvis_2021",
    "ytvis_2021_val": "ytvis_2021",
    "ytvis_2021_test": "ytvis_2021",
    "ytvis_2022_val": "ytvis_2021",
    "ytvis_2023_val": "ytvis_2021",
    "coco2ytvis2021_train": "ytvis_2021",
    "coco2ytvis2021_val": "ytvis_2021",
    # VIPSeg (video panoptic) and VSPW (video semantic)
    **{name: key for name, (key, _) in PANOPTIC_DATASETS.items()},
}


def dataset_key(name: str) -> Optional[str]:
    """Map a registered dataset name (e.g. ``"ovis_val"``) or a CLASS_NAMES key to a CLASS_NAMES key.

    Returns ``None`` for datasets without a known class list (custom data).
    """
    if not isinstance(name, str):
        return None
    n = name.strip()
    if n in CLASS_NAMES:
        return n
    return DATASET_TO_CLASSES.get(n)
