"""Load pretrained weights from a local file (no downloads): ours, torchvision's or Caffe names.

Strict on shapes: a tensor whose renamed key exists in the model with another shape is a
ConfigError naming the file, the key, both shapes and the fix. Keys with no counterpart (e.g.
torchvision's ImageNet classifier) are skipped and counted in ONE summary line, logged at WARNING
so it reaches the console of `ohem-tune train` and a Ray trial's stderr:

    model.weights FILE (caffe, SHA-256 0123456789ab): trunk 10/10, roi_head 4/8 tensors
    loaded; 2 source tensors unmatched (fc8.weight, fc8.bias)

The pixel convention follows the weights (model.weights_format). A file with Caffe blob names,
a published release known by its SHA-256 (KNOWN_RELEASES), a VGG16 whose layout or name says
Caffe, or torchvision's own VGG16 conv1, under another format is an error; a VGG16 read as
torchvision pixels that is not torchvision's, or a head without fc6 / fc7, gets a WARNING note.
Caffe-converted weights keep their own conv1 channel order: with model.weights_format caffe the
image is fed BGR (see ohem_tune.data.transforms), so conv1 is loaded as it is, never reordered.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ohem_tune.data.prepare import file_digest
from ohem_tune.errors import ConfigError

log = logging.getLogger(__name__)

# Caffe VGG16 blob names (conv1_1 ... conv5_3) -> index in torchvision's VGG16 `features`.
_VGG16_CAFFE_CONVS = {
    "conv1_1": 0, "conv1_2": 2,
    "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
    "conv5_1": 24, "conv5_2": 26, "conv5_3": 28,
}  # fmt: skip

# Source-name rewrites per trunk, tried in order; the first match wins.
_RENAMES: dict[str, list[tuple[str, str]]] = {
    "vgg16": [
        (r"^features\.(\d+)\.", r"trunk.\1."),  # torchvision (also Caffe models renamed so)
        (r"^classifier\.0\.", "roi_head.fc6."),
        (r"^classifier\.3\.", "roi_head.fc7."),
        # jcjohnson/pytorch-vgg's Caffe VGG16 (Lua Torch's classifier: a Dropout first), the
        # file faster-rcnn.pytorch and others load; torchvision has no weights at 1 or 4
        (r"^classifier\.1\.", "roi_head.fc6."),
        (r"^classifier\.4\.", "roi_head.fc7."),
        *((rf"^{name}\.", f"trunk.{idx}.") for name, idx in _VGG16_CAFFE_CONVS.items()),
        (r"^fc6\.", "roi_head.fc6."),  # Caffe blob names
        (r"^fc7\.", "roi_head.fc7."),
    ],
    "resnet50": [(r"^(conv1|bn1|layer1|layer2|layer3)\.", r"trunk.\1.")],
    "vgg_cnn_m_1024": [  # Caffe-converted blobs named conv1..conv5, fc6, fc7
        (r"^conv1\.", "trunk.0."),
        (r"^conv2\.", "trunk.4."),
        (r"^conv3\.", "trunk.8."),
        (r"^conv4\.", "trunk.10."),
        (r"^conv5\.", "trunk.12."),
        (r"^fc6\.", "roi_head.fc6."),
        (r"^fc7\.", "roi_head.fc7."),
    ],
}

# Names only a Caffe model carries, per trunk: such a file needs model.weights_format: caffe.
_CAFFE_NAMES: dict[str, str] = {
    "vgg16": r"^(conv\d_\d|fc[678])\.",
    "vgg_cnn_m_1024": r"^(conv\d|fc[678])\.",
}

# Published releases whose pixel convention is known, by the start of the file's SHA-256 (the
# digits torchvision puts in its file names): loading one under another model.weights_format
# would feed it pixels it was never trained on, with nothing else to show for it.
KNOWN_RELEASES: dict[str, tuple[str, str]] = {
    "397923af": ("torchvision", "torchvision's ImageNet VGG16 (vgg16-397923af.pth)"),
    "00b39a1b": (
        "caffe",
        "the original Caffe VGG16 as jcjohnson/pytorch-vgg converted it (vgg16-00b39a1b.pth)",
    ),
}

# The layout only jcjohnson/pytorch-vgg's Caffe conversions have (fc6, fc7 at classifier.1, .4).
_JCJOHNSON_LAYOUT = re.compile(r"^classifier\.[14]\.")

# Words in a file name that say "converted from Caffe" (faster-rcnn.pytorch's vgg16_caffe.pth,
# jcjohnson's digest kept on a renamed copy).
_CAFFE_NAME_WORDS = {"caffe", "00b39a1b"}

# Filter 0 of conv1 in torchvision's ImageNet VGG16 (vgg16-397923af.pth, features.0.weight[0]:
# R, G, B planes, rows), to 4 decimals: it identifies those weights whatever the file's name,
# key names or serialisation.
_TORCHVISION_VGG16_CONV1_FILTER0 = torch.tensor(
    [
        [[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]],
        [[0.1755, 0.0099, -0.0814], [0.0441, -0.0703, -0.2604], [0.1324, -0.1728, -0.1323]],
        [[0.3130, -0.1659, -0.4275], [0.4752, -0.0827, -0.4870], [0.6320, 0.0193, -0.2775]],
    ]
)

# Tensors that depend on the number of classes: a file trained for other classes skips them.
_CLASS_SPECIFIC = ("roi_head.cls_score.", "roi_head.bbox_pred.", "bbox_means", "bbox_stds")


def _check_known_release(path: Path, sha256: str, weights_format: str) -> None:
    """A published file under another pixel convention than its own is a ConfigError."""
    for prefix, (fmt, what) in KNOWN_RELEASES.items():
        if sha256.startswith(prefix) and weights_format != fmt:
            raise ConfigError(
                f"model.weights: {path} is {what}, trained on {fmt} pixels, but "
                f"model.weights_format is {weights_format}; set model.weights_format: {fmt} "
                f"(docs/training.md, 'Input conventions') or give a {weights_format} file"
            )


def _is_torchvision_vgg16_conv1(tensor: torch.Tensor) -> bool:
    """conv1 of torchvision's ImageNet VGG16, its planes in RGB or reversed (BGR) order."""
    if tuple(tensor.shape) != (64, 3, 3, 3):
        return False
    first = tensor[0].detach().float().cpu()
    ref = _TORCHVISION_VGG16_CONV1_FILTER0
    # 3e-3: the 4-decimal reference and a copy saved in fp16 or bf16 both pass; another
    # model's 27 weights never come that close to these
    return any(torch.allclose(f, ref, rtol=0.0, atol=3e-3) for f in (first, first.flip(0)))


