"""Claims: checkable statements of the papers, their measurements and verdicts.

A claim is registered once, with the :func:`claim` decorator, in the experiments package of the
paper it tests (``dropreg/experiments/<paper>/``). It declares its settings per profile (a frozen
dataclass each for ``smoke``, ``quick`` and ``full``) and, optionally, a figure drawer that reads
only the stored ``details``. Its function receives one
:class:`~dropreg.experiments.context.ClaimContext` (settings, generator, progress, shared runs),
measures and returns an :class:`Outcome`; the verdict is computed from the measurements by
:func:`verdict_of`, never written by hand.

A judged measurement that carries its uncertainty (``stderr`` or ``interval``) is decided only when
its whole uncertainty band lies on one side of the threshold; otherwise it is "undecided" and the
claim "inconclusive". The band is ``value +- DECISION_Z * stderr`` (``DECISION_Z = 2``, our choice)
or the interval itself.

Example:
    >>> m = Measurement("identity residual", value=1e-14, expected=0.0, tolerance=1e-10)
    >>> m.passed
    True
    >>> verdict_of([m])
    'reproduced'
    >>> verdict_of([Measurement("slope", value=2.5, expected=1.0, tolerance=0.1)])
    'not reproduced'
    >>> Measurement("paired difference", 0.1, expected=0.0, kind="at_least", stderr=0.08).status
    'undecided'
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure as MplFigure

    from dropreg.experiments.context import ClaimContext

Verdict = Literal["reproduced", "not reproduced", "inconclusive", "error"]
VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "inconclusive", "error")
#: ``smoke``: every claim in seconds (what the test suite runs); ``quick``: minutes on 2 CPU cores
#: (the default of ``dropreg reproduce``); ``full``: the larger settings.
PROFILES: tuple[str, ...] = ("smoke", "quick", "full")
Kind = Literal["close", "at_most", "at_least", "info"]
Status = Literal["pass", "fail", "undecided", "info"]
#: A one-sided judgement with an uncertainty is decided only when ``value +- DECISION_Z * stderr``
#: lies wholly on one side of its threshold. Our choice (about a 2.3% one-sided error rate).
DECISION_Z: float = 2.0

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
        stderr: standard error of ``value`` when it is a random estimate. For ``"at_most"`` and
            ``"at_least"`` it widens the decision: see :attr:`status`.
        unit: unit of ``value`` for the report, e.g. ``"s"`` or ``"%"``.
        interval: a confidence interval ``(low, high)`` of ``value`` (e.g. of a correlation or
            slope); for one-sided kinds it is the uncertainty band used by :attr:`status`.
        n: the number of independent samples (seeds, examples) behind ``value``, when it is a
            mean over them: used to say how many would resolve an undecided measurement.
        ours: True when the threshold is our choice, not the paper's (the report says so).
        tolerance_z: an allowance in standard errors (needs ``stderr``): the verdict uses
            :attr:`judged_tolerance` = ``tolerance + tolerance_z * stderr`` (``tolerance``
            stays the given part; ``to_dict`` writes the judged one as ``"tolerance"`` and the
            given one as ``"tolerance_base"``). A seed sweep then judges the pooled
            mean at the same base plus ``tolerance_z`` of its own standard error, instead of
            reporting a prediction that differs between seeds
            (:func:`~dropreg.experiments.pooled.pool_measurement`).

    Example:
        >>> Measurement("drop rate", 0.1003, expected=0.1, tolerance=0.001).passed
        True
        >>> Measurement("ratio", 1.02, expected=1.0, stderr=0.01, tolerance_z=5).judged_tolerance
        0.05
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
    interval: tuple[float, float] | None = None
    n: int | None = None
    ours: bool = False
    tolerance_z: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("close", "at_most", "at_least", "info"):
            raise ValueError(
                f"kind must be one of 'close', 'at_most', 'at_least', 'info', got {self.kind!r}"
            )
        if self.kind != "info" and self.expected is None:
            raise ValueError(f"measurement {self.name!r} of kind {self.kind!r} needs `expected`")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if self.stderr is not None and not float(self.stderr) >= 0:
            raise ValueError(f"stderr must be >= 0 or None, got {self.stderr}")
        if self.tolerance_z is not None:
            z = float(self.tolerance_z)
            if not z >= 0 or math.isinf(z):
                raise ValueError(f"tolerance_z must be a finite number >= 0, got "
                                 f"{self.tolerance_z!r}")
            if self.stderr is None:
                raise ValueError(f"measurement {self.name!r}: tolerance_z needs stderr")
            object.__setattr__(self, "tolerance_z", z)
        if self.interval is not None:
            lo, hi = (float(b) for b in self.interval)
            if not lo <= hi:
                raise ValueError(f"interval must be (low, high) with low <= high, "
                                 f"got {self.interval}")
            object.__setattr__(self, "interval", (lo, hi))

    @property
    def tolerance_base(self) -> float:
        """The given ``tolerance``, without the ``tolerance_z * stderr`` part."""
        return float(self.tolerance)

    @property
    def judged_tolerance(self) -> float:
        """The tolerance the verdict uses: ``tolerance + tolerance_z * stderr`` (``tolerance``
        when ``tolerance_z`` is None). Derived, so that ``dataclasses.replace`` with a new
        ``stderr`` or ``tolerance`` judges with the new one."""
        if self.tolerance_z is None:
            return float(self.tolerance)
        return float(self.tolerance) + self.tolerance_z * float(self.stderr)

    @property
    def band(self) -> tuple[float, float]:
        """The uncertainty band of ``value``: ``interval``, else ``value +- DECISION_Z *
        stderr``, else the point ``(value, value)``."""
        v = float(self.value)
        if self.interval is not None:
            return self.interval
        if self.stderr is not None:
            return v - DECISION_Z * float(self.stderr), v + DECISION_Z * float(self.stderr)
        return v, v

    @property
    def status(self) -> Status:
        """``"pass"``, ``"fail"``, ``"undecided"`` or ``"info"``.

        ``"close"`` compares the value with ``expected +- tolerance`` (the tolerance is the
        allowance for the numerical or sampling error). ``"at_most"`` / ``"at_least"`` compare the
        whole :attr:`band` with the threshold ``expected +- tolerance``: wholly on the predicted
        side passes, wholly on the other side fails, across the threshold is undecided.
        """
        v = float(self.value)
        if self.kind == "info" or self.expected is None:
            return "info"
        if v != v:  # NaN never agrees
            return "fail"
        e, t = float(self.expected), self.judged_tolerance
        if self.kind == "close":
            return "pass" if abs(v - e) <= t else "fail"
        lo, hi = self.band
        if lo != lo or hi != hi:
            return "undecided"
        if self.kind == "at_most":
            return "pass" if hi <= e + t else "fail" if lo > e + t else "undecided"
        return "pass" if lo >= e - t else "fail" if hi < e - t else "undecided"

    @property
    def passed(self) -> bool | None:
        """Whether the measurement agrees with the prediction; ``None`` for ``"info"`` and for
        an undecided measurement (see :attr:`status`)."""
        return {"pass": True, "fail": False}.get(self.status)

    def samples_to_resolve(self) -> int | None:
        """About how many samples (seeds, examples) would decide an undecided measurement.

        The standard error of a mean falls as ``1 / sqrt(n)``: deciding needs
        ``|value - threshold| >= DECISION_Z * stderr``, so ``n' = n (DECISION_Z * stderr /
        |value - threshold|)^2``. None when not undecided or ``n``/``stderr`` are unknown.

        Example:
            >>> Measurement("d", 0.1, expected=0.0, kind="at_least", stderr=0.1,
            ...             n=5).samples_to_resolve()
            20
        """
        if self.status != "undecided" or self.n is None or self.stderr is None:
            return None
        t = self.judged_tolerance
        threshold = float(self.expected) + (t if self.kind == "at_most" else -t)
        gap = abs(float(self.value) - threshold)
        if gap == 0:
            return None
        return int(math.ceil(self.n * (DECISION_Z * float(self.stderr) / gap) ** 2))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": float(self.value),
            "expected": None if self.expected is None else float(self.expected),
            "tolerance": self.judged_tolerance,
            "kind": self.kind,
            "stderr": None if self.stderr is None else float(self.stderr),
            "unit": self.unit,
            "interval": None if self.interval is None else list(self.interval),
            "n": self.n,
            "ours": self.ours,
            "tolerance_z": self.tolerance_z,
            "tolerance_base": self.tolerance_base,
            "status": self.status,
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(
            name=d["name"],
            value=d["value"],
            expected=d.get("expected"),
            tolerance=(d.get("tolerance", 0.0) if d.get("tolerance_z") is None
                       else d.get("tolerance_base", 0.0)),
            kind=d.get("kind", "close"),
            stderr=d.get("stderr"),
            unit=d.get("unit", ""),
            interval=None if d.get("interval") is None else tuple(d["interval"]),
            n=d.get("n"),
            ours=bool(d.get("ours", False)),
            tolerance_z=d.get("tolerance_z"),
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

    ``inconclusive_reason`` lets a claim say its measurement could not decide (e.g. a control
    that failed, so the measurement cannot see the effect); it can only lower a verdict to
    "inconclusive", never raise one. ``reason`` says why a verdict other than "reproduced" came
    out ("not reproduced because ..."); when a claim gives none, :func:`reason_of` writes one from
    the failing or undecided measurements. ``details`` holds every number the figures need: the
    claim's drawer reads only them, so ``dropreg report`` can redraw from stored results.
    """

    measurements: Sequence[Measurement]
    figures: Sequence[Figure] = ()
    notes: str = ""
    inconclusive_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None

    @property
    def verdict(self) -> Verdict:
        v = verdict_of(self.measurements)
        if self.inconclusive_reason and v == "reproduced":
            return "inconclusive"
        return v


