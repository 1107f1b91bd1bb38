"""One-line, user-facing configuration errors: file, dotted field, bad value, and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from ohem_tune.errors import ConfigError  # re-exported


class FieldError(ValueError):
    """Raised by cross-field validators to blame one field of the section being validated."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(message)
        self.field, self.value, self.message = field, value, message


def format_validation_error(
    err: ValidationError, source: str | Path | None, model_fields: dict[str, set[str]] | None = None
) -> ConfigError:
    """Turn pydantic's first error into a one-line ConfigError (with a 'did you mean' for typos)."""
    first = err.errors()[0]
    loc = [p for p in first["loc"] if p not in ("function-after", "function-before")]
    field = ".".join(str(p) for p in loc) or "<root>"
    where = f"{source}: " if source else ""
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        parent = ".".join(str(p) for p in loc[:-1])
        allowed = sorted((model_fields or {}).get(parent, set()))
        hint = ""
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        allowed_txt = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return ConfigError(f"{where}{field}: unknown key{hint}{allowed_txt}")
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        field = ".".join([*(str(p) for p in loc), cause.field])
        return ConfigError(f"{where}{field}: bad value {cause.value!r}: {cause.message}")
    msg = first["msg"].removeprefix("Value error, ")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    return ConfigError(f"{where}{field}: bad value {shown}: {msg}")


def suggest(key: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix when key is close to one of choices, else ''."""
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
