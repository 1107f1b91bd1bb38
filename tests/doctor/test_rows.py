"""A row's status is one of four; only a failed row fails the doctor."""

from __future__ import annotations

import pytest

from ohem_tune.doctor import Row, exit_code


def test_only_failures_make_the_exit_code_non_zero():
    fine = [Row("a", "ok", ""), Row("b", "warn", "low disk"), Row("c", "skip", "local Ray")]
    assert exit_code(fine) == 0
    assert exit_code([*fine, Row("d", "fail", "missing")]) == 1
    assert exit_code([]) == 0


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        Row("a", "error", "")  # type: ignore[arg-type]
