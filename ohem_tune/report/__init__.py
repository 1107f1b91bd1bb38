"""MLflow -> tidy run table -> paper-style tables (Markdown, LaTeX), figures (PNG) and an index.

No torch anywhere in this package's import chain; MLflow is imported only when runs are read.
"""

from ohem_tune.report.build import FORMATS, ReportResult, build_report, parse_formats
from ohem_tune.report.layout import Layout, Variant, layout_from_runs, layout_from_spec
from ohem_tune.report.runs import fetch_histories, fetch_runs, open_client
from ohem_tune.report.stats import PairedDiff, Summary, paired_difference, summarize, t_quantile

__all__ = [
    "FORMATS",
    "Layout",
    "PairedDiff",
    "ReportResult",
    "Summary",
    "Variant",
    "build_report",
    "fetch_histories",
    "fetch_runs",
    "layout_from_runs",
    "layout_from_spec",
    "open_client",
    "paired_difference",
    "parse_formats",
    "summarize",
    "t_quantile",
]
