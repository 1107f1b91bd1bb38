"""build_model / FastRCNN contract: shapes, freezing, target statistics, pretrained weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ohem_tune.config import Config, build_config
from ohem_tune.data.records import ImageRecord
from ohem_tune.errors import ConfigError
from ohem_tune.modeling import build_model
from ohem_tune.modeling.boxes import encode
from ohem_tune.modeling.target_stats import compute_target_stats


@pytest.mark.parametrize("roi_op", ["roi_pool", "roi_align"])
@pytest.mark.parametrize("backbone", ["tiny", "small_vggm", "small_vgg16"])
def test_contract_shapes(backbone: str, roi_op: str):
    cfg = build_config({"model": {"backbone": backbone, "fc_dim": 32, "roi_op": roi_op}})
    model = build_model(cfg, num_classes=3)
    assert model.num_classes == 3 and model.feature_stride == 8
    images = torch.randn(2, 3, 64, 80)
    feats = model.features(images)
    assert feats.shape[0] == 2 and feats.shape[2:] == (8, 10)
    rois = torch.tensor([[0, 0, 0, 63, 63], [1, 8, 8, 40, 30], [1, 2, 3, 4, 5]], dtype=torch.float)
    pooled = model.pool(feats, rois)
    assert pooled.shape == (3, feats.shape[1], 7, 7)
    logits, deltas = model.head(pooled)
    assert logits.shape == (3, 4) and deltas.shape == (3, 16)
    assert model.decode_boxes(rois[:, 1:], deltas).shape == (3, 4, 4)


def test_vgg16_freezes_conv1_and_conv2_only():
    model = build_model(build_config({"model": {"backbone": "vgg16", "fc_dim": 16}}), 2)
    frozen = {n for n, p in model.trunk.named_parameters() if not p.requires_grad}
    assert frozen == {f"{i}.{w}" for i in (0, 2, 5, 7) for w in ("weight", "bias")}
    assert model.feature_stride == 16


def test_decode_boxes_unnormalises_with_saved_stats():
    model = build_model(build_config({"model": {"backbone": "tiny", "fc_dim": 16}}), 2)
    means = torch.tensor([0.0, 0.1, -0.2, 0.05])
    stds = torch.tensor([0.2, 0.3, 0.1, 0.4])
    model.set_target_stats(means, stds)
    rois = torch.tensor([[10.0, 10.0, 50.0, 40.0]])
    gt = torch.tensor([[14.0, 6.0, 60.0, 44.0]])
    labels = torch.tensor([2])
    norm = model.normalize_targets(encode(rois, gt), labels)
    deltas = torch.zeros(1, 12)
    deltas[0, 8:12] = norm[0]
    torch.testing.assert_close(model.decode_boxes(rois, deltas)[0, 2], gt[0], atol=1e-3, rtol=0)
    # the statistics travel with the state dict
    state = model.state_dict()
    torch.testing.assert_close(state["bbox_stds"][1], stds)


def _record(boxes, labels, proposals) -> ImageRecord:
    return ImageRecord(
        image_id="x",
        path=None,  # type: ignore[arg-type]
        width=100,
        height=100,
        boxes=np.asarray(boxes, np.float32),
        labels=np.asarray(labels, np.int64),
        difficult=np.zeros(len(labels), bool),
        proposals=np.asarray(proposals, np.float32),
    )


def test_target_stats_per_class_with_fallback():
    rec = _record(
        [[10, 10, 50, 50]],
        [1],
        [[12, 10, 52, 50], [8, 10, 48, 50], [10, 12, 50, 52], [70, 70, 90, 90]],
    )
    fallback = (0.1, 0.1, 0.2, 0.2)
    means, stds = compute_target_stats([rec], 2, 0.5, fallback)
    assert means.shape == stds.shape == (3, 4)
    # class 1: GT itself + three shifted proposals; dx mean is 0 by symmetry of the +/-2 shifts
    assert abs(means[1, 0].item()) < 1e-6 and stds[1, 0].item() > 0
    # background and the class without foreground keep the fallback
    torch.testing.assert_close(stds[0], torch.tensor(fallback))
    torch.testing.assert_close(stds[2], torch.tensor(fallback))


def test_missing_weights_file_is_one_line_config_error(tmp_path):
    cfg = build_config({"model": {"backbone": "tiny", "weights": str(tmp_path / "nope.pth")}})
    with pytest.raises(ConfigError, match=r"model.weights: file not found: .*nope.pth") as err:
        build_model(cfg, 2)
    assert "\n" not in str(err.value)


def test_weights_load_with_torchvision_names(tmp_path):
    conv1 = torch.randn(64, 3, 3, 3)
    fc7 = torch.randn(16, 16)
    torch.save({"features.0.weight": conv1, "classifier.3.weight": fc7}, tmp_path / "vgg.pth")
    cfg: Config = build_config(
        {"model": {"backbone": "vgg16", "fc_dim": 16, "weights": str(tmp_path / "vgg.pth")}}
    )
    model = build_model(cfg, 2)
    torch.testing.assert_close(model.trunk[0].weight, conv1)
    torch.testing.assert_close(model.roi_head.fc7.weight, fc7)


def test_weights_that_match_nothing_are_an_error(tmp_path):
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "w.pth")
    cfg = build_config({"model": {"backbone": "tiny", "weights": str(tmp_path / "w.pth")}})
    with pytest.raises(ConfigError, match="no tensor"):
        build_model(cfg, 2)


def test_lrn_and_losses_run_in_fp32_under_bf16_autocast():
    """VGG_CNN_M's LRN squares activations (fp16 overflows above ~256) and the losses sum over
    RoIs: both stay fp32 under autocast, equal to the fp32 computation on the same inputs."""
    from ohem_tune.modeling.backbones import LocalResponseNorm32, build_trunk
    from ohem_tune.modeling.losses import fast_rcnn_loss, per_roi_losses

    lrns = [
        m for m in build_trunk("vgg_cnn_m_1024").body if isinstance(m, torch.nn.LocalResponseNorm)
    ]
    assert len(lrns) == 2 and all(isinstance(m, LocalResponseNorm32) for m in lrns)
    x = (torch.rand(1, 96, 9, 9) * 400).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lrns[0](x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.nn.LocalResponseNorm(5, 0.0005, 0.75, 2.0)(x.float()))

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(20, 4, generator=gen) * 5).to(torch.bfloat16)
    deltas = torch.randn(20, 16, generator=gen).to(torch.bfloat16)
    labels = torch.randint(0, 4, (20,), generator=gen)
    targets = torch.randn(20, 4, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lc, lb = per_roi_losses(logits, deltas, labels, targets)
        total_cls, total_box, per_roi = fast_rcnn_loss(logits, deltas, labels, targets)
    want_c, want_b = per_roi_losses(logits.float(), deltas.float(), labels, targets)
    for got, want in ((lc, want_c), (lb, want_b)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert total_cls.dtype == total_box.dtype == per_roi.dtype == torch.float32
