"""Checkpoints: atomic save, `checkpoints/last`, RNG states, and `load_model` for inference.

Files hold only tensors and plain Python containers, so they load with
`torch.load(weights_only=True)` (no pickled code runs on load).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ohem_tune.config import Config, build_config
from ohem_tune.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
LAST_FILE = "last"


def checkpoint_name(iteration: int) -> str:
    """model_0000010.pt for iteration 10."""
    return f"model_{iteration:07d}.pt"


def rng_state(cuda: bool = False) -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if cuda:  # the training device's generator only: a resume may see fewer GPUs
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
         n["cached_gaussian"])
    )  # fmt: skip
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):  # older checkpoints: every visible GPU's; device 0 trained
        cuda = cuda[0] if cuda else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


def save_checkpoint(out_dir: Path, iteration: int, payload: dict[str, Any], keep: int = 0) -> Path:
    """Write checkpoints/model_XXXXXXX.pt atomically, point `last` at it, prune old files."""
    ckpt_dir = Path(out_dir) / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / checkpoint_name(iteration)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    last_tmp = ckpt_dir / (LAST_FILE + ".tmp")
    last_tmp.write_text(path.name + "\n")
    os.replace(last_tmp, ckpt_dir / LAST_FILE)
    if keep > 0:
        for old in sorted(ckpt_dir.glob("model_*.pt"))[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def last_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint `checkpoints/last` names, or None when there is none."""
    last = Path(out_dir) / CHECKPOINT_DIR / LAST_FILE
    if not last.is_file():
        return None
    path = last.parent / last.read_text().strip()
    return path if path.is_file() else None


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """torch.load(weights_only=True) with a one-line error for missing or foreign files."""
    path = Path(path)
    if path.is_dir():
        found = last_checkpoint(path) or last_checkpoint(path.parent)
        if found is None:
            raise ConfigError(f"{path}: no checkpoints/last in this directory; pass a .pt file")
        path = found
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found; pass a model_XXXXXXX.pt file")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable ohem-tune checkpoint ({exc})") from None
    if not isinstance(blob, dict) or "model" not in blob or "config" not in blob:
        raise ConfigError(f"{path}: not an ohem-tune checkpoint (no model/config entries)")
    return blob


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, Config, list[str]]:
    """(FastRCNN in eval mode on device, its resolved Config, class names) from a checkpoint."""
    from ohem_tune.modeling import build_model

    blob = read_checkpoint(Path(path), "cpu")
    tree = dict(blob["config"])
    # The checkpoint carries the weights; keep the weights format it trained with, since it
    # decides the input convention (configs from before weights_format existed used "ours").
    model_tree = dict(tree["model"])
    model_tree["weights_format"] = model_tree.get("weights_format") or "ours"
    tree["model"] = {**model_tree, "weights": None}
    cfg = build_config(tree, f"{path} (embedded config)")
    class_names = list(blob["class_names"])
    model = build_model(cfg, len(class_names))
    model.load_state_dict(blob["model"])
    model.to(device).eval()
    return model, cfg, class_names
