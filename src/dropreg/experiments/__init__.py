"""Experiments: one package (or module) per paper, each registering its claims; the claim
framework (claims, context, measures), runner, store and report.

Every module or package in this one that is not infrastructure (:data:`INFRASTRUCTURE`) is a
paper's and is imported by :func:`load_all`, so adding ``experiments/<paper>/`` (``runs.py``,
``claims.py``, ``figures.py``, imported by its ``__init__``) is all it takes to add claims.
Claims of your own, outside dropreg, are registered the same way in any importable module named
in the environment variable ``DROPREG_CLAIM_MODULES`` (comma-separated).
"""

from __future__ import annotations

import importlib
import os
import pkgutil

INFRASTRUCTURE = frozenset({"claims", "context", "measures", "runner", "store", "report",
                            "testbeds", "executors", "sweep", "pooled", "pieces"})


def paper_modules() -> list[str]:
    """Names of the paper modules of this package."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__)
        if m.name not in INFRASTRUCTURE and not m.name.startswith("_")
    )


class ClaimModuleError(ValueError):
    """A module named in ``DROPREG_CLAIM_MODULES`` is missing or fails to import."""


def load_all() -> None:
    """Import every paper module, then the user's modules, so that their claims are registered.

    Raises:
        ClaimModuleError: a module of ``DROPREG_CLAIM_MODULES`` cannot be imported (the message
            names it and the first line of the cause; the command line shows it as a usage error).
    """
    for name in paper_modules():
        importlib.import_module(f"{__name__}.{name}")
    for name in os.environ.get("DROPREG_CLAIM_MODULES", "").split(","):
        if name.strip():
            try:
                importlib.import_module(name.strip())
            except Exception as e:  # noqa: BLE001 - any failure of user code is reported
                cause = (str(e).strip().splitlines() or [""])[0]
                raise ClaimModuleError(
                    f"DROPREG_CLAIM_MODULES: cannot import {name.strip()!r}: "
                    f"{type(e).__name__}: {cause}") from e