def verdict_of(measurements: Sequence[Measurement]) -> Verdict:
    """Verdict from measurements: any judged one failing -> "not reproduced"; else any undecided
    (closer to its threshold than its uncertainty) -> "inconclusive"; all judged ones passing ->
    "reproduced"; none judged -> "inconclusive"."""
    status = [m.status for m in measurements if m.status != "info"]
    if not status:
        return "inconclusive"
    if "fail" in status:
        return "not reproduced"
    return "inconclusive" if "undecided" in status else "reproduced"


def _threshold_text(m: Measurement) -> str:
    if m.kind == "close":
        return f"predicted {m.expected:.4g} within {m.judged_tolerance:.3g}"
    sign = "<=" if m.kind == "at_most" else ">="
    t = m.judged_tolerance
    bound = m.expected + (t if m.kind == "at_most" else -t)
    return f"predicted {sign} {bound:.4g}" + (" (our threshold)" if m.ours else "")


def _measured_text(m: Measurement) -> str:
    text = f"{m.name} = {float(m.value):.4g}"
    if m.interval is not None:
        text += f" (interval {m.interval[0]:.4g} to {m.interval[1]:.4g})"
    elif m.stderr is not None:
        text += f" +- {float(m.stderr):.2g} s.e."
    return text


def reason_of(outcome: Outcome) -> str | None:
    """Why ``outcome`` is not "reproduced": its own ``reason``, else its
    ``inconclusive_reason``, else one sentence per failing or undecided measurement.

    Example:
        >>> o = Outcome([Measurement("d", 0.1, expected=0.0, kind="at_least", stderr=0.1, n=5)])
        >>> print(reason_of(o))
        undecided: d = 0.1 +- 0.1 s.e., predicted >= 0; about 20 samples would resolve it
    """
    verdict = outcome.verdict
    if verdict == "reproduced":
        return None
    if outcome.reason:
        return outcome.reason
    if outcome.inconclusive_reason:
        return outcome.inconclusive_reason
    parts = []
    for m in outcome.measurements:
        if m.status == "fail":
            parts.append(f"{_measured_text(m)}, {_threshold_text(m)}")
        elif m.status == "undecided":
            more = m.samples_to_resolve()
            tail = f"; about {more} samples would resolve it" if more else ""
            parts.append(f"undecided: {_measured_text(m)}, {_threshold_text(m)}{tail}")
    if not parts:
        return "no measurement was judged"
    return "; ".join(parts)


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


