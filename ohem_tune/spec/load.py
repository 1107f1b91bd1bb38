"""Loading a spec YAML with one-line errors that name the file, the field and the fix."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ohem_tune.config import ConfigError, read_yaml
from ohem_tune.config.errors import suggest
from ohem_tune.spec.schema import Spec


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file (the trials' configs are validated by `Spec.expand`)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; pass a spec file such as search_spaces/smoke.yaml")
    data = read_yaml(p)
    return build_spec(data, p)


def build_spec(data: dict[str, Any], source: str | Path | None = None) -> Spec:
    """Validate a mapping into a Spec (one-line ConfigError naming the dotted field).

    Top-level keys starting with `x-` are ignored: a place for YAML anchors shared by rows.
    """
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise _one_line(err, data, source) from None
    if source is not None:
        spec._source_path = Path(source)
    return spec


def _one_line(err: ValidationError, data: dict[str, Any], source: str | Path | None) -> ConfigError:
    first = err.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    where = f"{source}: " if source else ""
    named = _named_loc(loc, data)
    field = ".".join(named) or "<root>"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(Spec, loc[:-1])
        key = str(loc[-1])
        listing = f"; allowed keys: {', '.join(sorted(allowed))}" if allowed else ""
        return ConfigError(f"{where}{field}: unknown key{suggest(key, allowed)}{listing}")
    if first["type"] == "missing":
        return ConfigError(f"{where}{field}: required field is missing")
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" {value!r}"
    return ConfigError(f"{where}{field}: bad value{shown}: {msg}")


def _named_loc(loc: list[Any], data: Any) -> list[str]:
    """Replace list indices of named items by their names: variants[ohem_vggm], claims[label]."""
    out: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            name = (item.get("name") or item.get("label")) if isinstance(item, dict) else None
            if name and out:
                out[-1] = f"{out[-1]}[{name}]"
            else:
                out.append(str(part))
            node = item
            continue
        out.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return out


def _allowed_keys(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The field names of the model that sits at `loc` (walking lists and dicts of models)."""
    annotation: Any = model
    for part in loc:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            annotation = _inner_model(annotation)
            origin = typing.get_origin(annotation)
        if origin in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        else:
            return []
    inner = _inner_model(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return list(inner.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside Optional[...], list[...] or dict[str, ...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            inner = _inner_model(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation
