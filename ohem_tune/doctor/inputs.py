"""What a spec's trials read, checked before any trial starts: each distinct dataset, proposal
file and weights file (one row per file, not per trial), opened with the loaders trials use.

VOC devkits in the paper's layout (<data>/VOCdevkit/VOC2007) are checked with
`ohem_tune.data.prepare.check_voc07_tree`, whose fixes name the official archive to pass to
`ohem-tune data prepare voc07 --from`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ohem_tune.config import Config
from ohem_tune.doctor.lookup import orchestration_function
from ohem_tune.doctor.rows import Row
from ohem_tune.errors import OhemTuneError
from ohem_tune.spec import Spec, TrialSpec, load_spec

PREPARE_HINT = (
    "`ohem-tune data prepare voc07 --from DIR` lays out the paper's inputs (docs/data.md)"
)


def load_trials(
    spec_path: str | Path,
    profile: str | None,
    overrides: Sequence[str] = (),
    only: Sequence[str] = (),
    resources: Sequence[str] = (),
) -> tuple[Spec, list[TrialSpec]]:
    """The spec and its expanded, validated trials as `ohem-tune run` with the same --profile,
    --set, --only and --resources would run them."""
    spec = load_spec(spec_path)
    trials = spec.expand(profile=profile, overrides=overrides)
    if only:
        trials = _plan_function("select_variants")(trials, only, str(spec_path))
    if resources:
        update = _plan_function("parse_resources")(resources, spec_path)
        trials = [replace(t, resources=t.resources.model_copy(update=update)) for t in trials]
    return spec, trials


def _plan_function(name: str) -> Callable[..., Any]:
    found = orchestration_function(name)
    if found is None:
        raise ImportError(f"ohem_tune.orchestration defines no {name}")
    return found


def distinct_configs(trials: Sequence[TrialSpec]) -> list[Config]:
    """One config per distinct trial config (seeds of a row share it), in spec order."""
    seen: dict[str, Config] = {}
    for trial in trials:
        seen.setdefault(trial.config_hash, trial.config)
    return list(seen.values())


def shown(path: Path | str) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    absolute = Path(os.path.normpath(Path(path).expanduser().absolute()))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def spec_row(spec_path: str | Path, trials: Sequence[TrialSpec]) -> Row:
    """The spec, the profile and what one trial asks for."""
    res = trials[0].resources
    each = f"{res.cpu:g} CPU" + (f" + {res.gpu:g} GPU" if res.gpu else "")
    return Row(
        "spec",
        "ok",
        f"{spec_path}, profile {trials[0].profile or 'none'}: {len(trials)} "
        f"trial(s), {len(distinct_configs(trials))} distinct config(s), {each} per "
        "trial",
    )


# ------------------------------------------------------------------------------ datasets


def splits_used(cfg: Config) -> list[str]:
    """The dataset splits a trial of cfg reads: train, test, and val when it selects on val."""
    ds = cfg.dataset
    splits = [ds.train_split, ds.test_split]
    if cfg.train.eval_split == "val":
        splits.append(ds.val_split)
    return list(dict.fromkeys(splits))


def voc07_data_dir(root: Path | None) -> Path | None:
    """<data> when root is <data>/VOCdevkit/VOC2007 (the layout `data prepare voc07` writes)."""
    if root is None:
        return None
    parts = Path(os.path.normpath(Path(root).absolute())).parts
    return Path(*parts[:-2]) if parts[-2:] == ("VOCdevkit", "VOC2007") else None


def prepare_fixes(configs: Sequence[Config]) -> dict[Path, str]:
    """{file: fix} from check_voc07_tree for each VOC07-layout data dir the configs use."""
    from ohem_tune.data.prepare import check_voc07_tree

    fixes: dict[Path, str] = {}
    dirs = {voc07_data_dir(c.dataset.root) for c in configs if c.dataset.format == "voc"}
    for data_dir in dirs - {None}:
        for finding in check_voc07_tree(data_dir):  # type: ignore[arg-type]
            if not finding.ok and finding.fix:
                fixes[_key(finding.path)] = finding.fix
    return fixes


def dataset_rows(configs: Sequence[Config]) -> list[Row]:
    """dataset_row for each distinct dataset (and set of splits) of the configs."""
    rows: dict[str, Row] = {}
    for cfg in configs:
        ds = cfg.dataset
        key = ds.model_dump_json(exclude={"num_workers", "proposals"}) + str(splits_used(cfg))
        if key not in rows:
            rows[key] = dataset_row(cfg)
    return list(rows.values())


def dataset_row(cfg: Config) -> Row:
    """The dataset of cfg: found and loadable for every split the trials read."""
    fmt = cfg.dataset.format
    if fmt == "synthetic":
        return synthetic_row(cfg)
    if fmt == "voc":
        return voc_row(cfg)
    return coco_row(cfg)


def synthetic_row(cfg: Config) -> Row:
    """The built-in set: cached, or generated by `ohem-tune run` before the trials start."""
    from ohem_tune.data.synthetic import META_FILE, VAL_META_FILE, make_spec

    syn = cfg.dataset.synthetic
    spec = make_spec(syn.preset, syn.seed, syn.num_train, syn.num_test, syn.image_size)
    folder = Path(syn.cache_dir) / spec.key()
    what = (
        f"synthetic '{spec.preset}' ({spec.num_train} train / {spec.num_test} test images, "
        f"{spec.image_size} px, {spec.proposals_per_image} built-in proposals each)"
    )
    val = cfg.train.eval_split == "val"
    cached = (folder / META_FILE).is_file() and (not val or (folder / VAL_META_FILE).is_file())
    if cached:
        return Row("dataset", "ok", f"{what}: cached at {shown(folder)}")
    return Row(
        "dataset",
        "ok",
        f"{what}: not cached yet; `ohem-tune run` generates it into "
        f"{shown(folder)} before the trials start",
    )


def voc_row(cfg: Config) -> Row:
    """A VOC devkit: every used split's list, XMLs and JPEGs (check_voc07_tree for the paper
    layout), and each split parsed by the trials' loader."""
    from ohem_tune.data.voc import load_voc

    ds = cfg.dataset
    root = Path(ds.root)  # type: ignore[arg-type]
    splits = splits_used(cfg)
    data_dir = voc07_data_dir(root)
    if data_dir is not None:
        problem = _voc07_problem(data_dir, splits)
        if problem:
            return Row("dataset", "fail", problem)
    elif not root.is_dir():
        return Row(
            "dataset",
            "fail",
            f"{shown(root)}: dataset.root not found; set dataset.root "
            f"to the VOC devkit year dir, or {PREPARE_HINT}",
        )
    parts = []
    jpegs = root / "JPEGImages"
    on_disk = set(os.listdir(jpegs)) if jpegs.is_dir() else set()
    try:
        for split in splits:
            dataset = load_voc(root, split, ds.class_names)
            images = {r.path.name for r in dataset.records}
            lost = sorted(images - on_disk)
            if lost:
                return Row(
                    "dataset",
                    "fail",
                    f"{shown(jpegs)}: {len(lost)} image(s) "
                    f"of split {split} missing (e.g. {lost[0]})",
                )
            objects = sum(len(r.boxes) for r in dataset.records)
            parts.append(f"{split} {len(dataset)} images ({objects} objects)")
    except OhemTuneError as exc:
        return Row("dataset", "fail", str(exc))
    return Row("dataset", "ok", f"VOC {shown(root)}: {', '.join(parts)}")


