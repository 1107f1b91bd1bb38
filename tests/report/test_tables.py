"""Table contents from the known runs equal hand-computed means, stds, n, deltas and intervals."""

from __future__ import annotations

import math
import statistics

from ohem_tune.report import ReportResult
from ohem_tune.report.table import Table

T2 = 4.302653  # t_{0.975, 2}


def _table(built: ReportResult, key: str) -> Table:
    return next(t for t in built.tables if t.key == key)


def _rows(table: Table) -> dict[str, dict[str, str]]:
    """Rows keyed by 'label/model' (blank labels filled from the row above), cells by header."""
    out, label = {}, ""
    headers = [c.header for c in table.columns]
    for row in table.rows:
        label = row[0].text or label
        cells = {h: c.text for h, c in zip(headers, row, strict=True)}
        out[f"{label}/{row[1].text}"] = cells
    return out


def _pm(values: list[float]) -> str:
    """Hand-computed 'mean ± std' of fractions shown as percent."""
    mean = statistics.mean(values) * 100
    std = statistics.stdev(values) * 100
    return f"{mean:.1f} ± {std:.1f}"


def test_ablation_means_stds_and_n(built: ReportResult) -> None:
    rows = _rows(_table(built, "ablation"))
    assert rows["Fast R-CNN/VGGM"]["07 mAP"] == _pm([0.50, 0.52, 0.54])  # 0.99 was superseded
    assert rows["Fast R-CNN/VGGM"]["n"] == "3"
    assert rows["Fast R-CNN/VGG16"]["07 mAP"] == _pm([0.60, 0.62])
    assert rows["OHEM/VGGM"]["07 mAP"] == _pm([0.55, 0.58, 0.58])  # failed seed 3 left out
    assert rows["OHEM/VGGM"]["n"] == "3"
    assert rows["OHEM/VGG16"]["07 mAP"] == "65.0 ± —"  # n = 1: no std
    assert rows["OHEM/VGG16"]["n"] == "1"


def test_ablation_settings_and_paper_columns(built: ReportResult) -> None:
    rows = _rows(_table(built, "ablation"))
    frcn = rows["Fast R-CNN/VGGM"]
    assert (frcn["N"], frcn["LR"], frcn["B"], frcn["bg_lo"]) == ("2", "1e-3", "128", "0.1")
    assert frcn["paper"] == "59.6"
    assert rows["OHEM/VGGM"]["bg_lo"] == "0"
    assert rows["OHEM +M +B/VGG16"]["paper"] == "75.1"


def test_missing_variant_row_shows_dash_and_zero(built: ReportResult) -> None:
    row = _rows(_table(built, "ablation"))["Removing hard mining heuristic/VGGM"]
    assert row["07 mAP"] == "—" and row["n"] == "0"
    assert row["paper"] == "57.2"  # from the spec
    assert row["bg_lo"] == "0" and row["N"] == "2"  # from the spec's overrides
    assert row["Δ vs baseline [95% CI]"] == "—"


def test_paired_deltas_and_intervals(built: ReportResult) -> None:
    rows = _rows(_table(built, "ablation"))
    delta = "Δ vs baseline [95% CI]"
    diffs = [0.05, 0.06, 0.04]  # ohem_vggm - frcn_vggm by seed 0, 1, 2
    mean = statistics.mean(diffs) * 100
    half = T2 * statistics.stdev(diffs) / math.sqrt(3) * 100
    assert rows["OHEM/VGGM"][delta] == f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] (n=3)"
    assert rows["OHEM/VGG16"][delta] == "+5.0 (n=1)"  # one paired seed: no interval
    assert rows["OHEM +M +B/VGG16"][delta] == "+10.0 [+10.0, +10.0] (n=2)"
    assert rows["Fast R-CNN/VGGM"][delta] == "baseline"


def test_best_per_column_is_bold(built: ReportResult) -> None:
    table = _table(built, "ablation")
    j = [c.header for c in table.columns].index("07 mAP")
    bold = [row[j].text for row in table.rows if row[j].bold]
    assert bold == [_pm([0.70, 0.72])]


