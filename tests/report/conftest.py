"""A real MLflow SQLite store filled once per session with the known runs of `mlflow_store`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ohem_tune.report import ReportResult, build_report
from tests.report.mlflow_store import fill_store, write_spec


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tracking URI of a SQLite store holding the known trial runs."""
    root = tmp_path_factory.mktemp("mlflow_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    fill_store(uri)
    return uri


@pytest.fixture(scope="session")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The known variants' spec (plus a row without runs); tables left to the data."""
    return write_spec(tmp_path_factory.mktemp("spec") / "paper_ablation_test.yaml")


@pytest.fixture(scope="session")
def built(store: str, spec_path: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The full report (all formats) of the known runs laid out by the spec."""
    out = tmp_path_factory.mktemp("reports")
    return build_report(str(spec_path), store, out=out, command="ohem-tune report SPEC")
