"""What a claim receives: its settings, its generator, a progress sink and the shared runs.

A claim never seeds anything itself. The runner hands it a :class:`ClaimContext` whose
``generator`` is seeded from ``(seed, claim id)``; runs that several claims use (a trained net, a
noise estimate) are built through :meth:`ClaimContext.shared`, which seeds them from ``(seed,
stage name)`` -- not from the claim -- so every claim that asks for the same stage with the same
settings gets the same run, computed once per invocation and cached in a :class:`RunCache` that
lives only as long as that invocation (no module-level cache).

Example:
    >>> import torch
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Draw:
    ...     n: int
    >>> def draw(settings, generator):
    ...     return torch.randn(settings.n, generator=generator)
    >>> runs = RunCache()
    >>> a = ClaimContext.for_claim("dropreg.a", "quick", 0, Draw(3), runs=runs)
    >>> b = ClaimContext.for_claim("dropreg.b", "quick", 0, Draw(3), runs=runs)
    >>> bool(torch.equal(a.shared("draw", draw), b.shared("draw", draw)))
    True
    >>> c = ClaimContext.for_claim("dropreg.a", "quick", 1, Draw(3), runs=runs)
    >>> bool(torch.equal(a.shared("draw", draw), c.shared("draw", draw)))
    False
    >>> [(u["name"], u["cached"]) for u in b.shared_runs]
    [('draw', True)]
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from dropreg.experiments.claims import NullProgress, Progress
from dropreg.experiments.pieces import run_pieces

__all__ = ["ClaimContext", "RunCache", "derived_seed"]

T = TypeVar("T")


def derived_seed(seed: int, name: str) -> int:
    """A seed for ``name`` (a claim id or a stage name) derived from the invocation's ``seed``:
    stable across runs and Python processes, distinct per name.

    Example:
        >>> derived_seed(0, "a") != derived_seed(0, "b") and derived_seed(1, "a") != \\
        ...     derived_seed(0, "a")
        True
    """
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


@dataclass
class _Entry:
    value: Any
    elapsed_s: float


class RunCache:
    """Shared runs of one invocation, keyed by ``(stage name, settings, seed)``.

    Create one per ``dropreg reproduce`` call (or per test); dropping it frees every run.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, Any, int], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def has(self, name: str, settings: Any, seed: int) -> bool:
        """Whether the run ``(name, settings, seed)`` is built already."""
        return (name, settings, int(seed)) in self._entries

    def get(self, name: str, settings: Any, seed: int,
            build: Callable[[Any, torch.Generator], T]) -> tuple[T, float, bool]:
        """``(value, seconds it took to build, whether it was cached)``; builds it on a miss
        with a generator seeded from ``derived_seed(seed, "run:" + name)``."""
        try:
            hash(settings)
        except TypeError:
            raise TypeError(f"settings of shared run {name!r} must be hashable (a frozen "
                            f"dataclass), got {type(settings).__name__}") from None
        key = (name, settings, int(seed))
        entry = self._entries.get(key)
        if entry is not None:
            return entry.value, entry.elapsed_s, True
        generator = torch.Generator().manual_seed(derived_seed(seed, "run:" + name))
        t0 = time.perf_counter()
        value = build(settings, generator)
        entry = _Entry(value, time.perf_counter() - t0)
        self._entries[key] = entry
        return value, entry.elapsed_s, False


@dataclass
class ClaimContext:
    """Everything a claim may use: ``settings`` (its profile's frozen dataclass), ``generator``
    (the only source of its random numbers), ``progress``, and :meth:`shared` runs.

    ``shared_runs`` records every shared run the claim used, with the time it took to build
    (also when an earlier claim built it), so the report can show the claim's own time plus the
    shared runs it used. ``shares`` is the claim's declaration of the stage names it may use
    (``@claim(..., shares=...)``; the runner passes it): :meth:`shared` refuses any other name, so
    the declaration a sweep groups claims by cannot go stale. ``None`` (library use) allows any.
    """

    claim_id: str
    profile: str
    seed: int
    settings: Any
    generator: torch.Generator
    progress: Progress = field(default_factory=NullProgress)
    runs: RunCache = field(default_factory=RunCache)
    shared_runs: list[dict[str, Any]] = field(default_factory=list)
    shares: tuple[str, ...] | None = None
    pieces_dir: Path | None = None
    resume_pieces: bool = False
    piece_jobs: int = 1
    pieces_reused: int = 0

    @classmethod
    def for_claim(cls, claim_id: str, profile: str, seed: int, settings: Any, *,
                  progress: Progress | None = None, runs: RunCache | None = None,
                  shares: tuple[str, ...] | None = None) -> ClaimContext:
        """The context of claim ``claim_id`` for one ``(profile, seed)``; ``shares``: the
        stage names the claim declares (None: any)."""
        generator = torch.Generator().manual_seed(derived_seed(seed, claim_id))
        return cls(claim_id=claim_id, profile=profile, seed=int(seed), settings=settings,
                   generator=generator, progress=progress or NullProgress(),
                   runs=runs if runs is not None else RunCache(),
                   shares=None if shares is None else tuple(shares))

    def shared(self, name: str, build: Callable[[Any, torch.Generator], T],
               settings: Any = None) -> T:
        """The run ``build(settings, generator)`` of stage ``name``, built once per
        ``(name, settings, seed)`` in this invocation.

        ``settings`` defaults to the claim's own settings; pass the part of them that the run
        depends on (a frozen dataclass) so that claims with different settings but the same run
        share it. ``build`` gets its own generator, seeded from the seed and ``name`` alone.

        Raises:
            ValueError: ``name`` is not among the stages the claim declares (``shares``).
        """
        if self.shares is not None and name not in self.shares:
            raise ValueError(f"claim {self.claim_id!r} uses shared run {name!r} but declares "
                             f"shares={self.shares!r}: add {name!r} to the shares= of its @claim")
        settings = self.settings if settings is None else settings
        if not self.runs.has(name, settings, self.seed):
            self.progress.note(f"building shared run {name}")
        value, elapsed, cached = self.runs.get(name, settings, self.seed, build)
        self.shared_runs.append({"name": name, "elapsed_s": elapsed, "cached": cached})
        return value

    def pieces(self, name: str, fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(item) for item in items]`` (``fn(*item)`` for a tuple), one stored piece per
        item; the progress advances by one per piece.

        Each value must be JSON-ready and depend only on its item (draw the items' seeds from
        :attr:`generator` first); ``fn`` and the items must be picklable when the run uses
        several processes per claim. See :func:`~dropreg.experiments.pieces.run_pieces`.
        """
        def done(index: int, reused: bool) -> None:
            self.pieces_reused += int(reused)
            self.progress.advance()

        return run_pieces(fn, items, name=name, folder=self.pieces_dir,
                          resume=self.resume_pieces, jobs=self.piece_jobs, on_done=done)
