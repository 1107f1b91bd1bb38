"""The console entry point: exit codes and one-line user errors."""

from __future__ import annotations

import sys

import pytest
import typer

from ohem_tune import cli


def test_typer_exit_code_reaches_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """click's standalone_mode=False returns Exit codes; main() must still exit with them."""

    @cli.app.command("_exit3", hidden=True)
    def _exit3() -> None:
        raise typer.Exit(3)

    monkeypatch.setattr(sys, "argv", ["ohem-tune", "_exit3"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 3


def test_user_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["ohem-tune", "train", "/nonexistent/cfg.yaml"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "file not found" in err and "Traceback" not in err
