"""`ohem-tune report`: build the paper's tables and figures from the runs MLflow holds."""

from __future__ import annotations

from pathlib import Path

import typer

from ohem_tune.cli.common import console, console_err


def report(
    source: str = typer.Argument(
        ..., metavar="SPEC_OR_EXPERIMENT", help="Search spec YAML, or an MLflow experiment name."
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default: the spec's tracking.uri, else sqlite:///<cwd>/mlflow.db).",
    ),
    out: Path = typer.Option(
        Path("reports"), "--out", help="Reports folder; writes OUT/<experiment>/."
    ),
    formats: str = typer.Option(
        "md,tex,png,parquet", "--format", help="Comma-separated subset of md, tex, png, parquet."
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="Read this MLflow experiment instead of the spec's name."
    ),
    profile: str | None = typer.Option(
        None, "--profile", "-p", help="Only the runs of this spec profile (e.g. local, paper)."
    ),
    add_runs: list[Path] = typer.Option(
        [],
        "--add-runs",
        help="An earlier report folder (its runs.parquet and histories) whose runs join the "
        "store's, e.g. seeds run later in another store (repeatable).",
    ),
    no_store: bool = typer.Option(
        False, "--no-store", help="Read no MLflow store: report the --add-runs folders' runs alone."
    ),
) -> None:
    """Build the paper's tables (Markdown, LaTeX), figures (PNG) and run table (Parquet)."""
    import logging
    import shlex

    from ohem_tune.report import build_report, parse_formats

    parse_formats(formats)  # fail on a bad --format before touching MLflow
    logging.getLogger("ohem_tune.report").setLevel(logging.ERROR)  # warnings are printed below
    command = ["ohem-tune", "report", source]
    for flag, value, default in (
        ("--tracking-uri", tracking_uri, None),
        ("--out", str(out), "reports"),
        ("--format", formats, "md,tex,png,parquet"),
        ("--experiment", experiment, None),
        ("--profile", profile, None),
    ):
        if value is not None and value != default:
            command += [flag, value]
    for folder in add_runs:
        command += ["--add-runs", str(folder)]
    if no_store:
        command.append("--no-store")
    result = build_report(
        source,
        tracking_uri,
        out=out,
        formats=formats,
        experiment=experiment,
        command=shlex.join(command),
        profile=profile,
        add_runs=add_runs,
        no_store=no_store,
    )
    for message in result.warnings:
        console_err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    runs = result.runs
    finished = int((runs["status"] == "FINISHED").sum()) if runs is not None else 0
    console.print(
        f"report [bold]{result.experiment}[/]: {len(runs) if runs is not None else 0} runs "
        f"({finished} finished), {len(result.tables)} tables, {len(result.files)} files in "
        f"{result.out_dir} ({result.seconds:.1f} s)",
        highlight=False,
    )
    for path in result.files:
        console.print(f"  {path}", highlight=False)
