"""Released proposal files, read as their public releases lay them out, into the project's boxes.

Every reader returns {str(image_id): (P, 4) float32} in the project's convention: 0-based pixel
indices, inclusive corners (x1, y1, x2, y2), best-ranked first. Each source's conversion is done
here, once:
- fast-rcnn / py-faster-rcnn `selective_search_data/voc_2007_{trainval,test}.mat` (MATLAB v5):
  `boxes` a 1 x N cell of K x 4 doubles, 1-based (y1, x1, y2, x2); `images` the N ids.
  Converted as the authors do: `boxes[:, (1, 0, 3, 2)] - 1` (py-faster-rcnn
  lib/datasets/pascal_voc.py `_load_selective_search_roidb`).
- Detectron (Caffe2) `.pkl`: `{"boxes": [K x 4], "scores": [K], "ids": [...], "cfg": str}`,
  boxes already 0-based inclusive (Detectron's +1 width convention): kept as they are.
- detectron2 `.pkl`: `{"ids", "boxes", "objectness_logits", "bbox_mode"}`; boxes are continuous
  coordinates (width x2 - x1): XYXY_ABS (0) becomes (x1, y1, x2 - 1, y2 - 1), XYWH_ABS (1)
  (x, y, x + w - 1, y + h - 1); sorted by descending logit as detectron2's
  `load_proposals_into_dataset` does.
Pickles go through a restricted unpickler that builds only numpy arrays, containers and scalars.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from ohem_tune.errors import DataError

log = logging.getLogger(__name__)

MAT_V73_FIX = (
    "re-save it as MATLAB v7 (Octave/MATLAB: `load(f); save(f, 'boxes', 'images', '-v7')`) "
    "or convert it to .npz"
)


# ------------------------------------------------------------------------------ fast-rcnn .mat


def read_fast_rcnn_mat(path: Path) -> dict[str, np.ndarray]:
    """fast-rcnn's selective-search .mat (`boxes` 1 x N cell, 1-based [y1 x1 y2 x2]; `images`)."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError:
        raise DataError(
            f"{path}: a MATLAB v7.3 (HDF5) .mat file, which scipy cannot read; {MAT_V73_FIX}"
        ) from None
    except (MatReadError, ValueError, TypeError, OSError) as exc:
        raise DataError(f"{path}: unreadable .mat ({exc}); re-download the proposals") from None
    variables = sorted(k for k in mat if not k.startswith("__"))
    for name in ("boxes", "images"):
        if name not in mat:
            raise DataError(
                f"{path}: no {name!r} variable (found {variables}); fast-rcnn's "
                "selective_search_data files hold 'boxes' (1 x N cell) and 'images' (N ids)"
            )
    cells = np.asarray(mat["boxes"]).ravel()  # as the authors: loadmat(f)['boxes'].ravel()
    if cells.dtype != object:
        raise DataError(
            f"{path}: 'boxes' is a {mat['boxes'].dtype} array of shape {mat['boxes'].shape}; "
            "expected a 1 x N cell of K x 4 arrays (one per image)"
        )
    ids = [_mat_id(path, i, v) for i, v in enumerate(np.asarray(mat["images"]).ravel())]
    if len(ids) != len(cells):
        raise DataError(
            f"{path}: 'boxes' has {len(cells)} cells but 'images' has {len(ids)} ids; "
            "they must match one to one"
        )
    out: dict[str, np.ndarray] = {}
    for i, (image_id, cell) in enumerate(zip(ids, cells, strict=True)):
        boxes = np.asarray(cell, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DataError(
                f"{path}: boxes cell {i} (image {image_id!r}) has shape {boxes.shape}; "
                "expected K x 4 [y1 x1 y2 x2]"
            )
        if image_id in out:
            raise DataError(f"{path}: image id {image_id!r} appears twice in 'images'")
        out[image_id] = (boxes[:, (1, 0, 3, 2)] - 1).astype(np.float32)
    return out


def _mat_id(path: Path, index: int, value: Any) -> str:
    """One entry of `images`: a cell holding a char array, a char-matrix row, or a number."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise DataError(
                f"{path}: 'images' entry {index} holds {value.size} values; expected one id"
            )
        value = value.ravel()[0]
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise DataError(f"{path}: 'images' entry {index} is empty; expected an image id")
    return text


# ------------------------------------------------------------------------------ pickles


class BoxModeStandIn(IntEnum):
    """Stand-in for detectron2.structures.boxes.BoxMode, so its pickles load without detectron2."""

    XYXY_ABS = 0
    XYWH_ABS = 1
    XYXY_REL = 2
    XYWH_REL = 3
    XYWHA_ABS = 4


def _latin1_encode(obj: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes; latin-1 only."""
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(obj, "latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a proposals pickle may name: numpy array / dtype / scalar builders."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("detectron2.structures.boxes", "BoxMode"): BoxModeStandIn,
    }
    for module in ("numpy.core", "numpy._core"):  # numpy < 2 and >= 2 spell them differently
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy arrays, dtypes and scalars besides plain containers."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def load_restricted_pickle(path: Path) -> Any:
    """The object in a pickle file, built only from numpy arrays, containers and scalars."""
    try:
        with open(path, "rb") as f:
            # latin1: Python 2 (Detectron) pickles hold numpy buffers as 8-bit str
            return RestrictedUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise DataError(
            f"{path}: refused to unpickle global {exc} (proposal pickles may hold only numpy "
            "arrays, lists, dicts, tuples and scalars); convert the file to .npz"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: unreadable pickle ({exc}); regenerate the proposals") from None


def read_proposal_pickle(path: Path) -> dict[str, np.ndarray]:
    """A Detectron or detectron2 proposals pickle (layout told apart by its keys)."""
    data = load_restricted_pickle(path)
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: holds a {type(data).__name__}; expected a dict with 'boxes' and 'ids' "
            "(Detectron or detectron2 proposals)"
        )
    keys = sorted(map(str, data))
    if "objectness_logits" in data or "bbox_mode" in data:
        return _detectron2(path, data, keys)
    return _detectron(path, data, keys)


def _detectron(path: Path, data: dict, keys: list[str]) -> dict[str, np.ndarray]:
    """Detectron (detectron/datasets/json_dataset.py `_add_proposals_from_file`): as stored."""
    id_field = "indexes" if "indexes" in data else "ids"  # Detectron's own compat rule
    _require(path, data, keys, ("boxes", id_field), "Detectron {boxes, scores, ids}")
    ids = _ids(path, data[id_field], id_field)
    boxes = _box_list(path, data["boxes"], len(ids), id_field)
    if "scores" in data:
        _per_image_list(path, data["scores"], len(ids), "scores", id_field)
    log.info("%s: Detectron proposals, %d images (0-based inclusive, file order)", path, len(ids))
    return _keyed(path, ids, boxes)


def _detectron2(path: Path, data: dict, keys: list[str]) -> dict[str, np.ndarray]:
    """detectron2 (detectron2/data/build.py `load_proposals_into_dataset`): converted, sorted."""
    data = dict(data)
    for old, new in (("indexes", "ids"), ("scores", "objectness_logits")):  # as detectron2
        if old in data and new not in data:
            data[new] = data.pop(old)
    _require(
        path, data, keys, ("boxes", "ids", "objectness_logits"),
        "detectron2 {ids, boxes, objectness_logits, bbox_mode}",
    )  # fmt: skip
    raw_mode = data.get("bbox_mode", BoxModeStandIn.XYXY_ABS)
    try:
        mode = BoxModeStandIn(int(raw_mode))
    except (TypeError, ValueError):
        mode = None
    if mode not in (BoxModeStandIn.XYXY_ABS, BoxModeStandIn.XYWH_ABS):
        raise DataError(
            f"{path}: bbox_mode {raw_mode!r} is not supported; use XYXY_ABS (0) or XYWH_ABS (1)"
        )
    ids = _ids(path, data["ids"], "ids")
    boxes = _box_list(path, data["boxes"], len(ids), "ids")
    logits = _per_image_list(path, data["objectness_logits"], len(ids), "objectness_logits", "ids")
    out_boxes = []
    for i, (b, s) in enumerate(zip(boxes, logits, strict=True)):
        if len(s) != len(b):
            raise DataError(
                f"{path}: image {ids[i]!r} has {len(b)} boxes but {len(s)} objectness_logits"
            )
        b = b[np.argsort(-s, kind="stable")]  # descending logit; ties keep file order
        if mode == BoxModeStandIn.XYWH_ABS:
            b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
        out_boxes.append(b - np.array([0, 0, 1, 1], dtype=np.float32))  # continuous -> inclusive
    log.info("%s: detectron2 proposals, %d images, bbox_mode %s", path, len(ids), mode.name)
    return _keyed(path, ids, out_boxes)


def _require(path: Path, data: dict, keys: list[str], needed: tuple[str, ...], what: str) -> None:
    missing = [k for k in needed if k not in data]
    if missing:
        raise DataError(f"{path}: no {missing} key (found {keys}); expected the {what} layout")


def _ids(path: Path, values: Any, field: str) -> list[str]:
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: {field!r} is a {type(values).__name__}; expected a list of ids")
    out = []
    for v in values:
        if isinstance(v, bytes):
            v = v.decode("latin1")
        if isinstance(v, np.generic):
            v = v.item()
        out.append(str(v))
    return out


def _check_one_per_image(
    path: Path, values: Any, count: int, field: str, id_field: str, expected: str
) -> None:
    """`values` must be a list with one entry per id (`expected` names what each holds)."""
    if not isinstance(values, (list, tuple)):
        raise DataError(
            f"{path}: {field!r} is a {type(values).__name__}; expected a list of {expected}, "
            "one per image"
        )
    if len(values) != count:
        raise DataError(
            f"{path}: {field!r} has {len(values)} entries but {id_field!r} has {count}; they "
            "must match one to one"
        )


def _per_image_list(path: Path, values: Any, count: int, field: str, id_field: str) -> list:
    _check_one_per_image(path, values, count, field, id_field, "arrays")
    try:
        return [np.asarray(v, dtype=np.float32).reshape(-1) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"{path}: {field!r} holds non-numeric entries") from None


def _box_list(path: Path, values: Any, count: int, id_field: str) -> list[np.ndarray]:
    _check_one_per_image(path, values, count, "boxes", id_field, "K x 4 arrays")
    out = []
    for i, v in enumerate(values):
        try:
            b = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(f"{path}: boxes entry {i} is not numeric") from None
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise DataError(f"{path}: boxes entry {i} has shape {b.shape}; expected K x 4")
        out.append(b)
    return out


def _keyed(path: Path, ids: list[str], boxes: list[np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for image_id, b in zip(ids, boxes, strict=True):
        if image_id in out:
            raise DataError(f"{path}: image id {image_id!r} appears twice")
        out[image_id] = np.ascontiguousarray(b, dtype=np.float32)
    return out
