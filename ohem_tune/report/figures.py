"""PNG figures (matplotlib Agg, no pyplot state): loss per RoI, mAP per variant, cost ratios."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ohem_tune.report import paper
from ohem_tune.report.data import ReportData
from ohem_tune.report.format import format_number
from ohem_tune.report.layout import Variant
from ohem_tune.report.table import Table
from ohem_tune.report.tables import MAP

DPI = 120


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def variant_legend(data: ReportData, v: Variant) -> str:
    """'OHEM · VGGM · N=2 bg_lo=0 (ohem_vggm)': what a reader needs to tell lines apart."""
    n = format_number(data.param(v, "solver.ims_per_batch"))
    bg_lo = format_number(data.param(v, "sampler.bg_lo"))
    model = data.model(v) or "?"
    return f"{v.label} · {model} · N={n} bg_lo={bg_lo} ({v.name})"


def loss_curves(data: ReportData, histories: pd.DataFrame) -> pd.DataFrame:
    """Per variant and logged step: mean, min, max and count over the finished seeds."""
    frames = []
    for v in data.layout.variants:
        curve = histories[histories["run_id"].isin(set(data.finished(v)["run_id"]))]
        if curve.empty:
            continue
        stats = curve.groupby("step")["value"].agg(["mean", "min", "max", "count"]).reset_index()
        frames.append(stats.assign(variant=v.name))
    if not frames:
        return pd.DataFrame(columns=["variant", "step", "mean", "min", "max", "count"])
    return pd.concat(frames, ignore_index=True)[["variant", "step", "mean", "min", "max", "count"]]


def loss_figure(data: ReportData, histories: pd.DataFrame, path: Path) -> Path | None:
    """Mean loss per RoI over all RoIs vs iteration, one line per variant (mean over seeds).

    The band spans the seeds' min..max at each logged step. Returns None without history.
    """
    curves = loss_curves(data, histories)
    if curves.empty:
        return None
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for v in data.layout.variants:
        c = curves[curves["variant"] == v.name]
        if c.empty:
            continue
        (line,) = ax.plot(c["step"], c["mean"], label=variant_legend(data, v), lw=1.4)
        if c["count"].max() > 1:
            ax.fill_between(c["step"], c["min"], c["max"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean loss per RoI (all RoIs)")
    ax.set_title(f"{data.layout.experiment}: training loss per RoI (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def map_figure(data: ReportData, path: Path) -> Path | None:
    """VOC07 mAP per variant: mean with std error bars, each seed as a dot, the paper as an x."""
    variants = [v for v in data.layout.variants if data.summary(v, MAP).n]
    if not variants:
        return None
    fig = Figure(figsize=(max(5.0, 0.9 * len(variants) + 2.0), 4.5))
    ax = fig.add_subplot()
    stats = [data.summary(v, MAP) for v in variants]
    xs = list(range(len(variants)))
    means = [s.mean * 100 for s in stats]
    ax.bar(xs, means, color=["C1" if v.baseline else "C0" for v in variants], alpha=0.7)
    ax.errorbar(
        xs, means, yerr=[(s.std or 0.0) * 100 for s in stats], fmt="none", ecolor="k", capsize=4
    )
    seed_x, seed_y = [], []
    for i, v in enumerate(variants):
        values = data.by_seed(v, MAP).values()
        seed_x += [i] * len(values)
        seed_y += [x * 100 for x in values]
    ax.scatter(seed_x, seed_y, color="k", s=10, zorder=3)
    paper_x = [i for i, v in enumerate(variants) if v.paper_map is not None]
    paper_y = [variants[i].paper_map for i in paper_x]
    if paper_x:
        ax.scatter(paper_x, paper_y, marker="x", color="C3", s=40, zorder=3)
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels([v.name for v in variants], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("VOC07 mAP (%)")
    ax.set_title("mAP per variant: mean ± std (bars), seeds (dots), paper (red x)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def cost_figure(table: Table, path: Path) -> Path | None:
    """OHEM/FRCN ratios of sec/iter and peak memory per trunk and device, beside the paper's."""
    groups: list[tuple[str, float | None, float | None, str | None]] = []
    model = ""
    for row in table.rows:
        model = row[0].text or model
        device = row[1].text
        groups.append((f"{model}\n{device}", row[4].value, row[7].value, model))
    if not any(t is not None or m is not None for _, t, m, _ in groups):
        return None
    fig = Figure(figsize=(max(5.0, 1.8 * len(groups) + 1.5), 4.0))
    ax = fig.add_subplot()
    width = 0.2
    labelled: set[str] = set()
    for i, (_, time_ratio, mem_ratio, model_name) in enumerate(groups):
        ref_t = paper.SEC_PER_ITER.get(model_name or "")
        ref_m = paper.PEAK_MEM_GB.get(model_name or "")
        bars = [
            (time_ratio, "C0", "sec/iter (measured)"),
            (ref_t[1] / ref_t[0] if ref_t else None, "C0", "sec/iter (paper)"),
            (mem_ratio, "C2", "memory (measured)"),
            (ref_m[1] / ref_m[0] if ref_m else None, "C2", "memory (paper)"),
        ]
        for j, (value, color, name) in enumerate(bars):
            if value is None:
                continue
            ax.bar(
                i + (j - 1.5) * width,
                value,
                width,
                color=color,
                alpha=0.9 if "measured" in name else 0.35,
                hatch="" if "measured" in name else "//",
                label=None if name in labelled else name,
            )
            labelled.add(name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax.set_ylabel("OHEM / FRCN")
    ax.set_title(f"Training cost ratio (paper: {paper.COST_DEVICE})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
