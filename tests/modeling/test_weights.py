"""Pretrained weights: feature parity with torchvision and Caffe layouts, strict shapes, summary."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.transforms import functional as TF

from ohem_tune.config import build_config
from ohem_tune.data.prepare import file_digest
from ohem_tune.data.transforms import prepare_image, resolve_input_convention
from ohem_tune.errors import ConfigError
from ohem_tune.modeling import build_model, weights
from ohem_tune.modeling.weights import _VGG16_CAFFE_CONVS, _rename

H, W = 64, 80  # short side 64 = the scale used below: no resize, same tensor on both sides


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _ours(cfg_tree: dict, image: np.ndarray, num_classes: int = 2) -> torch.Tensor:
    """Our trunk's features on `image`, prepared by our transforms under the config's convention."""
    cfg = build_config(cfg_tree)
    model = build_model(cfg, num_classes).eval()
    tensor, scale = prepare_image(image, H, 1000, resolve_input_convention(cfg))
    assert scale == 1.0
    with torch.no_grad():
        return model.features(tensor[None])


def _tv_input(image: np.ndarray) -> torch.Tensor:
    """torchvision's own preprocessing: ToTensor (x/255), Normalize(ImageNet mean, std)."""
    return TF.normalize(TF.to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]


@pytest.fixture(scope="module")
def tv_vgg16(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A randomly initialised torchvision VGG16 and its state_dict saved with torch.save."""
    torch.manual_seed(0)
    tv = torchvision.models.vgg16().eval()
    path = tmp_path_factory.mktemp("vgg16") / "vgg16.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


def test_torchvision_vgg16_features_match_torchvision(tv_vgg16, caplog):
    tv, path = tv_vgg16
    with caplog.at_level(logging.WARNING, logger="ohem_tune.modeling.weights"):
        ours = _ours({"model": {"backbone": "vgg16", "weights": str(path)}}, _image())
    with torch.no_grad():
        ref = tv.features[:30](_tv_input(_image()))
    assert ours.shape == ref.shape
    assert _rel_err(ours, ref) < 1e-4
    # one summary line: all 26 trunk tensors, fc6/fc7 of the head, classifier.6 unmatched; then
    # one note, as this random conv1 is not torchvision's released one
    lines = [r.getMessage() for r in caplog.records if r.name == "ohem_tune.modeling.weights"]
    assert len(lines) == 2
    assert "conv1 is not torchvision's ImageNet VGG16's" in lines[1]
    assert "set model.weights_format: caffe" in lines[1]
    assert re.search(
        r"\(torchvision, SHA-256 [0-9a-f]{12}\): trunk 26/26, roi_head 4/8 tensors loaded", lines[0]
    )
    assert "2 source tensors unmatched (classifier.6.weight, classifier.6.bias)" in lines[0]


def test_torchvision_resnet50_features_match_torchvision(tmp_path: Path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50()
    for module in tv.modules():  # non-trivial BN statistics, so frozen BN is really tested
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    tv.eval()
    torch.save(tv.state_dict(), tmp_path / "r50.pth")
    ours = _ours(
        {"model": {"backbone": "resnet50", "weights": str(tmp_path / "r50.pth")}}, _image()
    )
    x = _tv_input(_image())
    with torch.no_grad():
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
            x = getattr(tv, name)(x)
    assert ours.shape == x.shape
    assert _rel_err(ours, x) < 1e-4


def _caffe_vgg16(rgb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same VGG16 trunk as a Caffe model converted to PyTorch: blob names, BGR conv1."""
    out: dict[str, torch.Tensor] = {}
    for name, idx in _VGG16_CAFFE_CONVS.items():
        weight = rgb[f"features.{idx}.weight"]
        out[f"{name}.weight"] = weight.flip(1) if name == "conv1_1" else weight  # RGB -> BGR
        out[f"{name}.bias"] = rgb[f"features.{idx}.bias"]
    return out


def test_caffe_vgg16_bgr_matches_the_rgb_model(tv_vgg16, tmp_path: Path, caplog):
    tv, _ = tv_vgg16
    rgb = {k: v for k, v in tv.state_dict().items() if k.startswith("features.")}
    torch.save(rgb, tmp_path / "rgb.pth")
    torch.save(_caffe_vgg16(rgb), tmp_path / "caffe.pth")
    image = _image(1)
    head = {"backbone": "vgg16", "fc_dim": 16}  # the trunk is what is compared
    # the RGB model on the RGB-mean-subtracted 0-255 image
    rgb_mean = [122.7717, 115.9465, 102.9801]
    ref = _ours(
        {
            "model": {**head, "weights": str(tmp_path / "rgb.pth")},
            "input": {
                "channel_order": "RGB",
                "pixel_range": 255,
                "pixel_mean": rgb_mean,
                "pixel_std": [1, 1, 1],
            },
        },  # fmt: skip
        image,
    )
    caffe_cfg = {
        "model": {**head, "weights": str(tmp_path / "caffe.pth"), "weights_format": "caffe"}
    }
    with caplog.at_level(logging.WARNING, logger="ohem_tune.modeling.weights"):
        caffe = _ours(caffe_cfg, image)
    assert resolve_input_convention(build_config(caffe_cfg)).channel_order == "BGR"
    assert _rel_err(caffe, ref) < 1e-5
    assert re.search(
        r"\(caffe, SHA-256 [0-9a-f]{12}\): trunk 26/26, roi_head 0/8 tensors", caplog.text
    )
    # the BGR model on the RGB input would differ: the test can fail
    assert _rel_err(_ours({**caffe_cfg, "input": {"channel_order": "RGB"}}, image), ref) > 1e-3


def test_vgg16_caffe_blob_names_map_to_the_trunk_and_head():
    expected = {
        "conv1_1.weight": "trunk.0.weight", "conv1_2.bias": "trunk.2.bias",
        "conv2_1.weight": "trunk.5.weight", "conv3_3.weight": "trunk.14.weight",
        "conv4_1.weight": "trunk.17.weight", "conv5_3.bias": "trunk.28.bias",
        "fc6.weight": "roi_head.fc6.weight", "fc7.bias": "roi_head.fc7.bias",
        "fc8.weight": "fc8.weight", "features.28.weight": "trunk.28.weight",
    }  # fmt: skip
    assert {k: _rename(k, "vgg16") for k in expected} == expected


def test_caffe_names_need_the_caffe_format(tmp_path: Path):
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "c.pth")
    cfg = build_config(
        {"model": {"backbone": "vgg16", "fc_dim": 16, "weights": str(tmp_path / "c.pth")}}
    )
    with pytest.raises(ConfigError, match="set model.weights_format: caffe") as err:
        build_model(cfg, 2)
    assert "c.pth" in str(err.value) and "\n" not in str(err.value)


