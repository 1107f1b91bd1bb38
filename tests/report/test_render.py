"""Markdown and LaTeX output: golden files, LaTeX structure (or pdflatex), escaping.

Regenerate the golden files after an intended change with:
    OHEM_TUNE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report/test_render.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ohem_tune.report import ReportResult
from ohem_tune.report.latex import escape, escape_note, table_to_latex
from ohem_tune.report.markdown import table_to_markdown
from ohem_tune.report.table import Cell, Column, Table

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("OHEM_TUNE_UPDATE_GOLDEN") == "1"
GOLDEN_FILES = [
    f"table_{key}.{ext}"
    for key in ("claims", "ablation", "multiscale_bbox", "cost", "per_class", "coco")
    for ext in ("md", "tex")
]


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_matches_golden(built: ReportResult, name: str) -> None:
    produced = (built.out_dir / name).read_text(encoding="utf-8")
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(produced, encoding="utf-8")
    assert golden.is_file(), f"{golden} missing: run with OHEM_TUNE_UPDATE_GOLDEN=1"
    assert produced == golden.read_text(encoding="utf-8")


def check_latex_structure(text: str) -> None:
    """Balanced environments and braces, booktabs rules in order, escaped specials, ASCII only."""
    assert text.isascii(), [ch for ch in text if not ch.isascii()][:5]
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", text):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"unbalanced \\end{{{env}}}"
    assert not stack, f"unclosed environments: {stack}"
    # comment lines and end-of-line '%' (suppresses the newline) are the only bare '%' allowed
    lines = [
        line.removesuffix("{%") + "{" if line.endswith("{%") else line for line in text.splitlines()
    ]
    body = "\n".join(line for line in lines if not line.startswith("%"))
    unescaped = re.sub(r"\\[{}]", "", body)
    assert unescaped.count("{") == unescaped.count("}")
    prose = re.sub(r"\\(input|includegraphics(\[[^]]*\])?|label)\{[^}]*\}", "", body)
    for ch in "_%#":
        assert not re.search(rf"(?<!\\){re.escape(ch)}", prose), f"unescaped {ch!r}"
    for tabular in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body, re.S):
        spec, inner = tabular
        rules = re.findall(r"\\(toprule|midrule|bottomrule)", inner)
        assert rules[0] == "toprule" and rules[-1] == "bottomrule" and "midrule" in rules
        rows = [r for r in inner.split("\\\\") if r.strip() and "rule" not in r.strip()[:12]]
        for row in rows:
            cells = re.sub(r"\\&", "", row).count("&") + 1
            assert cells == len(spec), f"{cells} cells for {len(spec)} columns: {row!r}"


def test_latex_tables_are_structurally_valid(built: ReportResult) -> None:
    tex_files = sorted(built.out_dir.glob("table_*.tex"))
    assert len(tex_files) == 6
    for path in tex_files:
        text = path.read_text()
        check_latex_structure(text)
        assert "\\caption{" in text and "\\label{tab:" in text
    assert "$\\pm$" in (built.out_dir / "table_ablation.tex").read_text()


def test_standalone_wrapper_inputs_every_table(built: ReportResult) -> None:
    doc = (built.out_dir / "report.tex").read_text()
    check_latex_structure(doc)
    assert doc.startswith("\\documentclass")
    for pkg in ("booktabs", "amssymb", "graphicx"):
        assert f"\\usepackage{{{pkg}}}" in doc
    for path in built.out_dir.glob("table_*.tex"):
        assert f"\\input{{{path.name}}}" in doc
    for png in built.out_dir.glob("fig_*.png"):
        assert png.name in doc


# scripts/setup.sh installs TeX wherever it can (root + apt-get): there a missing pdflatex fails.
_CAN_INSTALL_TEX = os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.mark.skipif(
    shutil.which("pdflatex") is None and not _CAN_INSTALL_TEX,
    reason="pdflatex not installed, and scripts/setup.sh cannot install it here (needs root + apt)",
)
def test_latex_compiles(built: ReportResult, tmp_path: Path) -> None:
    assert shutil.which("pdflatex"), "pdflatex missing: run scripts/setup.sh (it installs TeX)"
    for path in built.out_dir.iterdir():
        if path.suffix in (".tex", ".png"):
            shutil.copy(path, tmp_path / path.name)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "report.pdf").stat().st_size > 0
    # every table was typeset (its \label reached the .aux) and none overran the page
    aux = (tmp_path / "report.aux").read_text(errors="replace")
    for path in sorted(built.out_dir.glob("table_*.tex")):
        label = re.search(r"\\label\{([^}]+)\}", path.read_text()).group(1)  # type: ignore[union-attr]
        assert f"\\newlabel{{{label}}}" in aux, path.name
    log = (tmp_path / "report.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log and "Missing character" not in log


def test_escape_specials_and_symbols() -> None:
    assert escape("bg_lo & 50% #1 $x$ {a} ~^\\") == (
        r"bg\_lo \& 50\% \#1 \$x\$ \{a\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    )
    assert (
        escape("61.2 ± 1.3 — Δ ✓ 1.5×") == r"61.2 $\pm$ 1.3 --- $\Delta$ $\checkmark$ 1.5$\times$"
    )
    assert escape_note("use `ohem_vggm` now") == r"use \texttt{ohem\_vggm} now"
    assert escape("café ’x’ 中") == "cafe ?x? ?"  # always ASCII


def _small_table() -> Table:
    table = Table(
        "t",
        "T & 100%",
        "A caption with `run_1`",
        [Column("name_x", "l"), Column("v", better="low")],
    )
    table.add_row([Cell("a|b"), Cell("2.0", 2.0)])
    table.add_row([Cell("[x]"), Cell("3.0", 3.0)])
    table.add_row([Cell("c_d"), Cell("1.0", 1.0)], new_group=True)
    table.notes.append("note with 5% and `x_y`")
    table.mark_best()
    return table


def test_markdown_escapes_pipes_and_bolds_best() -> None:
    md = table_to_markdown(_small_table())
    assert "| a\\|b | 2.0 |" in md
    assert "| c_d | **1.0** |" in md  # lower is better in this column
    assert "| :--- | ---: |" in md
    assert md.rstrip().endswith("- note with 5% and `x_y`")


def test_latex_of_small_table() -> None:
    tex = table_to_latex(_small_table(), "exp_1")
    check_latex_structure(tex)
    assert "\\label{tab:exp-1:t}" in tex
    assert "c\\_d & \\textbf{1.0} \\\\" in tex
    assert tex.count("\\midrule") == 2  # header rule + the new group
    assert "\\\\\n{}[x] & 3.0" in tex  # a row starting with '[' is not an optional argument
    assert "note with 5\\% and \\texttt{x\\_y}" in tex
