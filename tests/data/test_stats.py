"""dataset_stats: IoU bands of proposals, invariant under the flipped copies."""

from __future__ import annotations

import numpy as np

from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset, synthetic_root
from ohem_tune.data.proposals import read_proposals
from ohem_tune.data.records import DetectionDataset, ImageRecord
from ohem_tune.data.stats import dataset_stats


def test_bands_on_a_hand_made_record():
    record = ImageRecord(
        image_id="a",
        path=None,  # type: ignore[arg-type]
        width=100,
        height=100,
        boxes=np.array([[0, 0, 9, 9], [50, 50, 59, 59]], np.float32),
        labels=np.array([1, 2]),
        difficult=np.array([False, True]),
        proposals=np.array(
            [[0, 0, 9, 9], [0, 0, 19, 9], [5, 5, 14, 14], [30, 30, 40, 40], [50, 50, 59, 59]],
            np.float32,
        ),
    )
    ds = DetectionDataset("hand", ["a", "b"], [record])
    paintings = {"a": np.array([[30, 30, 40, 40]], np.float32)}
    s = dataset_stats(ds, bg_lo=0.1, paintings=paintings)
    # IoUs with the non-difficult box: 1, 0.5, 25/175, 0, 0 (the difficult box is ignored)
    assert (s.fg, s.bg_band, s.below_bg_lo, s.iou_zero, s.on_paintings) == (2, 1, 2, 2, 1)
    assert s.objects_per_class == {"a": 1, "b": 1} and s.difficult_per_class == {"a": 0, "b": 1}
    with_difficult = dataset_stats(ds, bg_lo=0.1, use_difficult=True)
    assert with_difficult.fg == 3 and with_difficult.iou_zero == 1


def test_flipped_copies_double_every_band(tiny_cfg: Config):
    train = build_dataset(tiny_cfg, "train")
    tiny_cfg.input.flip = False
    plain = build_dataset(tiny_cfg, "train")
    paintings = read_proposals(synthetic_root(tiny_cfg) / "proposals" / "trainval_paintings.npz")
    a = dataset_stats(plain, paintings=paintings)
    b = dataset_stats(train, paintings=paintings)
    for name in ("fg", "bg_band", "below_bg_lo", "iou_zero", "on_paintings", "images"):
        assert getattr(b, name) == 2 * getattr(a, name), name
    assert a.on_paintings > 0 and a.rois == sum(len(r.proposals) for r in plain.records)
