"""`ohem-tune eval CHECKPOINT`: detect on a split, print per-class AP, write detections, metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ohem_tune.cli.common import console
from ohem_tune.errors import ConfigError

if TYPE_CHECKING:
    from ohem_tune.config import Config
    from ohem_tune.evaluation import EvalResult


def evaluate(
    checkpoint: Path = typer.Argument(
        ..., help="A model_XXXXXXX.pt file, or a run directory (its checkpoints/last is used)."
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override test/dataset settings, e.g. --set 'test.scales=[480,576,688,864,1200]'.",
    ),
    iterative_bbox: bool = typer.Option(
        False, "--iterative-bbox", help="Iterative box regression + voting (the paper's '+B')."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Where to write detections.parquet and metrics.json "
        "(default: RUN_DIR/eval/CHECKPOINT-SPLIT).",
    ),
    split: str = typer.Option(
        "test", "--split", help="Split to evaluate: test, val (dataset.val_split) or train."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Evaluate a checkpoint: VOC07 / VOC2010 / COCO AP per class and the mean."""
    import torch

    from ohem_tune.data.build import build_dataset
    from ohem_tune.engine.checkpoint import load_model
    from ohem_tune.engine.trainer import resolve_device
    from ohem_tune.evaluation import evaluate as run_evaluation

    if split not in ("test", "val", "train"):
        raise ConfigError(f"--split {split!r}: expected 'test', 'val' or 'train'")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible; use --device cpu")
    torch_device = resolve_device(device)
    model, cfg, class_names = load_model(checkpoint, torch_device)
    cfg = _with_overrides(cfg, overrides, iterative_bbox, split)
    dataset = build_dataset(cfg, split)
    if dataset.class_names != class_names:
        raise ConfigError(
            f"{checkpoint}: the model's classes {class_names} differ from the {split} split's "
            f"{dataset.class_names}; evaluate on the dataset it was trained on (--set dataset.*)"
        )
    ckpt_file = _checkpoint_file(checkpoint)
    out_dir = out or ckpt_file.parent.parent / "eval" / f"{ckpt_file.stem}-{split}"
    console.print(
        f"evaluating [bold]{ckpt_file}[/] on {dataset.name} ({len(dataset)} images"
        f"{', first ' + str(cfg.test.max_images) if cfg.test.max_images else ''}), "
        f"scales {cfg.test.scales}, iterative bbox {'on' if cfg.test.iterative_bbox else 'off'}, "
        f"{torch_device}",
        highlight=False,
    )
    result = run_evaluation(model, dataset, cfg, torch_device)
    result.info["checkpoint"] = str(ckpt_file)
    console.print(_ap_table(result, cfg))
    if cfg.test.metric == "coco":
        from ohem_tune.tracking_keys import COCO_PREFIX

        stats = {
            k.removeprefix(COCO_PREFIX): v
            for k, v in result.metrics.items()
            if k.startswith(COCO_PREFIX)
        }
        console.print(
            "COCO: " + "  ".join(f"{k} {_fmt(v)}" for k, v in stats.items()), highlight=False
        )
    dets_path, metrics_path = result.save(out_dir)
    console.print(f"wrote {dets_path} and {metrics_path} ({result.seconds:.1f} s)", highlight=False)


def _with_overrides(cfg: Config, overrides: list[str], iterative_bbox: bool, split: str) -> Config:
    """The checkpoint's config with --set applied; the model section must stay as trained."""
    from ohem_tune.config import build_config, deep_merge, parse_overrides

    tree = parse_overrides(overrides) if overrides else {}
    if "model" in tree:
        raise ConfigError(
            "--set model.*: the architecture comes from the checkpoint; override test.* or "
            "dataset.* only"
        )
    convention = {"pixel_mean", "pixel_std", "channel_order", "pixel_range"}
    changed = sorted(convention & set(tree.get("input") or {}))
    if changed:
        raise ConfigError(
            f"--set input.{changed[0]}: the input convention comes from the checkpoint (the "
            "one its weights were trained with); override test.* or dataset.* only"
        )
    if iterative_bbox:
        tree = deep_merge(tree, {"test": {"iterative_bbox": True}})
    if split == "train":  # no flipped copies: each image once, ids unique
        tree = deep_merge(tree, {"input": {"flip": False}})
    if not tree:
        return cfg
    return build_config(deep_merge(cfg.model_dump(mode="json"), tree), "--set")


def _checkpoint_file(path: Path) -> Path:
    """The .pt file a path names (a run directory resolves through checkpoints/last)."""
    from ohem_tune.engine.checkpoint import last_checkpoint

    if path.is_dir():
        return last_checkpoint(path) or last_checkpoint(path.parent) or path
    return path


def _ap_table(result: EvalResult, cfg: Config):
    """A rich table: per class AP (headline metric), all-points AP, positives and detections."""
    from rich.table import Table

    from ohem_tune.evaluation.voc import voc_eval

    voc = voc_eval(result.table(), result.dataset)
    headline = {"voc07": "AP (VOC07 11-pt)", "voc10": "AP (VOC2010+)", "coco": "AP@[.5:.95]"}
    table = Table(
        title=f"{result.dataset.name}: {len(result.dataset)} images", title_justify="left"
    )
    table.add_column("class")
    table.add_column(headline[cfg.test.metric], justify="right")
    if cfg.test.metric != "voc10":
        table.add_column("AP (all points)", justify="right")
    table.add_column("GT", justify="right")
    table.add_column("detections", justify="right")
    for k, name in enumerate(result.dataset.class_names):
        cells = [name, _fmt(result.per_class_ap[name])]
        if cfg.test.metric != "voc10":
            cells.append(_fmt(voc.ap_area[k]))
        table.add_row(*cells, str(voc.num_positives[k]), str(voc.num_detections[k]))
    from ohem_tune.tracking_keys import MAP, MAP_AREA

    mean = ["mean", _fmt(result.metrics[MAP])]
    if cfg.test.metric != "voc10":
        mean.append(_fmt(result.metrics[MAP_AREA]))
    table.add_section()
    table.add_row(*mean, str(int(voc.num_positives.sum())), str(int(voc.num_detections.sum())))
    return table


def _fmt(value: float) -> str:
    # NaN: a class without GT; COCOeval's -1: an area range without GT
    return "n/a" if math.isnan(value) or value < 0 else f"{100 * value:.1f}"