def test_failed_and_pruned_runs_are_listed_not_averaged(built: ReportResult) -> None:
    notes = " ".join(_table(built, "ablation").notes)
    assert "`ohem_vggm` seed 3: FAILED (TrainingError: loss is NaN at iteration 12)" in notes
    assert "`ohem_vgg16` seed 1: PRUNED" in notes
    assert "frcn_vggm` seed 0: FAILED" not in notes  # superseded by a finished rerun


def test_multiscale_bbox_cells(built: ReportResult) -> None:
    table = _table(built, "multiscale_bbox")
    assert len(table.rows) == 8
    plain = [c.text for c in table.rows[0]]
    assert plain[:3] == ["", "", ""]
    assert plain[3:7] == [_pm([0.60, 0.62]), "2", "65.0 ± —", "1"]
    assert plain[7:] == ["67.2", "69.9"]
    full = [c.text for c in table.rows[-1]]
    assert full[:3] == ["✓", "✓", "✓"]
    assert full[3:7] == ["—", "0", _pm([0.70, 0.72]), "2"]
    assert all(row[3].text == "—" and row[4].text == "0" for row in table.rows[1:])


def test_cost_ratio_and_device_split(built: ReportResult) -> None:
    table = _table(built, "cost")
    rows = _rows(table)
    vggm = rows["VGGM/cpu"]
    assert vggm["FRCN s/iter"] == "0.110 ± 0.010"
    assert vggm["OHEM s/iter"] == "0.160 ± 0.010"
    assert vggm["OHEM/FRCN"] == f"{0.16 / 0.11:.2f}×"
    assert vggm["FRCN mem (GB)"] == "1.10 ± 0.10"
    # VGG16 FRCN ran on cpu, OHEM on an H100: two rows, nothing averaged across devices
    assert rows["VGG16/cpu"]["OHEM s/iter"] == "—"
    assert rows["VGG16/NVIDIA H100 80GB HBM3"]["FRCN s/iter"] == "—"
    assert rows["VGG16/NVIDIA H100 80GB HBM3"]["OHEM s/iter"] == "0.300 ± —"
    assert any("2 devices" in w for w in built.warnings)


def test_per_class_and_coco(built: ReportResult) -> None:
    per_class = _table(built, "per_class")
    headers = [c.header for c in per_class.columns]
    assert headers[-2:] == ["cat", "dog"]
    rows = _rows(per_class)
    cat = statistics.mean([0.50, 0.56, 0.56]) * 100
    assert rows["OHEM/VGGM"]["cat"] == f"{cat:.1f}"
    assert rows["Fast R-CNN/VGGM"]["dog"] == "62.0"
    bold = {headers[j]: row[0].text for row in per_class.rows for j, c in enumerate(row) if c.bold}
    assert bold["cat"] == "OHEM" and bold["dog"] == "Fast R-CNN"
    coco = _rows(_table(built, "coco"))
    assert [k for k in coco if not k.startswith("paper:")] == ["OHEM +M +B/VGG16"]
    assert coco["OHEM +M +B/VGG16"]["AP"] == _pm([0.30, 0.34])
    assert coco["paper: OHEM/VGG16"]["AP"] == "22.6"  # the paper's rows sit beside, unranked


def test_metric_column_follows_test_metric(built: ReportResult, spec_path) -> None:
    from ohem_tune.report.data import ReportData
    from ohem_tune.report.layout import layout_from_spec
    from ohem_tune.report.tables import ablation_table

    runs = built.runs.assign(**{"params.test.metric": "coco"})
    table = ablation_table(ReportData(layout_from_spec(spec_path), runs))
    assert "COCO AP" in [c.header for c in table.columns]
    assert "07 mAP" not in [c.header for c in table.columns]
    assert table.title == "Table 1: ablations (COCO AP, %)"


def test_measured_note_under_every_table(built: ReportResult) -> None:
    from tests.report.mlflow_store import PROTOCOL

    line = (
        f"- Measured: synthetic data, `test` split; test protocol: {PROTOCOL}; iteration budget: "
        "120 iterations (train.max_iter); profile: `cpu_test`."
    )
    for name in ("claims", "ablation", "multiscale_bbox", "cost", "per_class", "coco"):
        text = (built.out_dir / f"table_{name}.md").read_text(encoding="utf-8")
        assert text.count(line) == 1, name
        assert "MIXED" not in text
    assert built.runs["test_protocol"].eq(PROTOCOL).all()  # read from the tag of every run


