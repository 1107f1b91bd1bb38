"""The paper's tables built from the report data: ablation, M/B, cost, per-class AP, COCO AP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.report import curves as eval_curves
from ohem_tune.report import paper
from ohem_tune.report.data import NO_PROTOCOL, Flags, ReportData
from ohem_tune.report.format import (
    delta_cell,
    format_lr,
    format_number,
    mean_cell,
    mean_std_cell,
    number_cell,
    ratio_cell,
)
from ohem_tune.report.layout import Variant
from ohem_tune.report.stats import Summary, paired_difference, summarize
from ohem_tune.report.table import MISSING, Cell, Column, Table, text_cell

log = logging.getLogger(__name__)

MAP = f"metrics.{K.FINAL_MAP}"
MAP_AREA = f"metrics.{K.FINAL_MAP_AREA}"
SEC_PER_ITER = f"metrics.{K.FINAL_SEC_PER_ITER}"
PEAK_MEM = f"metrics.{K.FINAL_PEAK_MEM_GB}"
RESERVED_MEM = f"metrics.{K.FINAL_PEAK_MEM_RESERVED}"  # CUDA runs only (older runs lack it)
AP_PREFIX = f"metrics.{K.FINAL_AP_PREFIX}"
COCO_PREFIX = f"metrics.{K.FINAL_COCO_PREFIX}"
COCO_COLUMNS = paper.COCO_COLUMNS
STATS_NOTE = (
    "n: finished seeds in the cell; ± is the sample standard deviation (ddof = 1), "
    "shown as — when n = 1; — with n = 0: no finished run."
)


def _label_cells(variants: list[Variant]) -> list[tuple[str, bool]]:
    """Experiment labels with consecutive repeats blanked (as the paper spans them)."""
    out, previous = [], None
    for v in variants:
        out.append(("" if v.label == previous else v.label, v.label != previous))
        previous = v.label
    return out


# test.metric -> (column header, title, description) of final/mAP
METRIC_NAMES = {
    "voc07": ("07 mAP", "VOC07 mAP", "VOC07 11-point mAP"),
    "voc10": ("mAP (all-pt)", "VOC2010+ mAP", "VOC2010+ all-points mAP"),
    "coco": ("COCO AP", "COCO AP", "COCO AP@[.5:.95]"),
}


def metric_name(data: ReportData) -> tuple[str, str, str]:
    """How to name final/mAP: by the runs' test.metric (VOC07 unless they all say otherwise)."""
    col = "params.test.metric"
    metrics = set(data.runs[col].dropna()) if col in data.runs.columns else set()
    if len(metrics) == 1:
        return METRIC_NAMES.get(metrics.pop(), METRIC_NAMES["voc07"])
    return METRIC_NAMES["voc07"]


