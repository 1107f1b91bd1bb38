"""`ohem-tune doctor`: the checks a user runs before a long experiment, one table row each.

The doctor imports the core, data and orchestration; nothing in the core imports it.
"""

from ohem_tune.doctor.rows import Row, exit_code

__all__ = ["Row", "exit_code"]