def _check_vgg16_convention(path: Path, blob: dict, weights_format: str) -> list[str]:
    """Refuse a VGG16 file whose pixel convention shows (its layout, its name, torchvision's
    conv1) and is not `weights_format`; return a note where the file cannot tell."""
    conv1 = next((t for k, t in blob.items() if _rename(str(k), "vgg16") == "trunk.0.weight"), None)
    is_torchvision = isinstance(conv1, torch.Tensor) and _is_torchvision_vgg16_conv1(conv1)
    if weights_format == "caffe" and is_torchvision:
        raise ConfigError(
            f"model.weights: {path}: conv1 is torchvision's ImageNet VGG16's (filter 0 starts "
            "-0.5537, 0.1427, 0.5290), trained on torchvision pixels, but model.weights_format "
            "is caffe; set model.weights_format: torchvision"
        )
    if weights_format != "torchvision":
        return []
    layout = [str(k) for k in blob if _JCJOHNSON_LAYOUT.match(str(k))]
    if layout and not is_torchvision:
        raise ConfigError(
            f"model.weights: {path} has the layout of jcjohnson/pytorch-vgg's Caffe VGG16 "
            f"({layout[0]}, ...: BGR 0-255 pixels) but model.weights_format is torchvision; "
            "set model.weights_format: caffe"
        )
    names = f"{path.name} {path.resolve().name}".lower()  # a link's name and its target's
    words = _CAFFE_NAME_WORDS & set(re.split(r"[^0-9a-z]+", names))
    if words and not is_torchvision:
        raise ConfigError(
            f"model.weights: {path} is named as a Caffe conversion ('{sorted(words)[0]}': BGR "
            "0-255 pixels) but model.weights_format is torchvision; set "
            "model.weights_format: caffe, or rename the file if it holds torchvision weights"
        )
    if isinstance(conv1, torch.Tensor) and not is_torchvision:
        return [
            "conv1 is not torchvision's ImageNet VGG16's, yet the file is read as torchvision "
            "pixels (RGB, x / 255, ImageNet mean/std); if it was converted from Caffe "
            "(VGG16.v2.caffemodel, jcjohnson's vgg16-00b39a1b.pth, a vgg16_caffe.pth), set "
            "model.weights_format: caffe"
        ]
    return []


def _rename(key: str, backbone: str) -> str:
    if key.startswith(("trunk.", "roi_head.")):
        return key
    for pattern, repl in _RENAMES.get(backbone, []):
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return key


def _group(name: str) -> str:
    return name.split(".", 1)[0] if name.startswith(("trunk.", "roi_head.")) else "other"


@dataclass
class LoadSummary:
    """What load_pretrained copied: per module group loaded / present in the model."""

    path: Path
    weights_format: str
    sha256: str = ""
    loaded: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)  # source keys with no counterpart
    class_specific: list[str] = field(default_factory=list)  # skipped: other class count
    ignored: int = 0  # BatchNorm num_batches_tracked counters (no weights)
    notes: list[str] = field(default_factory=list)  # what the file cannot settle: logged, shown

    @property
    def num_loaded(self) -> int:
        return sum(self.loaded.values())

    def line(self) -> str:
        """The one summary line the loader logs."""
        groups = ", ".join(
            f"{g} {self.loaded.get(g, 0)}/{n}" for g, n in self.total.items() if g != "other"
        )
        digest = f", SHA-256 {self.sha256[:12]}" if self.sha256 else ""
        text = f"model.weights {self.path} ({self.weights_format}{digest}): {groups} tensors loaded"
        if self.unmatched:
            shown = ", ".join(self.unmatched[:4]) + (", ..." if len(self.unmatched) > 4 else "")
            text += f"; {len(self.unmatched)} source tensors unmatched ({shown})"
        if self.class_specific:
            text += (
                f"; {len(self.class_specific)} class-specific tensors skipped (other class count)"
            )
        if self.ignored:
            text += f"; {self.ignored} num_batches_tracked counters ignored"
        return text