def ablation_table(data: ReportData, curves: pd.DataFrame | None = None) -> Table:
    """Table 1: one row per variant with its settings, mAP over seeds, the paper, Δ baseline
    and, when the runs have evaluation `curves` (curves.fetch_curves), Δ at equal training time."""
    variants = list(data.layout.variants)
    with_area = data.has_metric(MAP_AREA)
    curves = eval_curves.empty_curves() if curves is None else curves
    equal_time = eval_curves.has_periodic(data, curves)
    runs_curves = eval_curves.by_run(curves) if equal_time else {}
    equal_time_notes: list[str] = []
    clamped_any = False
    header, title, described = metric_name(data)
    columns = [
        Column("Experiment", "l"),
        Column("Model", "l"),
        Column("N"),
        Column("LR"),
        Column("B"),
        Column("bg_lo"),
        Column(header, better="high"),
        Column("n"),
    ]
    if with_area:
        columns.append(Column("AP (all-pt)", better="high"))
    columns += [
        Column("paper", better="high"),
        Column("Δ vs baseline [95% CI]", better="high"),
    ]
    if equal_time:
        columns.append(Column(EQUAL_TIME_HEADER, better="high"))
    table = Table(
        key="ablation",
        title=f"Table 1: ablations ({title}, %)",
        caption=(
            f"Ablations of experiment `{data.layout.experiment}`: {described} (%) as "
            "mean ± std over seeds, the paper's number beside it, and the difference to the "
            "baseline of the same model paired by seed."
        ),
        columns=columns,
    )
    baselines_used = set()
    for v, (label, new_group) in zip(variants, _label_cells(variants), strict=True):
        stats = data.summary(v, MAP)
        row = [
            text_cell(label) if label else Cell(""),
            text_cell(data.model(v)),
            text_cell(format_number(data.param(v, "solver.ims_per_batch"))),
            text_cell(format_lr(data.param(v, "solver.lr"))),
            text_cell(format_number(data.param(v, "sampler.rois_per_batch"))),
            text_cell(format_number(data.param(v, "sampler.bg_lo"))),
            mean_std_cell(stats),
            Cell(str(stats.n)),
        ]
        if with_area:
            row.append(mean_std_cell(data.summary(v, MAP_AREA)))
        row.append(number_cell(v.paper_map))
        base = data.baseline_for(v)
        if base is None:
            row.append(Cell(MISSING))
        elif base.name == v.name:
            row.append(Cell("baseline"))
        else:
            baselines_used.add(base.name)
            row.append(delta_cell(paired_difference(data.by_seed(v, MAP), data.by_seed(base, MAP))))
        if equal_time:
            if base is None or base.name == v.name:
                row.append(Cell(row[-1].text))  # "—" or "baseline", as the Δ column
            else:
                result = eval_curves.equal_time(data, runs_curves, v, base)
                cell = delta_cell(result.diff)
                if result.clamped and cell.text != MISSING:
                    cell.text += "*"
                    clamped_any = True
                row.append(cell)
                equal_time_notes += [
                    f"`{v.name}` seed{'s' if len(seeds) > 1 else ''} "
                    f"{', '.join(map(str, seeds))} ({reason})"
                    for reason, seeds in result.missing.items()
                ]
        table.add_row(row, new_group=new_group)
    table.mark_best()
    table.notes.append(STATS_NOTE)
    table.notes.append(
        "Δ vs baseline: mean over seeds run by both of (variant − baseline) in mAP points, with "
        "its 95% Student-t interval (shown when n ≥ 2); n = paired seeds."
        + (
            " Baselines: " + ", ".join(f"`{b}`" for b in sorted(baselines_used)) + "."
            if baselines_used
            else ""
        )
    )
    if with_area:
        table.notes.append("AP (all-pt): VOC2010+ area under the precision envelope (%).")
    table.notes += _equal_time_notes(equal_time, clamped_any, equal_time_notes)
    stand_ins = _stand_in_note(data, variants)
    if stand_ins:
        table.notes.append(stand_ins)
    add_measured_note(table, data, variants)
    table.notes += data.exclusion_notes(variants)
    return table


EQUAL_TIME_HEADER = "Δ at baseline's time [95% CI]"


def _equal_time_notes(shown: bool, clamped: bool, missing: list[str]) -> list[str]:
    """What the equal-time column computes, its clamp mark, the seeds without a value; or why
    the column is absent."""
    if not shown:
        return [
            f"{EQUAL_TIME_HEADER}: not shown: no run logged two or more evaluations "
            "(train.eval_period: 0 evaluates only at the end), so there is no mAP curve to read "
            "at the baseline's training time, nor mAP-vs-iteration / training-time figures."
        ]
    notes = [
        f"{EQUAL_TIME_HEADER}: per seed, the variant's test mAP when it had trained as long as "
        "the same seed's baseline did in all (final/train_seconds: training iterations only, "
        "evaluations and checkpoints excluded), read linearly between the variant's evaluations "
        "(eval/mAP at eval/train_seconds), minus the baseline's final mAP; mean and 95% "
        "Student-t interval over seeds as in Δ vs baseline. Pairs on different devices (or CPU "
        "hosts) are not compared."
    ]
    if clamped:
        notes.append(
            "*: for some seed the baseline trained longer than the variant's last evaluation; "
            "there the variant's final mAP is used (not extrapolated)."
        )
    if missing:
        notes.append(f"{EQUAL_TIME_HEADER}, no value for: " + "; ".join(missing) + ".")
    return notes