def _vggm_caffe(fc6_in: int = 512 * 6 * 6) -> dict[str, torch.Tensor]:
    """VGG_CNN_M_1024 in its Caffe blob shapes (fast-rcnn's prototxt), named conv1..fc7, fc8."""
    g = torch.Generator().manual_seed(0)
    shapes = {
        "conv1": (96, 3, 7, 7),
        "conv2": (256, 96, 5, 5),
        "conv3": (512, 256, 3, 3),
        "conv4": (512, 512, 3, 3),
        "conv5": (512, 512, 3, 3),
        "fc6": (4096, fc6_in),
        "fc7": (1024, 4096),
        "fc8": (1000, 1024),
    }
    out = {}
    for name, shape in shapes.items():
        out[f"{name}.weight"] = torch.randn(shape, generator=g) * 0.01
        out[f"{name}.bias"] = torch.randn(shape[0], generator=g)
    return out


def _vggm_cfg(path: Path, **model) -> dict:
    return {"model": {"backbone": "vgg_cnn_m_1024", "fc7_dim": 1024, "weights": str(path), **model}}


@pytest.fixture(scope="module")
def vggm_file(tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path]:
    blob = _vggm_caffe()
    path = tmp_path_factory.mktemp("vggm") / "vggm.pth"
    torch.save(blob, path)
    return blob, path