#: A claim's function: ``run(ctx) -> Outcome`` (``ctx`` a
#: :class:`~dropreg.experiments.context.ClaimContext`).
RunFn = Callable[["ClaimContext"], Outcome]
#: A claim's figure drawer: ``draw(details) -> figures``, reading only the stored details.
DrawFn = Callable[[dict], Sequence[Figure]]


@dataclass(frozen=True)
class Claim:
    """A registered claim.

    ``settings`` maps each profile to the claim's frozen settings dataclass (hashable: it keys
    shared runs); ``figure`` draws the claim's figures from its stored ``details``;
    ``deterministic`` marks a claim that draws no random number (its values do not depend on the
    seed); ``shares`` names the shared runs (stages of
    :meth:`~dropreg.experiments.context.ClaimContext.shared`) the claim uses, so that a sweep can
    group the claims that share a run without running them.
    """

    id: str
    paper: str
    statement: str
    run: RunFn
    module: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    figure: DrawFn | None = None
    deterministic: bool = False
    shares: tuple[str, ...] = ()

    def settings_for(self, profile: str) -> Any:
        """The settings of this claim in ``profile``.

        Raises:
            ValueError: unknown profile, or the claim declares no settings for it.
        """
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
        try:
            return self.settings[profile]
        except KeyError:
            raise ValueError(f"claim {self.id!r} declares no settings for profile {profile!r} "
                             f"(it has {', '.join(self.settings) or 'none'})") from None


