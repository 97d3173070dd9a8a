"""Seed sweeps: seed lists, claim groups, work units, the folder layout and resume.

A sweep runs the selected claims for several seeds. Its unit of work is one *claim group* for one
``(profile, seed)``: the claims that name a common shared run in their ``@claim(shares=...)``
(transitively) form a group, so a shared training runs once per seed, in whichever worker gets the
unit. Several seeds are stored as ``OUT/seed-<k>/results/`` (each folder a valid ``dropreg
report`` input); a single seed keeps the plain layout ``OUT/results/``. ``--resume`` keeps every
stored result with the same profile, seed and settings and reruns only the claims that are
missing, grouped as before. How units are executed is the business of
:mod:`dropreg.experiments.executors`; only the driver writes files.

Example:
    >>> parse_seeds("0-3,7")
    [0, 1, 2, 3, 7]
    >>> from dropreg.experiments.claims import get_claim, registered_claims
    >>> _ = registered_claims()
    >>> ids = ["zhang2022.noise-hessian-alignment", "cavazza2018.dropout-expected-objective",
    ...        "zhang2022.flatter-minima-1d-regression"]
    >>> for group in claim_groups([get_claim(i) for i in ids]):
    ...     print([c.id for c in group])
    ['zhang2022.noise-hessian-alignment', 'zhang2022.flatter-minima-1d-regression']
    ['cavazza2018.dropout-expected-objective']
    >>> units = plan_units([get_claim(i) for i in ids], "smoke", [0, 1])
    >>> [(u.seed, len(u.claim_ids)) for u in units]
    [(0, 2), (0, 1), (1, 2), (1, 1)]
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dropreg.experiments.claims import Claim, get_claim
from dropreg.experiments.store import RESULTS_DIR

SEED_DIR_PREFIX = "seed-"
_SEED_DIR = re.compile(r"^seed-(\d+)$")
_SEEDS_FORM = "an int >= 0 (5), a range (0-9) or a comma-separated list of both (0,3,7 or 0-4,9)"


def parse_seeds(text: str) -> list[int]:
    """The seeds of ``--seeds``: ``"5"``, ``"0-9"`` (inclusive), ``"0,3,7"`` or a mix
    (``"0-4,9"``), in the order given.

    Raises:
        ValueError: anything else, a reversed range, a negative or repeated seed (the message
            names ``--seeds``, the value and the allowed form).

    Example:
        >>> parse_seeds("0-2"), parse_seeds("0,3,7"), parse_seeds("4")
        ([0, 1, 2], [0, 3, 7], [4])
        >>> parse_seeds("3-1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --seeds: range '3-1' runs backwards; allowed: an int >= 0 (5), a range ...
    """
    seeds: list[int] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not str(text).strip() or any(not p for p in parts):
        raise ValueError(f"--seeds: got {text!r}; allowed: {_SEEDS_FORM}")
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if m is None:
            raise ValueError(f"--seeds: cannot read {part!r} in {text!r}; allowed: {_SEEDS_FORM}")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        if hi < lo:
            raise ValueError(f"--seeds: range {part!r} runs backwards; allowed: {_SEEDS_FORM}")
        seeds += range(lo, hi + 1)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"--seeds: seed {repeated[0]} appears twice in {text!r}; allowed: "
                         f"{_SEEDS_FORM}, each seed once")
    return seeds


def claim_groups(claims: Sequence[Claim]) -> list[tuple[Claim, ...]]:
    """The claims joined (transitively) by a shared run they declare (``Claim.shares``).

    Groups come in the order of their first claim in ``claims``, and keep that order inside;
    a claim that shares nothing is a group of its own. Grouping by stage name alone is
    conservative: two claims that ask for the same stage with different settings are kept
    together, which costs parallelism, never a second build of a run.
    """
    parent = list(range(len(claims)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, c in enumerate(claims):
        for name in c.shares:
            if name in first:
                a, b = root(first[name]), root(i)
                parent[max(a, b)] = min(a, b)
            else:
                first[name] = i
    groups: dict[int, list[Claim]] = {}
    for i, c in enumerate(claims):
        groups.setdefault(root(i), []).append(c)
    return [tuple(g) for g in groups.values()]


@dataclass(frozen=True)
class Unit:
    """One piece of work: the claims of one group, run in this order for one profile and seed.

    Example:
        >>> Unit(("a.x", "a.y"), "quick", 3).label
        'seed 3: a.x (+1 sharing a run)'
    """

    claim_ids: tuple[str, ...]
    profile: str
    seed: int

    @property
    def label(self) -> str:
        more = len(self.claim_ids) - 1
        return f"seed {self.seed}: {self.claim_ids[0]}" + (
            f" (+{more} sharing a run)" if more else "")


def plan_units(claims: Sequence[Claim], profile: str, seeds: Sequence[int]) -> list[Unit]:
    """Every ``(group, profile, seed)`` unit, seed by seed, groups in claim order."""
    groups = claim_groups(claims)
    return [Unit(tuple(c.id for c in g), profile, int(s)) for s in seeds for g in groups]


def seed_folder(out: str | os.PathLike, seed: int, several: bool) -> Path:
    """Where the results of ``seed`` go: ``out/seed-<seed>`` in a sweep of several seeds, else
    ``out`` itself (the single-seed layout).

    Example:
        >>> seed_folder("out", 3, several=True).as_posix(), seed_folder("out", 3, False).name
        ('out/seed-3', 'out')
    """
    return Path(out) / f"{SEED_DIR_PREFIX}{int(seed)}" if several else Path(out)


def sweep_folders(out: str | os.PathLike) -> dict[int, Path]:
    """The seed folders of a sweep under ``out`` that hold results, by seed (sorted)."""
    found = {}
    folder = Path(out)
    if not folder.is_dir():
        return {}
    for child in folder.iterdir():
        m = _SEED_DIR.match(child.name)
        if m and (child / RESULTS_DIR).is_dir():
            found[int(m.group(1))] = child
    return dict(sorted(found.items()))


def missing_units(units: Sequence[Unit], out: str | os.PathLike, several: bool) -> list[Unit]:
    """The units still to run for ``--resume``: each unit keeps only its claims without a
    stored result of the same profile, seed and settings (or whose stored result is an error);
    units with nothing left are dropped."""
    from dropreg.experiments.runner import stored_result

    left = []
    for u in units:
        folder = seed_folder(out, u.seed, several)
        ids = tuple(i for i in u.claim_ids
                    if stored_result(folder, get_claim(i), u.profile, u.seed) is None)
        if ids:
            left.append(Unit(ids, u.profile, u.seed))
    return left
