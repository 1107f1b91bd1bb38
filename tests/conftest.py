"""Shared fixtures: a tiny synthetic-dataset config whose cache lives in a session temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TQDM_DISABLE", "1")

from ohem_tune.config import Config, build_config  # noqa: E402

TINY = {
    "dataset": {"format": "synthetic", "synthetic": {"preset": "tiny"}, "num_workers": 0},
    "input": {"scales": [96], "max_size": 160},
    "model": {"backbone": "tiny", "fc_dim": 64, "roi_op": "roi_align"},
    "sampler": {"rois_per_batch": 32},
    "solver": {"ims_per_batch": 2, "lr": 0.01, "steps": [1000]},
    "train": {"max_iter": 20, "log_period": 5, "checkpoint_period": 10, "device": "cpu"},
    "test": {"scales": [96], "max_size": 160},
}


# The most the suite had under its temp dir at once: 3.4 GiB (du every 5 s through a full
# fresh-clone run at 10670ac; 5.4 GiB while Tune kept a second copy of every checkpoint).
SUITE_PEAK_GIB = 3.5


def pytest_sessionstart(session: pytest.Session) -> None:
    """Print the free space where the suite writes: short of it, tests fail at setup in odd places.

    A line of its own (not a report header): the suite runs with -q, which hides headers.
    """
    where = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir())
    free = shutil.disk_usage(where).free / 1024**3
    line = f"temp dir {where}: {free:.1f} GiB free; the suite's peak use is ~{SUITE_PEAK_GIB:g} GiB"
    if free < 1.5 * SUITE_PEAK_GIB:
        line = f"WARNING: {line}. Free space there first: out of space, tests fail at setup"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-dataset cache directory shared by the whole test session."""
    return tmp_path_factory.mktemp("ohem_cache")


@pytest.fixture()
def tiny_cfg(dataset_cache: Path) -> Config:
    """A CPU-fast config on the tiny synthetic preset (fresh object per test: mutate freely)."""
    tree = {
        **TINY,
        "dataset": {
            **TINY["dataset"],
            "synthetic": {"preset": "tiny", "cache_dir": str(dataset_cache)},
        },
    }
    return build_config(tree, "tests/conftest.py:TINY")
