"""VIPSeg / VSPW categories (the 124 classes of the official DVIS / DVIS++ / DVIS-DAQ video panoptic and semantic
models) and how the models number them.

Source: the official dataset registration, ``dvis_Plus/data_video/datasets/vps.py`` / ``vss.py`` of
zhang-tao-whu/DVIS_Plus @c0eb249 (the VIPSeg and VSPW tables are identical; original DVIS
``dvis/data_video/datasets/{vps,vss}.py`` @6695214 holds the same). Rows: ``(dataset id, name, isthing, colour)``
in dataset id order.

The models do NOT predict dataset ids: training maps the 58 thing categories (sorted by id) to class indices
0..57 and the 66 stuff categories (sorted by id) to 58..123 (``dataset_mapper_vps.py``: ``thing_ids_to_continue_dic``,
``stuff_ids_to_continue_dic`` + number of things; ``vss.py`` re-orders the category list things first). The
official writers map a class index back to its dataset id (``vps_eval.py`` / ``vss_eval.py``). Hence the official
VPS post-processing's ``isthing = class index < number of thing classes`` is an exact test for these models.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

__all__ = ["VIPSEG_CATEGORIES", "MODEL_ORDER", "NUM_THING_CLASSES", "CLASS_NAMES_MODEL_ORDER", "category_of_class",
           "PANOPTIC_DATASETS"]

#: (dataset id, name, isthing, RGB colour), in dataset id order.
VIPSEG_CATEGORIES: List[Tuple[int, str, int, Tuple[int, int, int]]] = [
    (0, "wall", 0, (120, 120, 120)),
    (1, "ceiling", 0, (180, 120, 120)),
    (2, "door", 1, (6, 230, 230)),
    (3, "stair", 0, (80, 50, 50)),
    (4, "ladder", 1, (4, 200, 3)),
    (5, "escalator", 0, (120, 120, 80)),
    (6, "Playground_slide", 0, (140, 140, 140)),
    (7, "handrail_or_fence", 0, (204, 5, 255)),
    (8, "window", 1, (230, 230, 230)),
    (9, "rail", 0, (4, 250, 7)),
    (10, "goal", 1, (224, 5, 255)),
    (11, "pillar", 0, (235, 255, 7)),
    (12, "pole", 0, (150, 5, 61)),
    (13, "floor", 0, (120, 120, 70)),
    (14, "ground", 0, (8, 255, 51)),
    (15, "grass", 0, (255, 6, 82)),
    (16, "sand", 0, (143, 255, 140)),
    (17, "athletic_field", 0, (204, 255, 4)),
    (18, "road", 0, (255, 51, 7)),
    (19, "path", 0, (204, 70, 3)),
    (20, "crosswalk", 0, (0, 102, 200)),
    (21, "building", 0, (61, 230, 250)),
    (22, "house", 0, (255, 6, 51)),
    (23, "bridge", 0, (11, 102, 255)),
    (24, "tower", 0, (255, 7, 71)),
    (25, "windmill", 0, (255, 9, 224)),
    (26, "well_or_well_lid", 0, (9, 7, 230)),
    (27, "other_construction", 0, (220, 220, 220)),
    (28, "sky", 0, (255, 9, 92)),
    (29, "mountain", 0, (112, 9, 255)),
    (30, "stone", 0, (8, 255, 214)),
    (31, "wood", 0, (7, 255, 224)),
    (32, "ice", 0, (255, 184, 6)),
    (33, "snowfield", 0, (10, 255, 71)),
    (34, "grandstand", 0, (255, 41, 10)),
    (35, "sea", 0, (7, 255, 255)),
    (36, "river", 0, (224, 255, 8)),
    (37, "lake", 0, (102, 8, 255)),
    (38, "waterfall", 0, (255, 61, 6)),
    (39, "water", 0, (255, 194, 7)),
    (40, "billboard_or_Bulletin_Board", 0, (255, 122, 8)),
    (41, "sculpture", 1, (0, 255, 20)),
    (42, "pipeline", 0, (255, 8, 41)),
    (43, "flag", 1, (255, 5, 153)),
    (44, "parasol_or_umbrella", 1, (6, 51, 255)),
    (45, "cushion_or_carpet", 0, (235, 12, 255)),
    (46, "tent", 1, (160, 150, 20)),
    (47, "roadblock", 1, (0, 163, 255)),
    (48, "car", 1, (140, 140, 140)),
    (49, "bus", 1, (250, 10, 15)),
    (50, "truck", 1, (20, 255, 0)),
    (51, "bicycle", 1, (31, 255, 0)),
    (52, "motorcycle", 1, (255, 31, 0)),
    (53, "wheeled_machine", 0, (255, 224, 0)),
    (54, "ship_or_boat", 1, (153, 255, 0)),
    (55, "raft", 1, (0, 0, 255)),
    (56, "airplane", 1, (255, 71, 0)),
    (57, "tyre", 0, (0, 235, 255)),
    (58, "traffic_light", 0, (0, 173, 255)),
    (59, "lamp", 0, (31, 0, 255)),
    (60, "person", 1, (11, 200, 200)),
    (61, "cat", 1, (255, 82, 0)),
    (62, "dog", 1, (0, 255, 245)),
    (63, "horse", 1, (0, 61, 255)),
    (64, "cattle", 1, (0, 255, 112)),
    (65, "other_animal", 1, (0, 255, 133)),
    (66, "tree", 0, (255, 0, 0)),
    (67, "flower", 0, (255, 163, 0)),
    (68, "other_plant", 0, (255, 102, 0)),
    (69, "toy", 0, (194, 255, 0)),
    (70, "ball_net", 0, (0, 143, 255)),
    (71, "backboard", 0, (51, 255, 0)),
    (72, "skateboard", 1, (0, 82, 255)),
    (73, "bat", 0, (0, 255, 41)),
    (74, "ball", 1, (0, 255, 173)),
    (75, "cupboard_or_showcase_or_storage_rack", 0, (10, 0, 255)),
    (76, "box", 1, (173, 255, 0)),
    (77, "traveling_case_or_trolley_case", 1, (0, 255, 153)),
    (78, "basket", 1, (255, 92, 0)),
    (79, "bag_or_package", 1, (255, 0, 255)),
    (80, "trash_can", 0, (255, 0, 245)),
    (81, "cage", 0, (255, 0, 102)),
    (82, "plate", 1, (255, 173, 0)),
    (83, "tub_or_bowl_or_pot", 1, (255, 0, 20)),
    (84, "bottle_or_cup", 1, (255, 184, 184)),
    (85, "barrel", 1, (0, 31, 255)),
    (86, "fishbowl", 1, (0, 255, 61)),
    (87, "bed", 1, (0, 71, 255)),
    (88, "pillow", 1, (255, 0, 204)),
    (89, "table_or_desk", 1, (0, 255, 194)),
    (90, "chair_or_seat", 1, (0, 255, 82)),
    (91, "bench", 1, (0, 10, 255)),
    (92, "sofa", 1, (0, 112, 255)),
    (93, "shelf", 0, (51, 0, 255)),
    (94, "bathtub", 0, (0, 194, 255)),
    (95, "gun", 1, (0, 122, 255)),
    (96, "commode", 1, (0, 255, 163)),
    (97, "roaster", 1, (255, 153, 0)),
    (98, "other_machine", 0, (0, 255, 10)),
    (99, "refrigerator", 1, (255, 112, 0)),
    (100, "washing_machine", 1, (143, 255, 0)),
    (101, "Microwave_oven", 1, (82, 0, 255)),
    (102, "fan", 1, (163, 255, 0)),
    (103, "curtain", 0, (255, 235, 0)),
    (104, "textiles", 0, (8, 184, 170)),
    (105, "clothes", 0, (133, 0, 255)),
    (106, "painting_or_poster", 1, (0, 255, 92)),
    (107, "mirror", 1, (184, 0, 255)),
    (108, "flower_pot_or_vase", 1, (255, 0, 31)),
    (109, "clock", 1, (0, 184, 255)),
    (110, "book", 0, (0, 214, 255)),
    (111, "tool", 0, (255, 0, 112)),
    (112, "blackboard", 0, (92, 255, 0)),
    (113, "tissue", 0, (0, 224, 255)),
    (114, "screen_or_television", 1, (112, 224, 255)),
    (115, "computer", 1, (70, 184, 160)),
    (116, "printer", 1, (163, 0, 255)),
    (117, "Mobile_phone", 1, (153, 0, 255)),
    (118, "keyboard", 1, (71, 255, 0)),
    (119, "other_electronic_product", 0, (255, 0, 163)),
    (120, "fruit", 0, (255, 204, 0)),
    (121, "food", 0, (255, 0, 143)),
    (122, "instrument", 1, (0, 255, 235)),
    (123, "train", 1, (133, 255, 0)),
]

#: the categories in the models' class-index order: things (by id), then stuff (by id).
MODEL_ORDER: List[Tuple[int, str, int, Tuple[int, int, int]]] = (
    [c for c in VIPSEG_CATEGORIES if c[2]] + [c for c in VIPSEG_CATEGORIES if not c[2]])

#: ``len(MetadataCatalog.get(DATASETS.TRAIN[0]).thing_dataset_id_to_contiguous_id)`` of the VIPSeg datasets.
NUM_THING_CLASSES = sum(1 for c in VIPSEG_CATEGORIES if c[2])

#: class names in class-index order (what ``DVISConfig.class_names`` holds for these models).
CLASS_NAMES_MODEL_ORDER: List[str] = [c[1] for c in MODEL_ORDER]

#: registered dataset name -> (CLASS_NAMES key, number of thing classes the official VPS post-processing uses;
#: None where the registration has no thing table: the VSPW metadata sets ``thing_dataset_id_to_contiguous_id =
#: None``, so the official VPS post-processing would fail on it; VSS never reads it).
PANOPTIC_DATASETS: Dict[str, Tuple[str, object]] = {
    "panoVSPW_vps_video_train": ("vipseg", NUM_THING_CLASSES),
    "panoVSPW_vps_video_val": ("vipseg", NUM_THING_CLASSES),
    "panoVSPW_vps_video_test": ("vipseg", NUM_THING_CLASSES),
    "VSPW_vss_video_train": ("vspw", None),
    "VSPW_vss_video_val": ("vspw", None),
    "VSPW_vss_video_test": ("vspw", None),
}


def category_of_class(index: int) -> Tuple[int, str, bool, Tuple[int, int, int]]:
    """The category of a model class index: (dataset id, name, isthing, colour)."""
    did, name, thing, color = MODEL_ORDER[int(index)]
    return did, name, bool(thing), color
