"""ohem-tune: Fast R-CNN + OHEM ablations on Ray Tune, tracked in MLflow, as paper tables."""

__version__ = "0.1.0"
