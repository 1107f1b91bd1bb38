"""`build_report`: MLflow runs -> tidy Parquet -> tables (Markdown, LaTeX) -> figures -> index."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.errors import ConfigError, TrackingError
from ohem_tune.report.claims import claims_table
from ohem_tune.report.curves import empty_curves, fetch_curves, has_periodic
from ohem_tune.report.data import ReportData
from ohem_tune.report.exported import (
    INVOCATIONS_FILE,
    ExportedRuns,
    Overlap,
    compare_overlap,
    join_invocations,
    join_runs,
    read_report_folders,
)
from ohem_tune.report.index import index_page
from ohem_tune.report.latex import standalone_document, table_to_latex
from ohem_tune.report.layout import Layout, is_spec_path, layout_from_runs, layout_from_spec
from ohem_tune.report.markdown import table_to_markdown
from ohem_tune.report.runs import (
    fetch_histories,
    fetch_invocations,
    fetch_runs,
    find_experiment,
    invocations_frame,
    mark_superseded,
    open_client,
    resolve_tracking_uri,
    runs_frame,
    superseded_configs,
)
from ohem_tune.report.search import search_table, search_trials
from ohem_tune.report.table import Table
from ohem_tune.report.tables import (
    AP_PREFIX,
    COCO_PREFIX,
    PEAK_MEM,
    SEC_PER_ITER,
    ablation_table,
    coco_table,
    cost_table,
    multiscale_bbox_tables,
    per_class_table,
)

log = logging.getLogger(__name__)

FORMATS = ("md", "tex", "png", "parquet")
LOSS_METRIC = K.LOSS_PER_ROI_ALL


@dataclass
class ReportResult:
    """What a build wrote and what the reader should know about it."""

    out_dir: Path
    experiment: str
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    runs: pd.DataFrame | None = None
    seconds: float = 0.0


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """'md,tex' -> ('md', 'tex'); unknown names are a ConfigError naming the choices."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    unknown = [t for t in items if t not in FORMATS]
    if unknown or not items:
        bad = unknown[0] if unknown else "(empty)"
        raise ConfigError(f"--format: unknown format '{bad}'; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def safe_dirname(name: str) -> str:
    """An experiment name usable as one directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def _requested_tables(layout: Layout, data: ReportData, histories_wanted: bool) -> list[str]:
    if layout.tables is not None:
        return list(layout.tables)
    wanted = ["search"] if not data.search_runs.empty else []
    wanted.append("ablation")
    if any(any(data.flags(v).key) for v in layout.variants):
        wanted.append("multiscale_bbox")
    if data.has_metric(SEC_PER_ITER) or data.has_metric(PEAK_MEM):
        wanted.append("cost")
    if any(c.startswith(AP_PREFIX) and data.has_metric(c) for c in data.runs.columns):
        wanted.append("per_class")
    if any(c.startswith(COCO_PREFIX) and data.has_metric(c) for c in data.runs.columns):
        wanted.append("coco")
    if histories_wanted:
        wanted.append("loss_curve")
    return wanted


def _build_tables(
    names: list[str], data: ReportData, trials: pd.DataFrame, curves: pd.DataFrame
) -> list[Table]:
    tables: list[Table] = [claims_table(data)] if data.layout.claims else []  # the spec's claims
    for name in names:
        if name == "search":
            tables.append(search_table(data, trials))
        elif name == "ablation":
            tables.append(ablation_table(data, curves))
        elif name == "multiscale_bbox":
            tables.extend(multiscale_bbox_tables(data))
        elif name == "cost":
            tables.append(cost_table(data))
        elif name == "per_class":
            tables.append(per_class_table(data))
        elif name == "coco":
            tables.append(coco_table(data))
    for table in tables:
        if not table.rows:
            table.notes.insert(0, "No finished runs report these metrics.")
    return tables


OWN_FILES = ("table_*.md", "table_*.tex", "fig_*.png", "README.md", "report.tex", "*.parquet")
FIGURES = (
    (
        "fig_loss_per_roi.png",
        "Mean loss per RoI over all RoIs vs iteration, per trunk (mean over seeds; band: min-max).",
    ),
    ("fig_map.png", "VOC07 mAP per variant: mean ± std, seeds as dots, the paper's number as x."),
    (
        "fig_map_vs_iter.png",
        "Test mAP at each evaluation vs iteration, per trunk: one line per row (mean over seeds; "
        "band: min-max over seeds; baselines dashed).",
    ),
    (
        "fig_map_vs_time.png",
        "Test mAP vs training time (seconds of training iterations, evaluations and checkpoints "
        "excluded), per trunk: one line per row at each evaluation (mean over seeds of both "
        "seconds and mAP; band: min-max mAP over seeds; baselines dashed).",
    ),
    ("fig_cost.png", "OHEM/FRCN ratio of sec/iter and peak memory, measured and in the paper."),
    (
        "fig_search.png",
        "Search trials: the search metric at each report (finished, stopped by the scheduler, "
        "and the best trial).",
    ),
)


def _clear_previous(out_dir: Path, fmt: Sequence[str]) -> None:
    """Remove the files a previous build wrote, so none go stale; its Parquet files only when
    this build writes them anew (they may be the only record of its runs: `--add-runs`)."""
    for pattern in OWN_FILES:
        if pattern == "*.parquet" and "parquet" not in fmt:
            continue
        for path in out_dir.glob(pattern):
            path.unlink()


def _only_profile(runs: pd.DataFrame, profile: str, experiment: str) -> pd.DataFrame:
    """The runs of one profile (superseded flags recomputed among them)."""
    kept = runs[runs["profile"].fillna("") == profile]
    if kept.empty:
        found = ", ".join(sorted({str(p) or "(none)" for p in runs["profile"].fillna("")}))
        raise ConfigError(
            f"--profile {profile}: experiment '{experiment}' has no runs of that profile "
            f"(profiles: {found})"
        )
    return mark_superseded(kept).reset_index(drop=True)


def _run_warnings(data: ReportData) -> list[str]:
    """Runs left out of every table, and why."""
    warnings = []
    profiles = sorted({str(p) for p in data.runs["profile"].dropna() if str(p)})
    if len(profiles) > 1:
        warnings.append(
            f"the tables mix runs of {len(profiles)} profiles ({', '.join(profiles)}); "
            "pass --profile to report one"
        )
    if data.unplaced:
        counts = data.runs["variant"].value_counts()
        listed = ", ".join(f"`{v}` ({counts[v]} runs)" for v in data.unplaced)
        warnings.append(f"runs of variants not in the spec were left out: {listed}")
    fixed = data.all_runs[data.all_runs["search_point"].isna()]  # search points: own table
    for variant, n in superseded_configs(fixed).items():
        warnings.append(
            f"variant `{variant}` was run with {n} configurations (profiles or search points); "
            "only the one run last enters the tables (all runs are in runs.parquet)"
        )
    superseded = int(fixed["superseded"].sum())
    if superseded:
        warnings.append(
            f"{superseded} run(s) are superseded by a later run of the same trial or a later "
            "configuration of the variant; they are left out (column superseded in runs.parquet)"
        )
    return warnings


def _write_figures(
    data: ReportData,
    histories: pd.DataFrame,
    tables: list[Table],
    out_dir: Path,
    search: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    curves: pd.DataFrame | None = None,
) -> list[tuple[str, str]]:
    """Draw the figures the data supports; returns (file name, caption) of those written."""
    from ohem_tune.report import figures  # matplotlib only when figures are wanted

    cost = next((t for t in tables if t.key == "cost" and t.rows), None)
    curves = empty_curves() if curves is None or not has_periodic(data, curves) else curves
    makers = {
        "fig_loss_per_roi.png": lambda p: figures.loss_figure(data, histories, p),
        "fig_map.png": lambda p: figures.map_figure(data, p),
        "fig_map_vs_iter.png": lambda p: figures.map_curve_figure(data, curves, p, "step"),
        "fig_map_vs_time.png": lambda p: figures.map_curve_figure(data, curves, p, "seconds"),
        "fig_cost.png": lambda p: figures.cost_figure(cost, p) if cost is not None else None,
        "fig_search.png": lambda p: (
            figures.search_figure(*search, data.layout.search_metric, p) if search else None
        ),
    }
    return [(name, caption) for name, caption in FIGURES if makers[name](out_dir / name)]


def build_report(
    source: str,
    tracking_uri: str | None = None,
    out: str | Path = "reports",
    formats: str | Sequence[str] = FORMATS,
    experiment: str | None = None,
    command: str | None = None,
    profile: str | None = None,
    add_runs: Sequence[str | Path] = (),
    no_store: bool = False,
) -> ReportResult:
    """Read the experiment's trial runs from MLflow and write the report under out/<experiment>/.

    `source` is a spec YAML (rows, order, tables, paper numbers) or an MLflow experiment name.
    `tracking_uri` defaults to the spec's tracking.uri, else sqlite:///<cwd>/mlflow.db (as
    `ohem-tune run`). `profile` keeps only the runs of that spec profile. `add_runs`: earlier
    report folders whose Parquet runs join the store's (see `ohem_tune.report.exported`);
    `no_store`: read no MLflow store, only those folders.
    """
    started = time.perf_counter()
    fmt = parse_formats(formats)
    spec_layout = layout_from_spec(source, experiment) if is_spec_path(source) else None
    name = spec_layout.experiment if spec_layout else (experiment or source)
    tracking_uri = resolve_tracking_uri(
        tracking_uri or (spec_layout.tracking_uri if spec_layout else None)
    )

    store = _Store(None if no_store else tracking_uri, name)
    if no_store and not add_runs:
        raise ConfigError("--no-store reads only the --add-runs folders; name at least one")
    runs = store.runs()
    stored_ids = set(runs["run_id"]) if len(runs) else set()
    exported = read_report_folders(add_runs) if add_runs else None
    added_lines: list[str] = []
    overlap = Overlap(0, ())
    invocations = store.invocations()
    if exported is not None:
        overlap = compare_overlap(runs, exported.runs)
        added_lines = _added_lines(exported, overlap)
        runs = join_runs(runs, exported.runs)
        invocations = join_invocations(invocations, exported.invocations)
    if runs.empty:
        where = f"{tracking_uri}: experiment '{name}'" if store.client else "the --add-runs folders"
        raise TrackingError(
            f"{where} has no trial runs (tag {K.TAG_ROLE}=trial); run `ohem-tune run SPEC` first"
        )
    if profile is not None:
        runs = _only_profile(runs, profile, name)
    data = ReportData(spec_layout or layout_from_runs(name, runs), runs)
    result = ReportResult(out_dir=Path(out) / safe_dirname(name), experiment=name, runs=runs)
    result.warnings += _run_warnings(data)
    if exported is not None:
        if overlap.differing:
            result.warnings.append(
                f"{len(overlap.differing)} of the {overlap.trials} trials finished both in the "
                "store and in the added runs differ in final results (another CPU model or torch "
                "build?); of each, the later run is shown: " + "; ".join(overlap.differing)
            )

    want_history = "png" in fmt or "parquet" in fmt
    names = _requested_tables(data.layout, data, histories_wanted=want_history)
    # every finished run's histories (superseded ones too): runs.parquet keeps them all, and a
    # later --add-runs or --profile build may show a run this one supersedes
    finished = data.all_runs.loc[data.all_runs["status"] == "FINISHED", "run_id"].tolist()
    in_store = [r for r in finished if r in stored_ids]
    histories = pd.DataFrame(columns=["run_id", "step", "value"])
    if want_history and "loss_curve" in names:
        histories = store.histories(in_store, LOSS_METRIC)
        if exported is not None:
            histories = _with_added(histories, exported.losses, finished, stored_ids)
            result.warnings += exported.missing_warnings("losses", "loss-per-RoI curves")
    curves = empty_curves()
    if "ablation" in names:  # the equal-time column and the mAP-curve figures
        curves = store.curves(in_store)
        if exported is not None:
            curves = _with_added(curves, exported.curves, finished, stored_ids)
            result.warnings += exported.missing_warnings(
                "curves", "mAP curves (figures, equal-time column)"
            )
    trials, progress = pd.DataFrame(), pd.DataFrame(columns=["run_id", "step", "value"])
    if "search" in names:
        searched = data.search_runs["run_id"].tolist()
        progress = store.histories(
            [r for r in searched if r in stored_ids], data.layout.search_metric
        )
        trials = search_trials(data, progress)
        if any(r not in stored_ids for r in searched):
            result.warnings.append(
                "search trials from --add-runs folders have no progress history there (only "
                "the store's are read): the search table ranks them by their final values"
            )
    result.tables = _build_tables(names, data, trials, curves)
    result.warnings += [w for table in result.tables for w in table.warnings]

    out_dir = result.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir, fmt)
    write = _Writer(out_dir, result.files)
    if "parquet" in fmt:
        runs.to_parquet(write.path("runs.parquet"), index=False)
        if not histories.empty:
            histories.to_parquet(write.path("loss_history.parquet"), index=False)
        if not curves.empty:
            curves.to_parquet(write.path("eval_history.parquet"), index=False)
        if len(invocations):
            invocations.to_parquet(write.path(INVOCATIONS_FILE), index=False)
    search = (trials, progress) if "search" in names else None
    figure_files = (
        _write_figures(data, histories, result.tables, out_dir, search, curves)
        if "png" in fmt
        else []
    )
    result.files += [out_dir / f for f, _ in figure_files]
    if "md" in fmt:
        for table in result.tables:
            write.text(f"table_{table.key}.md", table_to_markdown(table))
    if "tex" in fmt:
        for table in result.tables:
            write.text(f"table_{table.key}.tex", table_to_latex(table, name))
        tex_tables = [f"table_{t.key}.tex" for t in result.tables]
        document = standalone_document(f"ohem-tune report: {name}", tex_tables, figure_files)
        write.text("report.tex", document)
    if "md" in fmt:
        page = index_page(
            data,
            result.tables,
            figure_files,
            warnings=result.warnings,
            invocations=invocations,
            added=added_lines,
            store_read=not no_store,
            command=command or f"ohem-tune report {source}",
            formats=fmt,
        )
        write.text("README.md", page)
    for message in result.warnings:
        log.warning(message)
    result.seconds = time.perf_counter() - started
    return result


class _Store:
    """The experiment's runs and histories in MLflow; with no URI (`--no-store`), none."""

    def __init__(self, tracking_uri: str | None, name: str) -> None:
        self.client = open_client(tracking_uri) if tracking_uri else None
        self.experiment_id = (
            find_experiment(self.client, name, tracking_uri) if tracking_uri else ""
        )

    def runs(self) -> pd.DataFrame:
        return fetch_runs(self.client, self.experiment_id) if self.client else runs_frame([])

    def invocations(self) -> pd.DataFrame:
        if self.client is None:
            return invocations_frame([])
        return fetch_invocations(self.client, self.experiment_id)

    def histories(self, run_ids: Sequence[str], key: str) -> pd.DataFrame:
        if self.client is None or not run_ids:
            return pd.DataFrame(columns=["run_id", "step", "value"])
        return fetch_histories(self.client, run_ids, key)

    def curves(self, run_ids: Sequence[str]) -> pd.DataFrame:
        if self.client is None or not run_ids:
            return empty_curves()
        return fetch_curves(self.client, run_ids)


