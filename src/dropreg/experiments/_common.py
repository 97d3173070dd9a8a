"""Scaffolding shared by the paper modules of ``dropreg.experiments``.

Example:
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> plt.close(fig)
"""

from __future__ import annotations

from typing import Any

__all__ = ["pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use only).

    Claims draw their figures off-screen and hand them to ``Figure.from_matplotlib``; importing
    matplotlib lazily keeps ``import dropreg.experiments`` light.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
