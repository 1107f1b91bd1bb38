"""The tracking-URI rule shared by `ohem-tune run` and `ohem-tune report` (no mlflow import)."""

from __future__ import annotations

from pathlib import Path


def resolve_tracking_uri(uri: str | None, cwd: Path | None = None) -> str:
    """Default sqlite:///<cwd>/mlflow.db; relative sqlite paths and plain paths become absolute."""
    base = (cwd or Path.cwd()).resolve()
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if path.is_absolute():
            return f"sqlite:///{path}"
        return f"sqlite:///{(base / path).resolve()}"
    if uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        return (base / path).resolve().as_uri() if not path.is_absolute() else path.as_uri()
    if "://" not in uri:  # a bare path: a .db file is SQLite, anything else a file store
        path = (base / uri).resolve()
        return f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()
    return uri
