"""The environment every in-process local Ray of the suite starts under.

Ray keeps a process's first auth mode for every later ray.init in it, so all in-process local
Rays use auth disabled (the CLI subprocesses the tests start then join without a token).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_ray_env(ray_tmp: str) -> Iterator[None]:
    """RAY_TMPDIR=ray_tmp and RAY_AUTH_MODE=disabled inside, the previous values restored after."""
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE")}
    os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