def _shape_fix(
    name: str, src: torch.Size, own: torch.Size, backbone: str, pooled: int | None
) -> str:
    """The config change that makes `src` fit, or what to check."""
    if name == "roi_head.fc6.weight" and src[0] == own[0] and len(src) == len(own) == 2:
        channels = own[1] // (pooled * pooled) if pooled else 0
        side = math.isqrt(src[1] // channels) if channels and src[1] % channels == 0 else 0
        if side and side * side * channels == src[1]:
            why = " (VGG_CNN_M_1024 pools 6x6)" if backbone == "vgg_cnn_m_1024" else ""
            return f"set model.pooled_size: {side}{why}"
        return "check model.backbone: fc6's input does not fit this trunk's channels"
    if name.startswith("roi_head.fc6."):
        return f"set model.fc_dim: {src[0]}"
    if name.startswith("roi_head.fc7."):
        if name.endswith("weight") and len(src) == 2 and src[1] != own[1]:
            return f"set model.fc_dim: {src[1]}"
        return f"set model.fc7_dim: {src[0]}"
    return f"check model.backbone ('{backbone}'): the file holds another architecture"


def load_pretrained(
    model: nn.Module, path: Path, backbone: str, weights_format: str = "torchvision"
) -> LoadSummary:
    """Copy every tensor of `path` whose renamed key is in the model (shapes must match: else a
    ConfigError); log one summary line and return it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"model.weights: file not found: {path}; give a local state-dict file "
            "(torchvision naming accepted) or remove model.weights to train from scratch"
        )
    sha256 = file_digest(path, "sha256")  # ~0.5 s for VGG16's 528 MiB
    _check_known_release(path, sha256, weights_format)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code objects, ...
        raise ConfigError(f"model.weights: cannot load {path}: {exc}") from None
    if isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        blob = blob["model"]  # one of our checkpoints
    if not isinstance(blob, dict):
        raise ConfigError(f"model.weights: {path} is not a state dict (got {type(blob).__name__})")
    caffe_names = _CAFFE_NAMES.get(backbone)
    if weights_format != "caffe" and caffe_names:
        caffe_keys = [k for k in blob if re.match(caffe_names, str(k))]
        if caffe_keys:
            raise ConfigError(
                f"model.weights: {path} has Caffe blob names ({caffe_keys[0]}, ...) but "
                f"model.weights_format is {weights_format}; set model.weights_format: caffe "
                "(BGR 0-255 minus the BGR mean, as the Caffe model was trained)"
            )
    notes = _check_vgg16_convention(path, blob, weights_format) if backbone == "vgg16" else []
    own = model.state_dict()
    pooled = getattr(getattr(model, "pooler", None), "output_size", None)
    summary = LoadSummary(path, weights_format, sha256, notes=notes)
    for name in own:
        summary.total[_group(name)] = summary.total.get(_group(name), 0) + 1
    loaded: dict[str, torch.Tensor] = {}
    for key, tensor in blob.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        if str(key).endswith("num_batches_tracked"):
            summary.ignored += 1
            continue
        name = _rename(str(key), backbone)
        if name not in own:
            summary.unmatched.append(str(key))
            continue
        if own[name].shape != tensor.shape:
            if name.startswith(_CLASS_SPECIFIC):
                summary.class_specific.append(str(key))
                continue
            src, dst = tuple(tensor.shape), tuple(own[name].shape)
            raise ConfigError(
                f"model.weights: {path}: {key} (-> {name}) has shape {src} but the model's is "
                f"{dst}; {_shape_fix(name, tensor.shape, own[name].shape, backbone, pooled)}"
            )
        loaded[name] = tensor
        summary.loaded[_group(name)] = summary.loaded.get(_group(name), 0) + 1
    if not loaded:
        raise ConfigError(
            f"model.weights: no tensor of {path} matches backbone '{backbone}' "
            f"(first keys: {list(blob)[:3]}); check model.backbone"
        )
    head = [f"roi_head.{fc}.weight" for fc in ("fc6", "fc7") if f"roi_head.{fc}.weight" in own]
    if backbone in _CAFFE_NAMES and head and not all(name in loaded for name in head):
        missing = ", ".join(n.split(".")[1] for n in head if n not in loaded)
        summary.notes.append(
            f"no {missing} in the file, so {missing} start from random "
            "initialisation (the paper fine-tunes them from the ImageNet model)"
        )
    model.load_state_dict(loaded, strict=False)
    log.warning("%s", summary.line())
    for note in summary.notes:
        log.warning("model.weights %s: %s", path, note)
    return summary
