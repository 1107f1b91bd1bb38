"""Read trial runs from MLflow (paged) into a tidy table: one row per run, typed columns.

Columns: run_id, variant, variant_order, label, model, baseline, paper_map, seed, status, error,
device, host, profile, trial_id, config_hash, run_name, search_point (JSON of an Optuna trial's
sampled values, else None), parent_run_id, start_time, end_time, duration_s, superseded (left
out of the tables: see `mark_superseded`), then `params.<dotted key>` (strings as logged) and
`metrics.<key>` (latest value of each metric).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from ohem_tune import tracking_keys as K
from ohem_tune.errors import TrackingError
from ohem_tune.tracking_uri import resolve_tracking_uri  # noqa: F401  (re-exported)

PAGE_SIZE = 1000
INCLUDED_STATUS = "FINISHED"
CORE_COLUMNS = (
    "run_id",
    "variant",
    "variant_order",
    "label",
    "model",
    "baseline",
    "paper_map",
    "seed",
    "status",
    "error",
    "device",
    "cpu",
    "torch_build",
    "host",
    "profile",
    "test_protocol",
    "trial_id",
    "config_hash",
    "run_name",
    "search_point",
    "parent_run_id",
    "start_time",
    "end_time",
    "duration_s",
    "superseded",
)


def open_client(tracking_uri: str) -> Any:
    """An MlflowClient for `tracking_uri`; a missing SQLite file is an error, not a new store."""
    from mlflow import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///") :])
        if not path.is_file():
            raise TrackingError(
                f"{path}: no MLflow store there; pass --tracking-uri (e.g. sqlite:///mlflow.db or "
                "http://host:5000) or run `ohem-tune run` first"
            )
    return MlflowClient(tracking_uri=tracking_uri)


def find_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The experiment id of `name`, or a TrackingError listing the experiments that exist."""
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as exc:  # connection errors, bad URIs, schema mismatches
        raise TrackingError(f"{tracking_uri}: cannot read MLflow store ({exc})") from None
    if exp is None:
        names = sorted(e.name for e in client.search_experiments(max_results=50))
        known = ", ".join(names) if names else "none"
        raise TrackingError(
            f"{tracking_uri}: no experiment named '{name}' (experiments: {known}); "
            "pass the spec or experiment name used by `ohem-tune run`, or --tracking-uri"
        )
    return exp.experiment_id