NOT_RECORDED = "not recorded"
# measured field -> (plural for its MIXED note, how a mixed field is warned about (None: not
# here, the report warns once), how a value reads, how a missing value reads)
_MEASURED: dict[str, tuple[str, str | None, Callable[[str], str], str]] = {
    "data": ("Datasets", "measured on {n} datasets", "{} data".format, "dataset not recorded"),
    "split": ("Test splits", "tested on {n} splits", "`{}` split".format, "split not recorded"),
    "budget": (
        "Iteration budgets",
        "trained for {n} iteration budgets (train.max_iter)",
        "{} iterations (train.max_iter)".format,
        NOT_RECORDED,
    ),
    "profile": ("Profiles", None, "`{}`".format, NOT_RECORDED),
}


def _dataset_name(runs: pd.DataFrame) -> list[str | None]:
    """'synthetic', or the format with the root's last folder: 'voc (VOC2007)'."""
    formats = _column(runs, "params.dataset.format")
    roots = _column(runs, "params.dataset.root")
    out: list[str | None] = []
    for fmt, root in zip(formats, roots, strict=True):
        name = Path(str(root)).name if isinstance(root, str) and root else ""
        out.append(
            f"{fmt} ({name})" if isinstance(fmt, str) and fmt != "synthetic" and name else fmt
        )
    return out


def _column(runs: pd.DataFrame, column: str) -> list[Any]:
    return list(runs[column]) if column in runs.columns else [None] * len(runs)


def _measured_values(groups: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, list[str]]]:
    """Per measured field: value -> the names of the groups (variants) whose runs have it."""
    getters = {
        "protocol": lambda runs: _column(runs, "test_protocol"),
        "data": _dataset_name,
        "split": lambda runs: _column(runs, "params.dataset.test_split"),
        "budget": lambda runs: _column(runs, "params.train.max_iter"),
        "profile": lambda runs: _column(runs, "profile"),
    }
    out: dict[str, dict[str, list[str]]] = {key: {} for key in getters}
    for name, runs in groups.items():
        for key, get in getters.items():
            missing = NO_PROTOCOL if key == "protocol" else NOT_RECORDED
            for value in get(runs):
                text = str(value) if isinstance(value, str) and value else missing
                names = out[key].setdefault(text, [])
                if name not in names:
                    names.append(name)
    return out


def _listed(values: dict[str, list[str]]) -> str:
    return "; ".join(
        f"{value} ({', '.join(f'`{n}`' for n in names)})" for value, names in values.items()
    )


def add_measured_note(
    table: Table,
    data: ReportData,
    variants: list[Variant],
    groups: Mapping[str, pd.DataFrame] | None = None,
) -> None:
    """The 'Measured:' note line: dataset, split, test protocol, iteration budget and profile of
    the table's finished runs. A field with several values reads MIXED, gets a note listing them
    and, except the profile (warned once for the report), a loud warning: its rows do not
    compare. `groups` (name -> runs) replaces the variants' finished runs (the search table's
    trials)."""
    if groups is None:
        groups = {v.name: data.finished(v) for v in variants}
    values = _measured_values(groups)
    protocols = values["protocol"]
    if not protocols:
        return

    def clause(key: str) -> str:
        found, (_, _, shown, missing) = values[key], _MEASURED[key]
        if len(found) > 1:
            return f"MIXED ({len(found)}, listed below)"
        value = next(iter(found))
        return missing if value == NOT_RECORDED else shown(value)

    protocol = next(iter(protocols)) if len(protocols) == 1 else None
    table.notes.append(
        f"Measured: {clause('data')}, {clause('split')}; test protocol: "
        f"{protocol or f'MIXED ({len(protocols)}, listed below)'}; iteration budget: "
        f"{clause('budget')}; profile: {clause('profile')}."
    )
    if protocol is None:
        table.notes.append(f"Test protocols (MIXED, {len(protocols)}): {_listed(protocols)}.")
        _warn(table, "TEST PROTOCOLS", f"tested under {len(protocols)} protocols")
    for key, (plural, how, _, _) in _MEASURED.items():
        found = values[key]
        if len(found) > 1:
            table.notes.append(f"{plural} (MIXED, {len(found)}): {_listed(found)}.")
            if how is not None:
                _warn(table, plural.upper(), how.format(n=len(found)))


