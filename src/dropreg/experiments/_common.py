"""Scaffolding shared by the paper modules of ``dropreg.experiments``: the plotting backend and the
axis rules every report figure follows.

Example:
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> _ = ax.bar([0, 1], [1.6, 1.7])
    >>> ax.set_ylim(1.55, 1.75)
    (1.55, 1.75)
    >>> tidy_figure(fig)
    >>> float(ax.get_ylim()[0])      # bars start at zero
    0.0
    >>> plt.close(fig)
"""

from __future__ import annotations

from typing import Any

__all__ = ["pyplot", "readable_log_axis", "tidy_figure"]

#: a log axis shows at least this many labelled ticks
MIN_LOG_TICKS = 3


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use only).

    Claims draw their figures off-screen and hand them to ``Figure.from_matplotlib``; importing
    matplotlib lazily keeps ``import dropreg.experiments`` light.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _labelled_ticks(axis: Any) -> int:
    """Major ticks inside the view that carry a label (after the figure was drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    locs = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
    formatter = axis.get_major_formatter()
    formatter.set_locs(locs)
    return sum(1 for i, t in enumerate(locs) if str(formatter(t, i)).strip())


def readable_log_axis(axis: Any) -> None:
    """Give a log-scaled ``axis`` (``ax.xaxis`` or ``ax.yaxis``) at least ``MIN_LOG_TICKS``
    labelled ticks: decades when the range spans enough of them, else 1-2-5 steps, else every
    integer multiple of the decade, labelled in plain or scientific notation.

    Example:
        >>> plt = pyplot()
        >>> fig, ax = plt.subplots()
        >>> _ = ax.semilogy([0, 1], [0.7, 1.3])   # within one decade: one tick at most
        >>> fig.canvas.draw()
        >>> readable_log_axis(ax.yaxis)
        >>> fig.canvas.draw()
        >>> _labelled_ticks(ax.yaxis) >= MIN_LOG_TICKS
        True
        >>> plt.close(fig)
    """
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullLocator

    if axis.get_scale() != "log" or _labelled_ticks(axis) >= MIN_LOG_TICKS:
        return
    for subs in ((1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), tuple(float(s) for s in range(1, 10))):
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        # label every major tick (by default matplotlib labels only decades once the axis spans
        # more than one decade, which leaves 2 and 5 unlabelled)
        axis.set_major_formatter(LogFormatterSciNotation(
            labelOnlyBase=False, minor_thresholds=(float("inf"), float("inf"))))
        axis.set_minor_locator(NullLocator())
        if _labelled_ticks(axis) >= MIN_LOG_TICKS:
            return
    lo, hi = sorted(axis.get_view_interval())  # a range narrower than one step: three ticks
    from matplotlib.ticker import FixedLocator

    axis.set_major_locator(FixedLocator([lo, (lo * hi) ** 0.5, hi]))


def _has_bars(ax: Any) -> bool:
    from matplotlib.container import BarContainer

    return any(isinstance(c, BarContainer) for c in ax.containers)


def tidy_figure(fig: Any) -> None:
    """Apply the report's axis rules to every axes of ``fig`` (called for every claim figure):

    * a log axis has several labelled ticks (:func:`readable_log_axis`), never a single one;
    * a bar chart on a linear value axis starts at zero (bars whose length is cut exaggerate
      the differences); vertical and horizontal bars alike. A chart whose values are all
      negative ends at zero instead.
    """
    fig.canvas.draw()  # tick locations are only known once the figure is laid out
    for ax in fig.axes:
        readable_log_axis(ax.xaxis)
        readable_log_axis(ax.yaxis)
        if not _has_bars(ax):
            continue
        from matplotlib.container import BarContainer

        horizontal = any(getattr(c, "orientation", "vertical") == "horizontal"
                         for c in ax.containers if isinstance(c, BarContainer))
        axis = ax.xaxis if horizontal else ax.yaxis
        if axis.get_scale() != "linear":
            continue
        get, set_ = (ax.get_xlim, ax.set_xlim) if horizontal else (ax.get_ylim, ax.set_ylim)
        lo, hi = get()
        if lo > 0:
            set_(0.0, hi)
        elif hi < 0:
            set_(lo, 0.0)
