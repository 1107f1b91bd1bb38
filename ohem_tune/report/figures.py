"""PNG figures (matplotlib Agg, no pyplot state): loss per RoI, mAP per variant, mAP curves vs
iteration and training time, cost ratios."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ohem_tune.report import paper
from ohem_tune.report.curves import curve_stats
from ohem_tune.report.data import ReportData
from ohem_tune.report.format import format_number
from ohem_tune.report.layout import Variant
from ohem_tune.report.table import Table
from ohem_tune.report.tables import MAP, metric_name

DPI = 120


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


SAMPLER_COLORS = {"heuristic": "C0", "ohem": "C3", "all_rois": "C2"}
LINE_STYLES = ("-", "--", ":", "-.")


def variant_legend(data: ReportData, v: Variant, with_model: bool = True) -> str:
    """'OHEM · VGGM · N=2 bg_lo=0 (ohem_vggm)': what a reader needs to tell lines apart."""
    n = format_number(data.param(v, "solver.ims_per_batch"))
    bg_lo = format_number(data.param(v, "sampler.bg_lo"))
    model = f" · {data.model(v) or '?'}" if with_model else ""
    return f"{v.label}{model} · N={n} bg_lo={bg_lo} ({v.name})"


def _styles(data: ReportData, variants: list[Variant]) -> dict[str, tuple[str, str]]:
    """Colour by sampler, line style by the variant's rank among its sampler's variants."""
    extra = iter(f"C{i}" for i in (4, 5, 6, 7, 8, 9, 1))
    colors = dict(SAMPLER_COLORS)
    seen: dict[str, int] = {}
    out = {}
    for v in variants:
        sampler = data.sampler(v) or "?"
        if sampler not in colors:
            colors[sampler] = next(extra, "k")
        rank = seen.get(sampler, 0)
        seen[sampler] = rank + 1
        out[v.name] = (colors[sampler], LINE_STYLES[rank % len(LINE_STYLES)])
    return out


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
    """Mean loss per RoI over all RoIs vs iteration: one panel per trunk, one line per variant.

    Lines are the mean over finished seeds at each logged step, the band their min..max; colour
    marks the sampler (FRCN blue, OHEM red, all RoIs green). Returns None without history.
    """
    curves = loss_curves(data, histories)
    if curves.empty:
        return None
    drawn = [v for v in data.layout.variants if v.name in set(curves["variant"])]
    models = list(dict.fromkeys(data.model(v) for v in drawn))
    fig = Figure(figsize=(5.2 * len(models), 5.0 + 0.16 * len(drawn)))
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        variants = [v for v in drawn if data.model(v) == model]
        styles = _styles(data, variants)
        for v in variants:
            c = curves[curves["variant"] == v.name]
            color, style = styles[v.name]
            label = variant_legend(data, v, with_model=False)
            ax.plot(c["step"], c["mean"], color=color, ls=style, lw=1.5, label=label)
            if c["count"].max() > 1:
                ax.fill_between(c["step"], c["min"], c["max"], color=color, alpha=0.08)
        ax.set_title(str(model or "all"))
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    axes[0].set_ylabel("mean loss per RoI (all RoIs)")
    fig.suptitle(f"{data.layout.experiment}: training loss per RoI (mean over seeds)")
    return _save(fig, path)


CURVE_STYLES = ("-", ":", "-.")  # non-baseline rows of one sampler; baselines are dashed
CURVE_AXES = {"step": "iteration", "seconds": "training time (s; evaluations excluded)"}


def map_curve_figure(
    data: ReportData, curves: pd.DataFrame, path: Path, x: str = "step"
) -> Path | None:
    """Test mAP at each evaluation vs `x` ("step": iteration, "seconds": training seconds), one
    panel per trunk and one line per variant: the mean over finished seeds at each evaluated
    step (for "seconds" at the seeds' mean training time), a min..max band over seeds, baselines
    dashed, colour by sampler. None without curves."""
    stats = curve_stats(data, curves)
    if stats.empty:
        return None
    if x not in CURVE_AXES:
        raise ValueError(f"x must be one of {', '.join(CURVE_AXES)}, got {x!r}")
    drawn = [v for v in data.layout.variants if v.name in set(stats["variant"])]
    models = list(dict.fromkeys(data.model(v) for v in drawn))
    fig = Figure(figsize=(5.2 * len(models), 5.0 + 0.16 * len(drawn)))
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        variants = [v for v in drawn if data.model(v) == model]
        colors = _styles(data, variants)
        rank: dict[str, int] = {}
        for v in variants:
            c = stats[stats["variant"] == v.name].sort_values("step")
            color = colors[v.name][0]
            if v.baseline:
                style = "--"
            else:
                sampler = data.sampler(v) or "?"
                style = CURVE_STYLES[rank.get(sampler, 0) % len(CURVE_STYLES)]
                rank[sampler] = rank.get(sampler, 0) + 1
            label = variant_legend(data, v, with_model=False)
            xs = c[x]
            ax.plot(xs, c["mean"] * 100, color=color, ls=style, lw=1.5, marker="o", ms=3,
                    label=label)  # fmt: skip
            if c["count"].max() > 1:
                ax.fill_between(xs, c["min"] * 100, c["max"] * 100, color=color, alpha=0.08)
        ax.set_title(str(model or "all"))
        ax.set_xlabel(CURVE_AXES[x])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    axes[0].set_ylabel(f"test {metric_name(data)[0]} (%)")
    against = "iteration" if x == "step" else "training time"
    fig.suptitle(f"{data.layout.experiment}: test mAP vs {against} (mean over seeds)")
    return _save(fig, path)


def map_figure(data: ReportData, path: Path) -> Path | None:
    """VOC07 mAP per variant: mean with std error bars, each seed as a dot, the paper as an x."""
    variants = [v for v in data.layout.variants if data.summary(v, MAP).n]
    if not variants:
        return None
    fig = Figure(figsize=(max(6.0, 0.9 * len(variants) + 2.0), 4.8))
    ax = fig.add_subplot()
    stats = [data.summary(v, MAP) for v in variants]
    xs = list(range(len(variants)))
    means = [s.mean * 100 for s in stats]
    colors = [color for color, _ in _styles(data, variants).values()]
    bars = ax.bar(xs, means, color=colors, alpha=0.6)
    for bar, v in zip(bars, variants, strict=True):
        if v.baseline:
            bar.set(edgecolor="k", linewidth=1.5, hatch="//")
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
        ax.scatter(paper_x, paper_y, marker="x", color="k", s=40, zorder=3)
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels([v.name for v in variants], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("VOC07 mAP (%)")
    ax.set_title(
        "VOC07 mAP per variant: mean ± std, seeds (dots), paper (x)\n"
        "FRCN blue, OHEM red, all RoIs green; baselines hatched",
        fontsize=9,
    )
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


def search_figure(
    trials: pd.DataFrame, progress: pd.DataFrame, metric: str, path: Path
) -> Path | None:
    """The search metric vs iteration, one line per search trial: finished solid, stopped by the
    scheduler dashed and grey, the best finished trial (first row of `trials`) thick and red."""
    if trials.empty or progress.empty:
        return None
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    best = trials.iloc[0]["run_id"] if trials.iloc[0]["status"] == "FINISHED" else None
    drawn = 0
    for _, trial in trials.iterrows():
        curve = progress[progress["run_id"] == trial["run_id"]]
        if curve.empty:
            continue
        drawn += 1
        name = f"t{int(trial['number']):02d}"
        if trial["run_id"] == best:
            ax.plot(curve["step"], curve["value"], color="C3", lw=2.2, marker="o", ms=3,
                    label=f"{name} (best)", zorder=3)  # fmt: skip
        elif trial["status"] == "FINISHED":
            ax.plot(curve["step"], curve["value"], color="C0", lw=1.0, marker="o", ms=2, alpha=0.8)
        else:
            ax.plot(curve["step"], curve["value"], color="0.5", lw=0.9, ls="--", marker="x",
                    ms=3, alpha=0.8)  # fmt: skip
    if not drawn:
        return None
    ax.plot([], [], color="C0", lw=1.0, label="finished")
    ax.plot([], [], color="0.5", lw=0.9, ls="--", label="stopped by the scheduler")
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric)
    ax.set_title(f"Search trials: {metric} at each report", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
