"""Find the orchestration function the doctor reuses, in whichever module defines it.

`ohem-tune run`'s checks are moving out of driver.py into modules of their own (plan, cluster);
the doctor reuses them from wherever they are, so both can change independently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

MODULES = ("plan", "cluster", "driver")


def orchestration_function(name: str) -> Callable[..., Any] | None:
    """`name` from ohem_tune.orchestration.{plan, cluster, driver}; None where none defines it."""
    for module in MODULES:
        try:
            found = getattr(
                importlib.import_module(f"ohem_tune.orchestration.{module}"), name, None
            )
        except ImportError:
            continue
        if callable(found):
            return found
    return None