_REGISTRY: dict[str, Claim] = {}


def _paper_key_ok(paper: str) -> bool:
    return bool(paper) and paper.replace("_", "").isalnum() and paper[0].isalpha()


def claim(
    id: str,
    paper: str,
    statement: str,
    *,
    settings: Mapping[str, Any],
    figure: DrawFn | None = None,
    deterministic: bool = False,
    shares: Sequence[str] = (),
) -> Callable[[RunFn], RunFn]:
    """Register a claim function under ``id``.

    The id starts with the paper key (``pal2020.dropblock-sgd-reaches-closed-form``). The keys of
    :data:`PAPERS` have their citation in the report; a claim of your own may use any key of
    letters, digits and underscores (it gets its own section).

    Args:
        id: ``<paper>.<name>``.
        paper: the paper key.
        statement: the claim in one or two sentences, thresholds that are ours named so.
        settings: one frozen (hashable) settings object per profile: ``smoke``, ``quick``,
            ``full``.
        figure: a drawer ``details -> [Figure, ...]`` (called by the runner after the claim and
            by ``dropreg report`` on stored results).
        deterministic: the claim draws no random number.
        shares: the stage names of every shared run the claim builds or reuses through
            ``ctx.shared(name, ...)``. Claims that name a common stage form one group, which a
            sweep runs in one worker per seed (so the run is built once there); calling
            ``ctx.shared`` with an undeclared name is an error.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class One:
        ...     n: int
        >>> @claim("dropreg.doc-example", "dropreg", "one equals one",
        ...        settings={"smoke": One(1), "quick": One(2), "full": One(3)})
        ... def _one(ctx):
        ...     return Outcome([Measurement("one", 1.0, expected=1.0)])
        >>> get_claim("dropreg.doc-example").settings_for("quick")
        One(n=2)
        >>> _ = _REGISTRY.pop("dropreg.doc-example")
    """
    if not _paper_key_ok(paper):
        raise ValueError(f"paper must be a key of letters, digits and underscores (e.g. one of "
                         f"{sorted(PAPERS)}), got {paper!r}")
    if not id.startswith(paper + "."):
        raise ValueError(f"claim id {id!r} must start with its paper key {paper + '.'!r}")
    unknown = sorted(set(settings) - set(PROFILES))
    missing = [p for p in PROFILES if p not in settings]
    if unknown or missing:
        raise ValueError(f"settings of claim {id!r} must have exactly the profiles "
                         f"{', '.join(PROFILES)} (missing: {missing}, unknown: {unknown})")
    if isinstance(shares, str) or not all(isinstance(n, str) and n for n in shares):
        raise TypeError(f"shares of claim {id!r} must be a tuple of stage names (non-empty "
                        f"strings), got {shares!r}")
    for prof, value in settings.items():
        try:
            hash(value)
        except TypeError:
            raise TypeError(f"settings[{prof!r}] of claim {id!r} must be hashable (a frozen "
                            f"dataclass), got {type(value).__name__}") from None

    def register(fn: RunFn) -> RunFn:
        if id in _REGISTRY and _REGISTRY[id].run is not fn:
            raise ValueError(f"claim id {id!r} is registered twice")
        _REGISTRY[id] = Claim(id=id, paper=paper, statement=statement, run=fn,
                              module=fn.__module__, settings=dict(settings), figure=figure,
                              deterministic=deterministic, shares=tuple(shares))
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
