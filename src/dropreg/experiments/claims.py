"""Claims: checkable statements of the papers, their measurements and verdicts.

A claim is registered once, with the :func:`claim` decorator, in the experiments module of the
paper it tests (``dropreg/experiments/<paper>.py``). Its function measures and returns an
:class:`Outcome`; the verdict is computed from the measurements by :func:`verdict_of`, never
written by hand.

Example:
    >>> m = Measurement("identity residual", value=1e-14, expected=0.0, tolerance=1e-10)
    >>> m.passed
    True
    >>> verdict_of([m])
    'reproduced'
    >>> verdict_of([Measurement("slope", value=2.5, expected=1.0, tolerance=0.1)])
    'not reproduced'
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from matplotlib.figure import Figure as MplFigure

Verdict = Literal["reproduced", "not reproduced", "inconclusive", "error"]
VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "inconclusive", "error")
PROFILES: tuple[str, ...] = ("quick", "full")
Kind = Literal["close", "at_most", "at_least", "info"]

PAPERS: dict[str, str] = {
    "pal2020": "Pal, Lane, Vidal, Haeffele. On the Regularization Properties of Structured "
    "Dropout. CVPR 2020.",
    "wei2020": "Wei, Kakade, Ma. The Implicit and Explicit Regularization Effects of Dropout. "
    "ICML 2020.",
    "zhang2022": "Zhang, Zhou, Xu. Dropout in Training Neural Networks: Flatness of Solution "
    "and Noise Structure. 2022.",
    "helmbold2017": "Helmbold, Long. Surprising Properties of Dropout in Deep Networks. "
    "COLT 2017.",
    "cavazza2018": "Cavazza, Morerio, Haeffele, Lane, Murino, Vidal. Dropout as a Low-Rank "
    "Regularizer for Matrix Factorization. AISTATS 2018.",
    "mianjy2018": "Mianjy, Arora, Vidal. On the Implicit Bias of Dropout. ICML 2018.",
    "mianjy2019": "Mianjy, Arora. On Dropout and Nuclear Norm Regularization. ICML 2019.",
    "arora2021": "Arora, Bartlett, Mianjy, Srebro. Dropout: Explicit Forms and Capacity "
    "Control. ICML 2021.",
    "dropreg": "dropreg itself: properties of this library's own implementations.",
}


@dataclass(frozen=True)
class Measurement:
    """One measured number and what the paper predicts for it.

    Args:
        name: what was measured, e.g. ``"relative gap to closed form"``.
        value: the measured value.
        expected: the predicted value (``kind="close"``) or bound (``"at_most"``/``"at_least"``).
        tolerance: allowed deviation, stated from the sampling or numerical error.
        kind: ``"close"`` (``|value - expected| <= tolerance``), ``"at_most"``
            (``value <= expected + tolerance``), ``"at_least"`` (``value >= expected -
            tolerance``) or ``"info"`` (reported, not judged).
        stderr: standard error of ``value`` when it is a random estimate.
        unit: unit of ``value`` for the report, e.g. ``"s"`` or ``"%"``.

    Example:
        >>> Measurement("drop rate", 0.1003, expected=0.1, tolerance=0.001).passed
        True
        >>> Measurement("gap", 0.5, expected=1e-3, kind="at_most").passed
        False
    """

    name: str
    value: float
    expected: float | None = None
    tolerance: float = 0.0
    kind: Kind = "close"
    stderr: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("close", "at_most", "at_least", "info"):
            raise ValueError(
                f"kind must be one of 'close', 'at_most', 'at_least', 'info', got {self.kind!r}"
            )
        if self.kind != "info" and self.expected is None:
            raise ValueError(f"measurement {self.name!r} of kind {self.kind!r} needs `expected`")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")

    @property
    def passed(self) -> bool | None:
        """Whether the measurement agrees with the prediction; ``None`` for ``"info"``."""
        v = float(self.value)
        if self.kind == "info" or self.expected is None:
            return None
        if v != v:  # NaN never agrees
            return False
        e, t = float(self.expected), float(self.tolerance)
        if self.kind == "close":
            return abs(v - e) <= t
        if self.kind == "at_most":
            return v <= e + t
        return v >= e - t

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": float(self.value),
            "expected": None if self.expected is None else float(self.expected),
            "tolerance": float(self.tolerance),
            "kind": self.kind,
            "stderr": None if self.stderr is None else float(self.stderr),
            "unit": self.unit,
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(
            name=d["name"],
            value=d["value"],
            expected=d.get("expected"),
            tolerance=d.get("tolerance", 0.0),
            kind=d.get("kind", "close"),
            stderr=d.get("stderr"),
            unit=d.get("unit", ""),
        )


@dataclass(frozen=True)
class Figure:
    """A figure of a claim: PNG bytes and a caption saying what is predicted and measured."""

    name: str
    caption: str
    png: bytes

    @classmethod
    def from_matplotlib(cls, name: str, caption: str, fig: MplFigure, dpi: int = 110) -> Figure:
        """Render a matplotlib figure to PNG and close it.

        Example:
            >>> import matplotlib
            >>> matplotlib.use("Agg")
            >>> import matplotlib.pyplot as plt
            >>> fig, ax = plt.subplots()
            >>> _ = ax.plot([0, 1], [0, 1])
            >>> Figure.from_matplotlib("line", "a line", fig).png[:4]
            b'\\x89PNG'
        """
        import matplotlib.pyplot as plt

        from dropreg.experiments._common import tidy_figure

        tidy_figure(fig)  # the report's axis rules: readable log axes, bars from zero
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return cls(name=name, caption=caption, png=buf.getvalue())


@dataclass(frozen=True)
class Outcome:
    """What a claim's ``run`` returns.

    ``inconclusive_reason`` lets a claim say its measurement could not decide (e.g. a run too
    short in the quick profile); it can only lower a verdict to "inconclusive", never raise one.
    """

    measurements: Sequence[Measurement]
    figures: Sequence[Figure] = ()
    notes: str = ""
    inconclusive_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        v = verdict_of(self.measurements)
        if self.inconclusive_reason and v == "reproduced":
            return "inconclusive"
        return v


def verdict_of(measurements: Sequence[Measurement]) -> Verdict:
    """Verdict from measurements: any judged one failing -> "not reproduced"; all judged ones
    passing -> "reproduced"; none judged -> "inconclusive"."""
    judged = [m.passed for m in measurements if m.passed is not None]
    if not judged:
        return "inconclusive"
    return "reproduced" if all(judged) else "not reproduced"


class Progress(Protocol):
    """Progress sink handed to a claim: call ``set_total`` once, then ``advance``."""

    def set_total(self, total: float) -> None: ...

    def advance(self, amount: float = 1.0) -> None: ...

    def note(self, text: str) -> None: ...


class NullProgress:
    """A :class:`Progress` that ignores everything (for tests and library use)."""

    def set_total(self, total: float) -> None:
        pass

    def advance(self, amount: float = 1.0) -> None:
        pass

    def note(self, text: str) -> None:
        pass


RunFn = Callable[[str, "torch.Generator", Progress], Outcome]


@dataclass(frozen=True)
class Claim:
    """A registered claim: ``run(profile, generator, progress) -> Outcome``."""

    id: str
    paper: str
    statement: str
    run: RunFn
    module: str = ""


_REGISTRY: dict[str, Claim] = {}
#: a paper key: dropreg's (``PAPERS``) or one of the user's own claims (their own report section)
_PAPER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def claim(id: str, paper: str, statement: str) -> Callable[[RunFn], RunFn]:
    """Register a claim function under ``id``.

    The id starts with the paper key (``pal2020.dropblock-sgd-reaches-closed-form``).

    Example:
        >>> @claim("dropreg.doc-example", "dropreg", "one equals one")
        ... def _one(profile, generator, progress):
        ...     return Outcome([Measurement("one", 1.0, expected=1.0)])
        >>> get_claim("dropreg.doc-example").paper
        'dropreg'
        >>> _ = _REGISTRY.pop("dropreg.doc-example")
    """
    if not isinstance(paper, str) or not _PAPER_KEY.fullmatch(paper):
        raise ValueError(f"paper must be a key such as 'pal2020' or one of your own (letters, "
                         f"digits, '_' or '-', starting with a letter), got {paper!r}")
    if not id.startswith(paper + "."):
        raise ValueError(f"claim id {id!r} must start with its paper key {paper + '.'!r}")

    def register(fn: RunFn) -> RunFn:
        if id in _REGISTRY and _REGISTRY[id].run is not fn:
            raise ValueError(f"claim id {id!r} is registered twice")
        _REGISTRY[id] = Claim(id=id, paper=paper, statement=statement, run=fn,
                              module=fn.__module__)
        return fn

    return register


def get_claim(id: str) -> Claim:
    """The registered claim with this id."""
    try:
        return _REGISTRY[id]
    except KeyError:
        raise KeyError(f"no claim with id {id!r}") from None


def registered_claims() -> list[Claim]:
    """Every registered claim, sorted by id (imports the experiment modules first)."""
    from dropreg.experiments import load_all

    load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
