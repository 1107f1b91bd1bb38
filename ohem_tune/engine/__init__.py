"""Training engine: the Trainer loop, per-minibatch step, checkpoints and hooks."""

from ohem_tune.engine.checkpoint import last_checkpoint, load_model
from ohem_tune.engine.hooks import Hook

__all__ = ["Hook", "Trainer", "last_checkpoint", "load_model"]


def __getattr__(name: str):
    if name == "Trainer":  # lazy: the trainer pulls in the data package
        from ohem_tune.engine.trainer import Trainer

        return Trainer
    raise AttributeError(name)
