"""Load pretrained weights from a local file (no downloads): ours, torchvision's or Caffe names."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import torch.nn as nn

from ohem_tune.errors import ConfigError

log = logging.getLogger(__name__)

# Source-name rewrites per trunk, tried in order; the first match wins.
_RENAMES: dict[str, list[tuple[str, str]]] = {
    "vgg16": [
        (r"^features\.(\d+)\.", r"trunk.\1."),
        (r"^classifier\.0\.", "roi_head.fc6."),
        (r"^classifier\.3\.", "roi_head.fc7."),
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


def _rename(key: str, backbone: str) -> str:
    if key.startswith(("trunk.", "roi_head.")):
        return key
    for pattern, repl in _RENAMES.get(backbone, []):
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return key


def load_pretrained(model: nn.Module, path: Path, backbone: str) -> int:
    """Copy every tensor of `path` whose (renamed) key and shape match; returns how many did."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"model.weights: file not found: {path}; give a local state-dict file "
            "(torchvision naming accepted) or remove model.weights to train from scratch"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code objects, ...
        raise ConfigError(f"model.weights: cannot load {path}: {exc}") from None
    if isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        blob = blob["model"]  # one of our checkpoints
    if not isinstance(blob, dict):
        raise ConfigError(f"model.weights: {path} is not a state dict (got {type(blob).__name__})")
    own = model.state_dict()
    loaded, skipped = {}, []
    for key, tensor in blob.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        name = _rename(key, backbone)
        if name in own and own[name].shape == tensor.shape:
            loaded[name] = tensor
        else:
            skipped.append(key)
    if not loaded:
        raise ConfigError(
            f"model.weights: no tensor of {path} matches backbone '{backbone}' "
            f"(first keys: {list(blob)[:3]}); check model.backbone"
        )
    model.load_state_dict(loaded, strict=False)
    log.info("loaded %d tensors from %s (%d skipped)", len(loaded), path, len(skipped))
    return len(loaded)
