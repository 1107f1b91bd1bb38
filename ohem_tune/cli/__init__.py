"""The `ohem-tune` command line: data, train, eval, run, report, doctor.

Heavy imports (torch, ray, mlflow) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from ohem_tune import __version__
from ohem_tune.cli import data, doctor, evaluate, report, run, train
from ohem_tune.cli.common import UserError, console_err

app = typer.Typer(
    name="ohem-tune",
    help="Fast R-CNN + OHEM ablations on Ray Tune, tracked in MLflow, reported as paper tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ohem-tune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Fast R-CNN + OHEM ablations on Ray Tune, tracked in MLflow, reported as paper tables."""


app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("run")(run.run)
app.command("report")(report.report)
app.command("doctor")(doctor.doctor)


def main() -> None:
    """Console entry point: user errors print one red line and exit 2, never a traceback."""
    # Closed network: Ray and MLflow phone home by default.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        # standalone_mode=False makes click *return* typer.Exit's code instead of exiting.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except UserError as exc:
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console_err.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # click usage errors etc. come through here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