def _warn(table: Table, what: str, how: str) -> None:
    message = (
        f"MIXED {what} in table '{table.key}': its runs were {how}, so its rows do not "
        "compare (see the note)"
    )
    log.warning(message)
    table.warnings.append(message)


def _stand_in_note(data: ReportData, variants: list[Variant]) -> str | None:
    """'Model is the paper's trunk; the runs used: VGGM -> small_vggm' when the two differ."""
    used: dict[str, set[str]] = {}
    for v in variants:
        model, backbone = data.model(v), data.param(v, "model.backbone")
        if model and backbone and str(backbone) != model:
            used.setdefault(model, set()).add(str(backbone))
    if not used:
        return None
    pairs = "; ".join(f"{m} → {', '.join(sorted(b))}" for m, b in used.items())
    return f"Model is the paper's trunk name; these runs trained model.backbone: {pairs}."


def _pick(data: ReportData, candidates: list[Variant]) -> Variant | None:
    """One variant for a cell: the baseline, else one with the baseline's N and B, else first."""
    if not candidates:
        return None
    for v in candidates:
        if v.baseline:
            return v
    base = data.baseline_for(candidates[0])
    if base is not None:
        keys = ("solver.ims_per_batch", "sampler.rois_per_batch")
        ref = [format_number(data.param(base, k)) for k in keys]
        for v in candidates:
            if [format_number(data.param(v, k)) for k in keys] == ref:
                return v
    return candidates[0]


def _cell_variant(data: ReportData, model: str | None, method: str, flags: Flags) -> Variant | None:
    candidates = [
        v
        for v in data.layout.variants
        if data.model(v) == model and data.sampler(v) == method and data.flags(v) == flags
    ]
    return _pick(data, candidates)


def _models(data: ReportData, variants: list[Variant]) -> list[str | None]:
    seen: list[str | None] = []
    for v in variants:
        m = data.model(v)
        if m not in seen:
            seen.append(m)
    return seen


def _flags_name(flags: Flags) -> str:
    parts = [n for n, f in zip(("train M", "test M", "B"), flags.key, strict=True) if f]
    return " + ".join(parts) or "plain"


def multiscale_bbox_tables(data: ReportData) -> list[Table]:
    """The M/B table per trunk: rows = (train M, test M, B), columns = FRCN and OHEM mAP."""
    variants = list(data.layout.variants)
    with_mb = [v for v in variants if any(data.flags(v).key)]
    models = _models(data, with_mb or [v for v in variants if v.baseline] or variants[:1])
    tables = []
    for model in models:
        key = "multiscale_bbox" if len(models) == 1 else f"multiscale_bbox_{model}"
        table = Table(
            key=key,
            title=f"Multi-scale (M) and iterative bbox regression (B), {model or 'all'}",
            caption=(
                "FRCN (heuristic sampler) vs OHEM with multi-scale training/testing and "
                "iterative bounding-box regression with voting; mean ± std over seeds. "
                "The paper's columns are VGG16 on VOC07."
            ),
            columns=[
                Column("Train M", "c"),
                Column("Test M", "c"),
                Column("B", "c"),
                Column("FRCN", better="high"),
                Column("n"),
                Column("OHEM", better="high"),
                Column("n"),
                Column("paper FRCN", better="high"),
                Column("paper OHEM", better="high"),
            ],
        )
        used: list[str] = []
        involved: list[Variant] = []
        for key_flags, (paper_frcn, paper_ohem) in paper.MULTISCALE_BBOX.items():
            flags = Flags(*key_flags)
            row = [Cell("✓" if f else "") for f in key_flags]
            for method in ("heuristic", "ohem"):
                v = _cell_variant(data, model, method, flags)
                if v is None:
                    row += [Cell(MISSING), Cell("0")]
                    continue
                involved.append(v)
                stats = data.summary(v, MAP)
                used.append(f"{_flags_name(flags)} {paper.METHOD_LABELS[method]} = `{v.name}`")
                row += [mean_std_cell(stats), Cell(str(stats.n))]
            row += [number_cell(paper_frcn), number_cell(paper_ohem)]
            table.add_row(row)
        table.mark_best()
        table.notes.append(STATS_NOTE)
        if used:
            table.notes.append("Cells use variants: " + "; ".join(used) + ".")
        add_measured_note(table, data, involved)
        table.notes += data.exclusion_notes(involved)
        tables.append(table)
    return tables