def test_vggm_caffe_state_dict_loads_every_tensor(vggm_file, caplog):
    blob, path = vggm_file
    cfg = build_config(_vggm_cfg(path))
    assert cfg.model.pooled_size == 6 and cfg.model.weights_format == "caffe"
    with caplog.at_level(logging.WARNING, logger="ohem_tune.modeling.weights"):
        model = build_model(cfg, 20)
    own = model.state_dict()
    targets = {
        "conv1": "trunk.0", "conv2": "trunk.4", "conv3": "trunk.8", "conv4": "trunk.10",
        "conv5": "trunk.12", "fc6": "roi_head.fc6", "fc7": "roi_head.fc7",
    }  # fmt: skip
    for src, dst in targets.items():
        for kind in ("weight", "bias"):
            assert torch.equal(own[f"{dst}.{kind}"], blob[f"{src}.{kind}"]), (src, kind)
    assert "trunk 10/10, roi_head 4/8 tensors loaded" in caplog.text  # 14 of 14 + fc8 unmatched
    assert "2 source tensors unmatched (fc8.weight, fc8.bias)" in caplog.text


def test_misshaped_fc6_is_an_error_naming_both_shapes(tmp_path: Path):
    torch.save(_vggm_caffe(fc6_in=512 * 7 * 7), tmp_path / "bad.pth")
    cfg = build_config(_vggm_cfg(tmp_path / "bad.pth"))
    with pytest.raises(ConfigError) as err:
        build_model(cfg, 20)
    msg = str(err.value)
    assert "bad.pth" in msg and "fc6.weight" in msg
    assert "(4096, 25088)" in msg and "(4096, 18432)" in msg
    assert "set model.pooled_size: 7" in msg and "\n" not in msg


def test_vggm_pooled_7_names_the_fix(vggm_file):
    cfg = build_config(_vggm_cfg(vggm_file[1], pooled_size=7))  # explicit value wins
    assert cfg.model.pooled_size == 7
    with pytest.raises(ConfigError, match=r"set model.pooled_size: 6 \(VGG_CNN_M_1024 pools 6x6\)"):
        build_model(cfg, 20)


def test_fc7_width_mismatch_names_fc7_dim(vggm_file):
    cfg = build_config(_vggm_cfg(vggm_file[1], fc7_dim=None))  # fc7 4096 wide
    with pytest.raises(ConfigError, match=r"set model.fc7_dim: 1024"):
        build_model(cfg, 20)


def test_default_pooled_size_follows_the_trunk():
    assert build_config({"model": {"backbone": "vgg_cnn_m_1024"}}).model.pooled_size == 6
    for backbone in ("vgg16", "resnet50", "small_vggm", "small_vgg16", "tiny"):
        assert build_config({"model": {"backbone": backbone}}).model.pooled_size == 7


def test_checkpoint_keeps_the_convention_it_trained_with(tmp_path: Path):
    from ohem_tune.engine.checkpoint import load_model

    torch.save({"trunk.0.weight": torch.randn(8, 3, 3, 3)}, tmp_path / "w.pth")
    cfg = build_config({"model": {"backbone": "tiny", "weights": str(tmp_path / "w.pth"),
                                  "weights_format": "torchvision"}})  # fmt: skip
    model = build_model(cfg, 2)
    payload = {"model": model.state_dict(), "config": cfg.model_dump(mode="json"),
               "class_names": ["a", "b"]}  # fmt: skip
    torch.save(payload, tmp_path / "ckpt.pt")
    _, loaded, _ = load_model(tmp_path / "ckpt.pt")
    assert loaded.model.weights is None
    assert resolve_input_convention(loaded) == resolve_input_convention(cfg)
    assert resolve_input_convention(loaded).pixel_range == 1