def _voc07_problem(data_dir: Path, splits: Sequence[str]) -> str:
    """What check_voc07_tree finds wrong with the devkit or the used splits ('' when fine)."""
    from ohem_tune.data.prepare import check_voc07_tree

    wanted = {"VOC2007 devkit", *(f"split {s}" for s in splits)}
    bad = [f for f in check_voc07_tree(data_dir) if f.item in wanted and not f.ok]
    if not bad:
        return ""
    found = "; ".join(f"{shown(f.path)}: {f.detail}" for f in bad)
    fixes = list(dict.fromkeys(f.fix for f in bad if f.fix))
    return found + (f"; {'; '.join(fixes)}" if fixes else "")


def coco_row(cfg: Config) -> Row:
    """COCO: the annotation files and image folders exist (the json is parsed by the trials)."""
    ds = cfg.dataset
    root = Path(ds.root)  # type: ignore[arg-type]
    needed = [("dataset.root", root)]
    for name in ("coco_train_json", "coco_test_json", "coco_train_images", "coco_test_images"):
        value = getattr(ds, name)
        if value is not None:
            needed.append((f"dataset.{name}", _under(root, value)))
    missing = [(field, path) for field, path in needed if not path.exists()]
    if missing:
        field, path = missing[0]
        return Row(
            "dataset",
            "fail",
            f"{shown(path)}: {field} not found; put the files there or --set {field}=...",
        )
    return Row(
        "dataset",
        "ok",
        f"COCO {shown(root)}: annotation files and images found (parsed when a trial starts)",
    )


