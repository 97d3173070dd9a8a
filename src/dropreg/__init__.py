"""dropreg: the theory of dropout, as tools that work.

Submodules load lazily, so ``import dropreg`` stays light (no torch import until one is used)::

    >>> import dropreg
    >>> dropreg.__version__
    '0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "masks",
    "nn",
    "linear",
    "relu",
    "curvature",
    "analytic",
    "data",
    "experiments",
    "cli",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"dropreg.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'dropreg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