def test_mixed_iteration_budgets_are_flagged_loudly(built: ReportResult, spec_path) -> None:
    from ohem_tune.report.data import ReportData
    from ohem_tune.report.layout import layout_from_spec
    from ohem_tune.report.tables import ablation_table

    runs = built.runs.copy()
    runs.loc[runs["variant"] == "ohem_vgg16", "params.train.max_iter"] = "300"
    runs.loc[runs["variant"] == "frcn_vgg16", "params.train.max_iter"] = None
    table = ablation_table(ReportData(layout_from_spec(spec_path), runs))
    measured = next(n for n in table.notes if n.startswith("Measured: "))
    assert "iteration budget: MIXED (3, listed below)" in measured
    assert (
        "Iteration budgets (MIXED, 3): 120 (`frcn_vggm`, `ohem_vggm`, `ohem_ms_vgg16`); "
        "not recorded (`frcn_vgg16`); 300 (`ohem_vgg16`)." in table.notes
    )
    assert any(w.startswith("MIXED ITERATION BUDGETS in table 'ablation'") for w in table.warnings)
    assert "test protocol: voc07" in measured  # the fields that agree still read plainly


def test_mixed_protocols_are_flagged_loudly(built: ReportResult, spec_path, caplog) -> None:
    from ohem_tune.report.data import NO_PROTOCOL, ReportData
    from ohem_tune.report.layout import layout_from_spec
    from ohem_tune.report.markdown import table_to_markdown
    from ohem_tune.report.tables import ablation_table
    from tests.report.mlflow_store import PROTOCOL

    other = "voc07 · NMS 0.3 · ≤100 dets/image · score > 0.05 · test split"
    runs = built.runs.copy()
    runs.loc[runs["variant"] == "ohem_vgg16", "test_protocol"] = other
    runs.loc[runs["variant"] == "frcn_vgg16", "test_protocol"] = None
    with caplog.at_level("WARNING", logger="ohem_tune.report.tables"):
        table = ablation_table(ReportData(layout_from_spec(spec_path), runs))
    text = table_to_markdown(table)
    assert "Warning: MIXED TEST PROTOCOLS in table 'ablation'" in text
    assert any("MIXED TEST PROTOCOLS" in r.getMessage() for r in caplog.records)
    note = next(n for n in table.notes if n.startswith("Test protocols (MIXED, 3)"))
    assert f"{PROTOCOL} (`frcn_vggm`, `ohem_vggm`, `ohem_ms_vgg16`)" in note
    assert f"{other} (`ohem_vgg16`)" in note and f"{NO_PROTOCOL} (`frcn_vgg16`)" in note


def test_cost_table_shows_reserved_memory_only_when_runs_logged_it(
    built: ReportResult, spec_path
) -> None:
    from ohem_tune.report.data import ReportData
    from ohem_tune.report.layout import layout_from_spec
    from ohem_tune.report.tables import RESERVED_MEM, cost_table

    layout = layout_from_spec(spec_path)
    assert RESERVED_MEM not in built.runs.columns  # the known runs predate the metric
    old = cost_table(ReportData(layout, built.runs))
    assert not [c.header for c in old.columns if "reserved" in c.header]

    runs = built.runs.copy()
    runs[RESERVED_MEM] = float("nan")
    runs.loc[runs["variant"] == "ohem_vgg16", RESERVED_MEM] = 9.5  # the H100 run (CUDA)
    table = cost_table(ReportData(layout, runs))
    headers = [c.header for c in table.columns]
    assert headers[5:10] == [
        "FRCN mem (GB)", "OHEM mem (GB)", "OHEM/FRCN", "FRCN reserved (GB)", "OHEM reserved (GB)"
    ]  # fmt: skip
    rows = _rows(table)
    gpu = rows["VGG16/NVIDIA H100 80GB HBM3"]
    assert gpu["OHEM reserved (GB)"] == "9.50 ± —" and gpu["OHEM mem (GB)"] == "7.00 ± —"
    assert gpu["FRCN reserved (GB)"] == "—"
    assert rows["VGG16/cpu"]["FRCN reserved (GB)"] == "—"  # CPU runs log no reserved peak
    assert rows["VGGM/cpu"]["FRCN mem (GB)"] == "1.10 ± 0.10"  # the other columns unchanged
    assert any("reserved: the CUDA caching allocator" in n for n in table.notes)