def _under(root: Path | None, path: Path) -> Path:
    return path if path.is_absolute() or root is None else Path(root) / path


def _key(path: Path) -> Path:
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


# ------------------------------------------------------------------------------ proposals


def proposal_rows(configs: Sequence[Config], fixes: dict[Path, str] | None = None) -> list[Row]:
    """One row per distinct proposal file (opened, counted, its ids checked against the splits
    it serves), or one row per generator used instead of files."""
    files: dict[Path, list[tuple[str, Path | None, str]]] = {}  # file -> (format, root, split)
    generated: dict[str, Row] = {}
    for cfg in configs:
        ds, prop = cfg.dataset, cfg.dataset.proposals
        uses = [("train", ds.train_split), ("test", ds.test_split)]
        if cfg.train.eval_split == "val":
            uses.append(("train", ds.val_split))  # val proposals come from train_file
        for kind, split in uses:
            given = prop.test_file if kind == "test" else prop.train_file
            if given is not None:
                entry = files.setdefault(_key(_under(ds.root, given)), [])
                if (ds.format, ds.root, split) not in entry:
                    entry.append((ds.format, ds.root, split))
            elif ds.format != "synthetic":
                generated.setdefault(prop.generator, generator_row(cfg))
    rows = [proposal_file_row(path, uses, (fixes or {}).get(path)) for path, uses in files.items()]
    return rows + list(generated.values())


def generator_row(cfg: Config) -> Row:
    """Proposals without a file: computed at first use, or none at all."""
    prop = cfg.dataset.proposals
    if prop.generator == "selective_search":
        return Row(
            "proposals",
            "ok",
            "selective search: computed on first use and cached in "
            f"{shown(prop.cache_dir)} (slow; precomputed files are faster)",
        )
    if prop.generator == "none":
        return Row("proposals", "warn", "none: trials train on ground-truth boxes only")
    return Row(
        "proposals",
        "fail",
        f"dataset.proposals: {cfg.dataset.format} data has no "
        "built-in proposals; set dataset.proposals.train_file / test_file",
    )