def iter_trial_runs(
    client: Any, experiment_id: str, page_size: int = PAGE_SIZE, role: str = "trial"
) -> Iterator[Any]:
    """Every active run of the experiment with the given role tag, fetched page by page."""
    from mlflow.entities import ViewType

    token = None
    while True:
        page = client.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{K.TAG_ROLE}` = '{role}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=page_size,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(str(text).strip()) if text not in (None, "") else None
    except ValueError:
        return None


def _paper_percent(text: str | None) -> float:
    """The paper's mAP in percent; values in [0, 1] are taken as fractions."""
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return value * 100.0 if 0.0 <= value <= 1.0 else value


def run_record(run: Any) -> dict[str, Any]:
    """One run as a flat dict of the tidy columns."""
    tags, info = run.data.tags, run.info
    start = info.start_time
    end = info.end_time
    status = tags.get(K.TAG_STATUS) or info.status
    record: dict[str, Any] = {
        "run_id": info.run_id,
        "variant": tags.get(K.TAG_VARIANT) or info.run_name or info.run_id,
        "variant_order": _int_or_none(tags.get(K.TAG_VARIANT_ORDER)),
        "label": tags.get(K.TAG_LABEL),
        "model": tags.get(K.TAG_MODEL_LABEL) or run.data.params.get("model.backbone"),
        "baseline": str(tags.get(K.TAG_BASELINE, "")).lower() == "true",
        "paper_map": _paper_percent(tags.get(K.TAG_PAPER_MAP)),
        "seed": _int_or_none(tags.get(K.TAG_SEED)),
        "status": str(status).upper(),
        "error": tags.get(K.TAG_ERROR),
        "device": tags.get(K.TAG_DEVICE),
        "cpu": tags.get(K.TAG_CPU),
        "torch_build": tags.get(K.TAG_TORCH_BUILD),
        "host": tags.get(K.TAG_HOST),
        "profile": tags.get(K.TAG_PROFILE),
        "test_protocol": tags.get(K.TAG_TEST_PROTOCOL) or None,
        "trial_id": tags.get(K.TAG_TRIAL_ID),
        "config_hash": tags.get(K.TAG_CONFIG_HASH),
        "run_name": info.run_name,
        "search_point": tags.get(K.TAG_SEARCH_POINT) or None,
        "parent_run_id": tags.get("mlflow.parentRunId"),
        "start_time": start,
        "end_time": end,
        "duration_s": (end - start) / 1000.0 if start and end else math.nan,
        "superseded": False,
    }
    record.update({f"params.{k}": v for k, v in run.data.params.items()})
    record.update({f"metrics.{k}": float(v) for k, v in run.data.metrics.items()})
    return record


def runs_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Tidy, typed DataFrame from run records, sorted by variant order, variant, seed."""
    return tidy_runs(pd.DataFrame.from_records(list(records)))


def tidy_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Run rows (from MLflow records or read back from runs.parquet) typed, ordered and sorted,
    superseded runs marked anew."""
    frame = frame.copy()
    for col in CORE_COLUMNS:
        if col not in frame.columns:
            frame[col] = False if col == "superseded" else None
    for col in ("variant_order", "seed"):
        frame[col] = pd.array(frame[col], dtype="Int64")
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
    frame["baseline"] = frame["baseline"].astype(bool)
    frame["superseded"] = frame["superseded"].astype(bool)
    for col in ("paper_map", "duration_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    extra = sorted(c for c in frame.columns if c not in CORE_COLUMNS)
    params = [c for c in extra if c.startswith("params.")]
    metrics = [c for c in extra if c.startswith("metrics.")]
    frame = frame[list(CORE_COLUMNS) + params + metrics]
    frame = mark_superseded(frame)
    return frame.sort_values(
        ["variant_order", "variant", "seed", "start_time"], na_position="last", kind="stable"
    ).reset_index(drop=True)


def mark_superseded(frame: pd.DataFrame) -> pd.DataFrame:
    """Set column superseded on runs kept out of the tables, so a row holds one configuration.

    1. Re-runs of one trial (variant, config, seed): the latest FINISHED run is kept, else the
       latest run.
    2. A variant run under several configurations (another profile, search points): only the
       configuration run most recently is kept.
    """
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["superseded"] = False
    config = frame["config_hash"].fillna("")
    finished = (frame["status"] == INCLUDED_STATUS).astype(int)
    order = frame.assign(
        _config=config, _fin=finished, _end=frame["end_time"].fillna(frame["start_time"])
    ).sort_values(["_fin", "_end"], ascending=[False, False], kind="stable")
    keyed = order[order["seed"].notna()]
    dup = keyed.duplicated(subset=["variant", "_config", "seed"], keep="first")
    frame.loc[dup[dup].index, "superseded"] = True

    latest = order.sort_values("start_time", ascending=False, kind="stable")
    newest_config = latest.drop_duplicates("variant").set_index("variant")["_config"]
    other = config.ne(frame["variant"].map(newest_config))
    frame.loc[other, "superseded"] = True
    return frame


def superseded_configs(frame: pd.DataFrame) -> dict[str, int]:
    """Variants whose runs span several configurations -> how many configurations."""
    if frame.empty:
        return {}
    counts = frame.assign(_c=frame["config_hash"].fillna("")).groupby("variant")["_c"].nunique()
    return {str(v): int(n) for v, n in counts.items() if n > 1}


def fetch_runs(client: Any, experiment_id: str, page_size: int = PAGE_SIZE) -> pd.DataFrame:
    """All trial runs of an experiment as the tidy table (see module docstring)."""
    return runs_frame([run_record(r) for r in iter_trial_runs(client, experiment_id, page_size)])


INVOCATION_COLUMNS = ["run_id", "start_time", "end_time"]


def fetch_invocations(client: Any, experiment_id: str) -> pd.DataFrame:
    """The parent runs (one per `ohem-tune run` invocation): run_id, start_time, end_time."""
    return invocations_frame(
        (r.info.run_id, r.info.start_time, r.info.end_time)
        for r in iter_trial_runs(client, experiment_id, role="parent")
    )


def invocations_frame(rows: Iterable[tuple[str, int | None, int | None]]) -> pd.DataFrame:
    """Invocations (run_id, start and end in epoch ms) with the times as UTC timestamps."""
    frame = pd.DataFrame(list(rows), columns=INVOCATION_COLUMNS)
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
    return frame


def fetch_histories(
    client: Any, run_ids: Sequence[str], key: str, workers: int = 4
) -> pd.DataFrame:
    """Per-step history of metric `key` for the runs: columns run_id, step, value.

    Database-backed stores answer in one query per chunk of runs (MLflow's bulk history read);
    other stores (e.g. a tracking server) are asked run by run, a few requests at a time.
    """
    rows = _bulk_histories(client, run_ids, key)
    if rows is None:

        def one(run_id: str) -> list[tuple[str, int, float]]:
            return [(run_id, m.step, m.value) for m in client.get_metric_history(run_id, key)]

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            rows = [row for chunk in pool.map(one, run_ids) for row in chunk]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "value"])
    frame = frame.astype({"run_id": "object", "step": "int64", "value": "float64"})
    return frame.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def _bulk_histories(
    client: Any, run_ids: Sequence[str], key: str, chunk: int = 500
) -> list[tuple[str, int, float]] | None:
    """One query per `chunk` runs through the SQL store's bulk read; None where unsupported."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    if bulk is None:
        return None
    rows: list[tuple[str, int, float]] = []
    for i in range(0, len(run_ids), chunk):
        part = list(run_ids[i : i + chunk])
        try:
            found = bulk(part, key, max_results=2**31 - 1)
        except NotImplementedError:
            return None
        rows += [(m.run_id, m.step, m.value) for m in found]
    return rows