def test_a_known_release_under_another_pixel_convention_is_refused(tv_vgg16, monkeypatch):
    # torchvision's VGG16 (SHA-256 397923af...) is 528 MiB: a stand-in file is registered under
    # its own digest the same way, and the real entry is checked to be there
    assert weights.KNOWN_RELEASES["397923af"][0] == "torchvision"
    _, path = tv_vgg16
    digest = file_digest(path, "sha256")
    monkeypatch.setitem(weights.KNOWN_RELEASES, digest[:8], ("torchvision", "a test release"))
    caffe = {"model": {"backbone": "vgg16", "weights": str(path), "weights_format": "caffe"}}
    with pytest.raises(ConfigError, match="set model.weights_format: torchvision") as err:
        build_model(build_config(caffe), 2)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    build_model(build_config({"model": {"backbone": "vgg16", "weights": str(path)}}), 2)


def test_vgg16_pools_round_up_as_caffe():
    # Caffe's pooling: out = ceil((in - 2) / 2) + 1; 50 x 70 -> 25x35 -> 13x18 -> 7x9 -> 4x5
    # (torchvision's floor would give 3 x 4: the last row and column of pixels lost)
    cfg = build_config({"model": {"backbone": "vgg16", "fc_dim": 16}})
    model = build_model(cfg, 2).eval()
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, 50, 70)).shape[-2:] == (4, 5)


# --- which pixels a VGG16 file was trained on: its digest, layout, name and conv1 ----------------


def _vgg16_file(path: Path, layout: str = "torchvision", conv1_filter0: torch.Tensor | None = None):
    """A VGG16 state dict with the model's own shapes (fc_dim 16, so fc6 is small): trunk as
    features.N, fc6 / fc7 at classifier.0 / .3 (torchvision) or .1 / .4 (jcjohnson/pytorch-vgg's
    Lua Torch layout, whose fc8 is classifier.6 as well)."""
    own = build_model(build_config({"model": {"backbone": "vgg16", "fc_dim": 16}}), 2)
    gen = torch.Generator().manual_seed(0)
    fc6, fc7 = ("classifier.0", "classifier.3") if layout == "torchvision" else (
        "classifier.1", "classifier.4")  # fmt: skip
    blob: dict[str, torch.Tensor] = {}
    for name, tensor in own.state_dict().items():
        for ours, theirs in (("trunk.", "features."), ("roi_head.fc6.", f"{fc6}."),
                             ("roi_head.fc7.", f"{fc7}.")):  # fmt: skip
            if name.startswith(ours):
                blob[theirs + name[len(ours) :]] = torch.randn(tensor.shape, generator=gen) * 0.1
    blob["classifier.6.weight"] = torch.randn(1000, 16, generator=gen)
    blob["classifier.6.bias"] = torch.zeros(1000)
    if conv1_filter0 is not None:
        blob["features.0.weight"][0] = conv1_filter0
    torch.save(blob, path)
    return path


def _vgg16_cfg(path: Path, weights_format: str | None = None) -> dict:
    model = {"backbone": "vgg16", "fc_dim": 16, "weights": str(path)}
    return {"model": {**model, "weights_format": weights_format} if weights_format else model}


def test_jcjohnson_caffe_vgg16_layout_loads_fc6_fc7_and_needs_the_caffe_format(tmp_path, caplog):
    path = _vgg16_file(tmp_path / "vgg16.pth", layout="jcjohnson")
    with caplog.at_level(logging.WARNING, logger="ohem_tune.modeling.weights"):
        build_model(build_config(_vgg16_cfg(path, "caffe")), 2)
    assert "trunk 26/26, roi_head 4/8 tensors loaded" in caplog.text
    assert "2 source tensors unmatched (classifier.6.weight, classifier.6.bias)" in caplog.text
    with pytest.raises(ConfigError, match="jcjohnson/pytorch-vgg") as err:
        build_model(build_config(_vgg16_cfg(path)), 2)  # vgg16's default: torchvision
    assert "set model.weights_format: caffe" in str(err.value) and "\n" not in str(err.value)
    assert weights.KNOWN_RELEASES["00b39a1b"][0] == "caffe"  # the same file, under its digest