def proposal_file_row(
    path: Path, uses: Sequence[tuple[str, Path | None, str]], fix: str | None
) -> Row:
    """One proposal file read by the project's loader: images, boxes, and every id of each split
    it serves covered (ids of splits whose dataset is missing are not checked)."""
    from ohem_tune.data.proposals import by_image_key, read_proposals
    from ohem_tune.data.voc import read_split

    splits = list(dict.fromkeys(split for _, _, split in uses))
    check = f"proposals {'+'.join(splits)}"
    if not path.is_file():
        return Row(check, "fail", f"{shown(path)}: not found; {fix or PREPARE_HINT}")
    try:
        per_image = read_proposals(path)
    except OhemTuneError as exc:
        return Row(check, "fail", str(exc))
    boxes = sum(len(b) for b in per_image.values())
    empty = sum(1 for b in per_image.values() if len(b) == 0)
    detail = f"{shown(path)}: {len(per_image)} images, {boxes} boxes"
    if per_image:
        detail += f" (mean {boxes / len(per_image):.0f} per image)"
    if empty:
        detail += f", {empty} image(s) without a box"
    lookup = by_image_key(per_image)
    covered, unchecked = [], []
    for fmt, root, split in uses:
        if fmt != "voc" or root is None:
            unchecked.append(split)
            continue
        try:
            ids = read_split(Path(root), split)
        except OhemTuneError:
            unchecked.append(f"{split} (dataset missing)")
            continue
        missing = [i for i in ids if str(i) not in lookup]
        if missing:
            return Row(
                check,
                "fail",
                f"{detail}; no proposals for {len(missing)} of the "
                f"{len(ids)} ids of {split} (e.g. {missing[0]}); use the file made for "
                "this split",
            )
        covered.append(f"{split} ({len(ids)})")
    if covered:
        detail += f"; covers every id of {', '.join(dict.fromkeys(covered))}"
    if unchecked:
        detail += f"; ids not checked for {', '.join(dict.fromkeys(unchecked))}"
    return Row(check, "ok", detail)


# ------------------------------------------------------------------------------ weights


def weights_rows(configs: Sequence[Config], fixes: dict[Path, str] | None = None) -> list[Row]:
    """One row per distinct weights file, loaded into every model config that names it."""
    files: dict[Path, list[Config]] = {}
    for cfg in configs:
        if cfg.model.weights is not None:
            files.setdefault(_key(cfg.model.weights), []).append(cfg)
    if not files:
        return [Row("weights", "ok", "none: every trial trains from scratch (no model.weights)")]
    return [weights_file_row(path, cfgs, (fixes or {}).get(path)) for path, cfgs in files.items()]


def weights_file_row(path: Path, configs: Sequence[Config], fix: str | None = None) -> Row:
    """The file loaded with the trials' strict loader into each distinct model that uses it (on
    the meta device: shapes and names are checked, no memory is spent on the model)."""
    models: dict[str, Config] = {}
    for cfg in configs:
        models.setdefault(cfg.model.model_dump_json(), cfg)
    backbones = list(dict.fromkeys(c.model.backbone for c in models.values()))
    check = f"weights {'+'.join(backbones)}"
    if not path.is_file():
        return Row(check, "fail", f"{shown(path)}: not found; {fix or PREPARE_HINT}")
    import torch

    from ohem_tune.modeling import build_model
    from ohem_tune.modeling.weights import load_pretrained

    loaded = []
    for cfg in models.values():
        m = cfg.model
        bare = cfg.model_copy(update={"model": m.model_copy(update={"weights": None})})
        try:
            with warnings.catch_warnings():  # "copying into a meta parameter is a no-op"
                warnings.simplefilter("ignore", UserWarning)
                with torch.device("meta"):
                    model = build_model(bare, len(cfg.dataset.class_names or ()) or 20)
                summary = load_pretrained(model, path, m.backbone, m.weights_format or "ours")
        except OhemTuneError as exc:
            return Row(check, "fail", str(exc))
        groups = ", ".join(
            f"{g} {summary.loaded.get(g, 0)}/{n}" for g, n in summary.total.items() if g != "other"
        )
        loaded.append(f"{m.backbone} ({m.weights_format}): {groups} tensors loaded")
    size = path.stat().st_size / 2**20
    return Row(check, "ok", f"{shown(path)} ({size:.1f} MiB): {'; '.join(loaded)}")