def _device_summary(
    data: ReportData, variant: Variant | None, column: str, device: str | None
) -> Summary:
    """The variant's finished values of `column` measured on `device` (None: any device)."""
    if variant is None:
        return summarize([])
    runs = data.finished(variant)
    if device is not None:
        runs = runs[runs["device"] == device]
    return data.summary(variant, column, runs)


def cost_table(data: ReportData) -> Table:
    """Training cost per trunk and device: sec/iter and peak memory, FRCN vs OHEM, and ratios.

    Memory is the training peak (allocated); when any run logged the CUDA caching allocator's
    reserved peak, two reserved columns follow (— for CPU runs and runs from before it).
    """
    variants = list(data.layout.variants)
    reserved = data.has_metric(RESERVED_MEM)
    table = Table(
        key="cost",
        title="Training cost: FRCN vs OHEM (sec/iter, peak memory GB)",
        caption=(
            "Mean ± std over seeds of the training time per iteration and the peak memory, "
            "per trunk and device, and the OHEM/FRCN ratio of the means. The paper measured on "
            f"an Nvidia {paper.COST_DEVICE}."
        ),
        columns=[
            Column("Model", "l"),
            Column("Device", "l"),
            Column("FRCN s/iter"),
            Column("OHEM s/iter"),
            Column("OHEM/FRCN"),
            Column("FRCN mem (GB)"),
            Column("OHEM mem (GB)"),
            Column("OHEM/FRCN"),
            *([Column("FRCN reserved (GB)"), Column("OHEM reserved (GB)")] if reserved else []),
            Column(f"paper s/iter ({paper.COST_DEVICE})"),
            Column("paper mem (GB)"),
        ],
    )
    no_flags = Flags()
    involved: list[Variant] = []
    used: list[str] = []
    all_devices: set[str] = set()
    for model in _models(data, variants):
        heur = _cell_variant(data, model, "heuristic", no_flags)
        ohem = _cell_variant(data, model, "ohem", no_flags)
        pair = [v for v in (heur, ohem) if v is not None]
        if not pair:
            continue
        involved += pair
        used += [f"{model} {paper.METHOD_LABELS[data.sampler(v)]} = `{v.name}`" for v in pair]
        devices = sorted(
            {d for v in pair for d in data.finished(v)["device"] if isinstance(d, str)}
        ) or [None]
        all_devices.update(d for d in devices if d)
        for i, device in enumerate(devices):
            cells = [text_cell(model) if i == 0 else Cell(""), text_cell(device)]
            for col, digits in ((SEC_PER_ITER, 3), (PEAK_MEM, 2)):
                h = _device_summary(data, heur, col, device)
                o = _device_summary(data, ohem, col, device)
                cells += [
                    mean_std_cell(h, 1.0, digits),
                    mean_std_cell(o, 1.0, digits),
                    ratio_cell(o, h),
                ]
            if reserved:
                cells += [
                    mean_std_cell(_device_summary(data, v, RESERVED_MEM, device), 1.0, 2)
                    for v in (heur, ohem)
                ]
            ref_s, ref_m = paper.SEC_PER_ITER.get(model or ""), paper.PEAK_MEM_GB.get(model or "")
            cells += [
                text_cell(f"{ref_s[0]} / {ref_s[1]}" if ref_s else None),
                text_cell(f"{ref_m[0]} / {ref_m[1]}" if ref_m else None),
            ]
            table.add_row(cells, new_group=i == 0)
    if len(all_devices) > 1:
        message = (
            f"runs of the cost table were measured on {len(all_devices)} devices "
            f"({', '.join(sorted(all_devices))}); rows are split by device, never averaged"
        )
        log.warning(message)
        table.warnings.append(message)
    table.notes.append(STATS_NOTE)
    if reserved:
        table.notes.append(
            "mem: training peak allocated (CUDA: torch's max allocated; CPU: peak RSS), "
            "evaluations excluded; reserved: the CUDA caching allocator's peak, what packing "
            "trials on one GPU needs."
        )
    table.notes.append("Paper columns: heuristic / OHEM.")
    if used:
        table.notes.append("Cells use variants: " + "; ".join(used) + ".")
    add_measured_note(table, data, involved)
    table.notes += data.exclusion_notes(involved)
    return table