def _with_added(
    fetched: pd.DataFrame, added: pd.DataFrame, wanted: Sequence[str], stored_ids: set[str]
) -> pd.DataFrame:
    """The store's history rows, then the added runs' rows for wanted runs the store lacks."""
    keep = added[added["run_id"].isin(set(wanted) - stored_ids)]
    if keep.empty:
        return fetched
    keep = keep[list(fetched.columns)].drop_duplicates(["run_id", "step"])  # folders overlap
    frame = pd.concat([fetched, keep], ignore_index=True) if len(fetched) else keep
    return frame.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def _added_lines(exported: ExportedRuns, overlap: Overlap) -> list[str]:
    """Index lines naming each added folder, and how the trials both sources hold compare."""
    lines = [
        f"- Added runs: {n} from `{folder / 'runs.parquet'}` (an earlier `ohem-tune report`)"
        + ("" if has_calls else "; their `ohem-tune run` invocations are not recorded there")
        for folder, n, has_calls in exported.sources
    ]
    if overlap.trials:
        same = overlap.trials - len(overlap.differing)
        lines.append(
            f"- Trials finished both in the store and in the added runs: {overlap.trials}; final "
            f"results (mAP, APs, loss per RoI) identical in {same} (of each, the later run is "
            "shown)"
        )
    return lines


class _Writer:
    """Writes files into the report folder and records them."""

    def __init__(self, out_dir: Path, files: list[Path]) -> None:
        self.out_dir, self.files = out_dir, files

    def path(self, name: str) -> Path:
        path = self.out_dir / name
        self.files.append(path)
        return path

    def text(self, name: str, content: str) -> Path:
        path = self.path(name)
        path.write_text(content, encoding="utf-8")
        return path
