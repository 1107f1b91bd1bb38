"""The paper's tables built from the report data: ablation, M/B, cost, per-class AP, COCO AP."""

from __future__ import annotations

import logging

from ohem_tune import tracking_keys as K
from ohem_tune.report import paper
from ohem_tune.report.data import Flags, ReportData
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


def _metric_name(data: ReportData) -> tuple[str, str, str]:
    """How to name final/mAP: by the runs' test.metric (VOC07 unless they all say otherwise)."""
    col = "params.test.metric"
    metrics = set(data.runs[col].dropna()) if col in data.runs.columns else set()
    if len(metrics) == 1:
        return METRIC_NAMES.get(metrics.pop(), METRIC_NAMES["voc07"])
    return METRIC_NAMES["voc07"]


def ablation_table(data: ReportData) -> Table:
    """Table 1: one row per variant with its settings, mAP over seeds, the paper and Δ baseline."""
    variants = list(data.layout.variants)
    with_area = data.has_metric(MAP_AREA)
    header, title, described = _metric_name(data)
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
    stand_ins = _stand_in_note(data, variants)
    if stand_ins:
        table.notes.append(stand_ins)
    add_protocol_note(table, data, variants)
    table.notes += data.exclusion_notes(variants)
    return table


def add_protocol_note(table: Table, data: ReportData, variants: list[Variant]) -> None:
    """One note line with the test protocol of the table's finished runs; a loud warning (and a
    log line) when they were tested under more than one, since their numbers do not compare."""
    protocols = data.protocols(variants)
    if not protocols:
        return
    if len(protocols) == 1:
        table.notes.append(f"Test protocol: {next(iter(protocols))}.")
        return
    listed = "; ".join(
        f"{protocol} ({', '.join(f'`{n}`' for n in names)})"
        for protocol, names in protocols.items()
    )
    table.notes.append(f"Test protocols (MIXED, {len(protocols)}): {listed}.")
    message = (
        f"MIXED TEST PROTOCOLS in table '{table.key}': its runs were tested under "
        f"{len(protocols)} protocols, so its rows do not compare (see the note)"
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
        add_protocol_note(table, data, involved)
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
    """Training cost per trunk and device: sec/iter and peak memory, FRCN vs OHEM, and ratios."""
    variants = list(data.layout.variants)
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
    table.notes.append("Paper columns: heuristic / OHEM.")
    if used:
        table.notes.append("Cells use variants: " + "; ".join(used) + ".")
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
    add_protocol_note(table, data, variants)
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
    add_protocol_note(table, data, variants)
    table.notes += data.exclusion_notes(variants)
    return table
