"""The OHEM paper's numbers used beside measured ones (Shrivastava, Gupta, Girshick, CVPR 2016).

Table 1 rows carry their own paper number (spec `paper:` / tag `ohem_tune.paper_map`); the tables
below are keyed by layout, not by variant, so they live here. All VGG16 on VOC07 test unless noted.
"""

from __future__ import annotations

# Multi-scale (M) train / test and iterative bbox regression (B): (FRCN, OHEM) VOC07 mAP.
# Key: (multi-scale train, multi-scale test, iterative bbox regression).
MULTISCALE_BBOX: dict[tuple[bool, bool, bool], tuple[float, float]] = {
    (False, False, False): (67.2, 69.9),
    (False, True, False): (68.4, 71.1),
    (False, False, True): (70.8, 72.7),
    (False, True, True): (71.9, 74.1),
    (True, False, False): (67.7, 70.7),
    (True, True, False): (68.6, 71.9),
    (True, False, True): (71.2, 72.9),
    (True, True, True): (72.4, 75.1),
}

# Training cost on an Nvidia Titan X: model label -> (heuristic, OHEM).
COST_DEVICE = "Titan X"
SEC_PER_ITER: dict[str, tuple[float, float]] = {"VGGM": (0.13, 0.22), "VGG16": (0.57, 0.87)}
PEAK_MEM_GB: dict[str, tuple[float, float]] = {"VGGM": (2.6, 3.6), "VGG16": (6.4, 7.7)}

# COCO test-dev, VGG16 (AP, AP50, AP75, APs, APm, APl); "+M": multi-scale; "*": trained on trainval.
COCO: dict[str, tuple[float, float, float, float, float, float]] = {
    "FRCN": (19.7, 35.9, 19.9, 3.5, 18.8, 34.6),
    "OHEM": (22.6, 42.5, 22.2, 5.0, 23.7, 37.9),
    "OHEM +M": (24.4, 44.4, 24.8, 7.1, 26.4, 38.5),
    "OHEM* +M": (25.6, 46.0, 26.3, 7.8, 27.9, 40.5),
}
COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")

# Method names of the paper's columns, by sampler registry name.
METHOD_LABELS = {"heuristic": "FRCN", "ohem": "OHEM"}