@pytest.mark.parametrize("name", ["vgg16_caffe.pth", "vgg16-00b39a1b.pth"])
def test_a_file_named_as_a_caffe_conversion_needs_the_caffe_format(tmp_path, name):
    path = _vgg16_file(tmp_path / name)  # torchvision's key names: only the name tells
    with pytest.raises(ConfigError, match="named as a Caffe conversion") as err:
        build_model(build_config(_vgg16_cfg(path)), 2)
    assert str(path) in str(err.value) and "set model.weights_format: caffe" in str(err.value)
    build_model(build_config(_vgg16_cfg(path, "caffe")), 2)
    # a name that only contains the word is not one
    ok = _vgg16_file(tmp_path / "vgg16_notcaffe.pth")
    build_model(build_config(_vgg16_cfg(ok)), 2)


def test_torchvision_vgg16_conv1_is_recognised_whatever_the_file(tmp_path, caplog):
    from ohem_tune.modeling.weights import _TORCHVISION_VGG16_CONV1_FILTER0 as filter0

    # torchvision's weights re-saved (another digest), even under a Caffe-sounding name
    path = _vgg16_file(tmp_path / "my_vgg16_caffe.pth", conv1_filter0=filter0)
    with caplog.at_level(logging.WARNING, logger="ohem_tune.modeling.weights"):
        build_model(build_config(_vgg16_cfg(path)), 2)
    assert "conv1 is not" not in caplog.text  # torchvision's own conv1: nothing to note
    with pytest.raises(ConfigError, match="set model.weights_format: torchvision") as err:
        build_model(build_config(_vgg16_cfg(path, "caffe")), 2)
    assert "conv1 is torchvision's ImageNet VGG16's" in str(err.value)
    # with its planes reversed to BGR it is still torchvision's scale: refused under caffe
    flipped = _vgg16_file(tmp_path / "bgr.pth", conv1_filter0=filter0.flip(0))
    with pytest.raises(ConfigError, match="set model.weights_format: torchvision"):
        build_model(build_config(_vgg16_cfg(flipped, "caffe")), 2)
    # saved in half precision it is still torchvision's
    half = _vgg16_file(tmp_path / "half.pth", conv1_filter0=filter0.half().float())
    with pytest.raises(ConfigError, match="set model.weights_format: torchvision"):
        build_model(build_config(_vgg16_cfg(half, "caffe")), 2)
    bf16 = _vgg16_file(tmp_path / "bf16.pth", conv1_filter0=filter0.bfloat16().float())
    with pytest.raises(ConfigError, match="set model.weights_format: torchvision"):
        build_model(build_config(_vgg16_cfg(bf16, "caffe")), 2)
    # in the old Dropout-first layout it is still torchvision's: loads under torchvision
    old = _vgg16_file(tmp_path / "old.pth", layout="jcjohnson", conv1_filter0=filter0)
    build_model(build_config(_vgg16_cfg(old)), 2)
    # one value off by 1e-2: another conv1, loaded under caffe without a word
    other = filter0.clone()
    other[0, 0, 0] += 1e-2
    build_model(build_config(_vgg16_cfg(_vgg16_file(tmp_path / "o.pth", conv1_filter0=other),
                                        "caffe")), 2)  # fmt: skip


def test_a_head_without_fc6_fc7_is_noted(tmp_path, caplog):
    blob = torch.load(_vgg16_file(tmp_path / "full.pth"), weights_only=True)
    torch.save({k: v for k, v in blob.items() if k.startswith("features.")}, tmp_path / "t.pth")
    with caplog.at_level(logging.WARNING, logger="ohem_tune.modeling.weights"):
        summary = weights.load_pretrained(
            build_model(build_config({"model": {"backbone": "vgg16", "fc_dim": 16}}), 2),
            tmp_path / "t.pth", "vgg16", "torchvision",
        )  # fmt: skip
    assert any("no fc6, fc7 in the file" in n for n in summary.notes)
    assert "fc6, fc7 start from random initialisation" in caplog.text
    full = weights.load_pretrained(
        build_model(build_config({"model": {"backbone": "vgg16", "fc_dim": 16}}), 2),
        tmp_path / "full.pth",
        "vgg16",
        "torchvision",
    )
    assert not any("random initialisation" in n for n in full.notes), full.notes
