"""`ohem-tune data`: write the synthetic dataset, print a dataset's statistics, and lay out the
paper's inputs (`data prepare voc07`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ohem_tune.cli.common import console
from ohem_tune.errors import DataError

app = typer.Typer(
    help="Generate (synth), inspect and prepare (the paper's inputs) datasets.",
    no_args_is_help=True,
)
prepare_app = typer.Typer(
    help="Lay out a paper's inputs from their official archives, and check them.",
    no_args_is_help=True,
)
app.add_typer(prepare_app, name="prepare")


@app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Directory to write (must be empty or absent)."),
    preset: str = typer.Option("small", help="tiny | small | paper"),
    seed: int = typer.Option(0, min=0, help="Generation seed (same seed, same dataset)."),
    num_train: int | None = typer.Option(None, min=1, help="Override the preset's train images."),
    num_test: int | None = typer.Option(None, min=1, help="Override the preset's test images."),
    image_size: int | None = typer.Option(None, min=32, help="Override the shorter side (px)."),
    workers: int = typer.Option(2, min=1, help="Processes used to draw the images."),
) -> None:
    """Write the synthetic dataset (VOC layout + COCO JSON + proposals) to OUT."""
    import time

    from ohem_tune.data.synthetic import PRESETS, make_spec, write_synthetic

    if preset not in PRESETS:
        raise DataError(f"--preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; pass a new --out directory")
    spec = make_spec(preset, seed, num_train, num_test, image_size)
    start = time.perf_counter()
    write_synthetic(spec, out, workers=workers)
    console.print(
        f"wrote {spec.num_train} trainval + {spec.num_test} test images "
        f"({spec.image_size} px, {spec.proposals_per_image} proposals each) to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


@app.command("inspect")
def inspect(
    root: Path | None = typer.Argument(
        None, help="Dataset directory (VOC devkit layout or COCO); or use --config."
    ),
    split: str = typer.Option(
        "trainval", help="Split (VOC: ImageSets/Main/<split>.txt; with --config: train or test)."
    ),
    format: str = typer.Option("voc", "--format", help="voc | coco"),
    coco_json: Path | None = typer.Option(
        None, help="COCO: annotation file (default ROOT/annotations/instances_<split>.json)."
    ),
    proposals: Path | None = typer.Option(
        None, help="Proposals .npz/.json (default ROOT/proposals/<split>.npz if present)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Inspect the dataset a training config builds instead."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Config override KEY=VALUE."),
    bg_lo: float | None = typer.Option(
        None,
        min=0.0,
        max=0.5,
        help="The heuristic's background floor (default 0.1 or the config's).",
    ),
) -> None:
    """Print images, objects per class, proposals per image and RoI IoU bands of a split."""
    from ohem_tune.data.coco import load_coco
    from ohem_tune.data.proposals import attach_proposals, read_proposals
    from ohem_tune.data.voc import load_voc

    if config is not None or overrides:
        _inspect_config(config, overrides, split, bg_lo)
        return
    if root is None:
        raise DataError("data inspect: give a dataset directory or --config CONFIG.yaml")
    if format not in ("voc", "coco"):
        raise DataError(f"--format: unknown format {format!r}; choose voc or coco")
    if format == "voc":
        dataset = load_voc(root, split)
    else:
        dataset = load_coco(coco_json or root / "annotations" / f"instances_{split}.json", root)
    proposals = proposals or _default_file(root, f"{split}.npz")
    if proposals is not None:
        attach_proposals(dataset, read_proposals(proposals), proposals)
    paintings_file = _default_file(root, f"{split}_paintings.npz")
    paintings = read_proposals(paintings_file) if paintings_file else None
    _print_stats(dataset, 0.1 if bg_lo is None else bg_lo, paintings, format, split)


def _inspect_config(config: Path | None, overrides: list[str], split: str, bg_lo: float | None):
    from ohem_tune.config import load_config
    from ohem_tune.data.build import build_dataset, synthetic_root
    from ohem_tune.data.proposals import read_proposals

    cfg = load_config(config, overrides)
    split = {"trainval": "train"}.get(split, split)
    if split not in ("train", "test"):
        raise DataError(f"--split: with --config the split is train or test, got {split!r}")
    dataset = build_dataset(cfg, split)  # type: ignore[arg-type]
    paintings = None
    if cfg.dataset.format == "synthetic":
        name = "trainval" if split == "train" else "test"
        paintings = read_proposals(synthetic_root(cfg) / "proposals" / f"{name}_paintings.npz")
    bg = cfg.sampler.bg_lo if bg_lo is None else bg_lo
    _print_stats(dataset, bg, paintings, cfg.dataset.format, split, cfg.dataset.use_difficult)


def _default_file(root: Path, name: str) -> Path | None:
    path = root / "proposals" / name
    return path if path.is_file() else None


def _print_stats(dataset, bg_lo, paintings, fmt: str, split: str, use_difficult: bool = False):
    from rich.table import Table

    from ohem_tune.data.stats import dataset_stats

    stats = dataset_stats(dataset, bg_lo=bg_lo, paintings=paintings, use_difficult=use_difficult)
    console.print(
        f"[bold]{dataset.name}[/] ({fmt}, split {split}): {stats.images} images, "
        f"{sum(stats.objects_per_class.values())} objects, "
        f"{sum(stats.difficult_per_class.values())} difficult, {stats.empty_images} without objects"
    )
    classes = Table("class", "objects", "difficult", title="Objects per class")
    for name, count in stats.objects_per_class.items():
        classes.add_row(name, str(count), str(stats.difficult_per_class[name]))
    console.print(classes)
    if stats.rois == 0:
        console.print("no proposals attached (pass --proposals FILE)")
        return
    console.print(
        f"proposals per image: mean {stats.proposals_mean:.1f}, min {stats.proposals_min}, "
        f"max {stats.proposals_max}"
    )
    rois = Table("RoI band (max IoU with non-difficult GT)", "RoIs", "share", "per image",
                 title="Proposals by overlap (ground-truth boxes not counted)")  # fmt: skip
    bands = [
        ("foreground: IoU >= 0.5", stats.fg),
        (f"heuristic background: [{bg_lo:g}, 0.5)", stats.bg_band),
        (f"below bg_lo: [0, {bg_lo:g})", stats.below_bg_lo),
        ("  of which IoU = 0", stats.iou_zero),
    ]
    if stats.on_paintings is not None:
        bands.append(("  of which on distractors (paintings)", stats.on_paintings))
    for label, count in bands:
        rois.add_row(label, str(count), f"{count / stats.rois:.1%}", f"{count / stats.images:.1f}")
    console.print(rois)
    console.print(
        f"fg:bg ratio {stats.fg / max(1, stats.bg_band + stats.below_bg_lo):.3f}; "
        f"the bg_lo={bg_lo:g} heuristic can never sample {stats.below_bg_lo} RoIs "
        f"({stats.below_bg_lo / stats.rois:.1%}), {stats.iou_zero} of them at IoU 0"
    )


@prepare_app.command("voc07")
def prepare_voc07(
    sources: list[Path] = typer.Option(
        [],
        "--from",
        help="An official archive or weights file, or a directory holding them "
        "(repeatable): VOCtrainval_06-Nov-2007.tar, VOCtest_06-Nov-2007.tar, "
        "selective_search_data.tgz, imagenet_models.tgz, vgg16-397923af.pth, converted "
        "vgg16.pth / vgg_cnn_m_1024.pth.",
    ),
    data_dir: Path = typer.Option(
        Path("data"), "--data-dir", help="Where the paper profile reads its inputs (data/)."
    ),
    download: bool = typer.Option(
        False, "--download", help="Fetch what is missing from the official URLs (needs internet)."
    ),
    no_verify: bool = typer.Option(
        False, "--no-verify", help="Skip checksums (only for archives you built yourself)."
    ),
) -> None:
    """Lay out VOC 2007, fast-rcnn's selective-search proposals and ImageNet weights under
    DATA_DIR as `--profile paper` expects, verifying checksums; print what is still missing."""
    from rich.table import Table

    from ohem_tune.data.prepare import prepare_voc07 as prepare

    def echo(line: str) -> None:
        style = "bold yellow" if line.startswith("WARNING") else None
        console.print(line, style=style, highlight=False, markup=False)

    report = prepare(sources, data_dir, verify=not no_verify, download=download, echo=echo)
    table = Table("", "input", "path", "found", title=f"Paper-profile inputs under {data_dir}")
    for f in report.findings:
        table.add_row("[green]ok[/]" if f.ok else "[red]MISSING[/]", f.item, str(f.path), f.detail)
    console.print(table)
    if report.missing:
        console.print(f"[bold red]{len(report.missing)} input(s) still missing[/]; to fix:")
        for f in report.missing:
            console.print(f"- {f.item}: {f.fix}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(f"[green]all inputs of the paper profile are in place under {data_dir}[/]")
