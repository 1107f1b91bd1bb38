"""User-facing error types: each message is one complete line (file, field, what to do)."""

from __future__ import annotations


class OhemTuneError(Exception):
    """Base of errors whose message is shown to the user as-is, without a traceback."""


class ConfigError(OhemTuneError, ValueError):
    """A bad config or spec value: names the file, the dotted field, the bad value and the fix."""


class DataError(OhemTuneError, ValueError):
    """Bad dataset input: missing root/split, corrupt image, bad annotation or proposals."""


class TrainingError(OhemTuneError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); names the iteration."""


class EvaluationError(OhemTuneError, ValueError):
    """Bad detections or ground truth handed to an evaluator."""


class TrackingError(OhemTuneError, RuntimeError):
    """The MLflow tracking store cannot be reached or used from where trials run."""