def _metric_columns(data: ReportData, prefix: str) -> list[str]:
    return sorted(
        c[len(prefix) :] for c in data.runs.columns if c.startswith(prefix) and data.has_metric(c)
    )


def per_class_table(data: ReportData) -> Table:
    """Per-class VOC07 AP (%) per variant, mean over finished seeds; best per class in bold."""
    classes = _metric_columns(data, AP_PREFIX)
    variants = [v for v in data.layout.variants if not data.finished(v).empty]
    table = Table(
        key="per_class",
        title="Per-class AP (VOC07, %)",
        caption="Per-class VOC07 11-point AP (%), mean over the finished seeds of each variant.",
        columns=[
            Column("Experiment", "l"),
            Column("Model", "l"),
            Column("n"),
            Column("mAP", better="high"),
        ]
        + [Column(c, better="high") for c in classes],
    )
    for v in variants:
        stats = data.summary(v, MAP)
        row = [text_cell(v.label), text_cell(data.model(v)), Cell(str(stats.n)), mean_cell(stats)]
        row += [mean_cell(data.summary(v, AP_PREFIX + c)) for c in classes]
        table.add_row(row)
    table.mark_best()
    add_measured_note(table, data, variants)
    table.notes += data.exclusion_notes(variants)
    return table


def coco_table(data: ReportData) -> Table:
    """COCO AP@[.5:.95], AP50, AP75 and by object size per variant with COCO metrics."""
    present = set(_metric_columns(data, COCO_PREFIX))
    names = [c for c in COCO_COLUMNS if c in present]
    variants = [
        v for v in data.layout.variants if any(data.summary(v, COCO_PREFIX + c).n for c in names)
    ]
    table = Table(
        key="coco",
        title="COCO AP (%)",
        caption="COCO-style AP (pycocotools) per variant: mean ± std over finished seeds.",
        columns=[Column("Experiment", "l"), Column("Model", "l"), Column("n")]
        + [Column(c, better="high") for c in names],
    )
    for v in variants:
        n = max(data.summary(v, COCO_PREFIX + c).n for c in names)
        row = [text_cell(v.label), text_cell(data.model(v)), Cell(str(n))]
        row += [mean_std_cell(data.summary(v, COCO_PREFIX + c)) for c in names]
        table.add_row(row)
    for i, (method, values) in enumerate(paper.COCO.items() if variants else ()):
        by_name = dict(zip(paper.COCO_COLUMNS, values, strict=True))
        row = [Cell(f"paper: {method}"), Cell("VGG16"), Cell(MISSING)]
        row += [Cell(f"{by_name[c]:.1f}") for c in names]  # unranked: bold marks measured rows
        table.add_row(row, new_group=i == 0)
    table.mark_best()
    table.notes.append(STATS_NOTE)
    table.notes.append(
        "paper rows: COCO test-dev, VGG16, from the OHEM paper; +M: multi-scale train and test; "
        "*: trained on trainval. They are not ranked for bold."
    )
    add_measured_note(table, data, variants)
    table.notes += data.exclusion_notes(variants)
    return table
