"""Result store: one JSON file per claim, written atomically.

A result file is written to a temporary file in the same folder, flushed to disk and renamed over
the final name, so a run killed at any moment leaves only whole files. Figures are stored inside
the JSON (base64 PNG), so one file holds everything the report needs.

Example:
    >>> import tempfile
    >>> from dropreg.experiments.claims import Measurement
    >>> out = tempfile.mkdtemp()
    >>> r = ClaimResult(id="dropreg.example", paper="dropreg", statement="1 = 1",
    ...                 verdict="reproduced", measurements=[Measurement("one", 1.0, 1.0)],
    ...                 profile="quick", seed=0)
    >>> path = write_result(out, r)
    >>> read_result(path).verdict
    'reproduced'
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropreg._io import atomic_write_text
from dropreg.experiments.claims import Figure, Measurement

SCHEMA_VERSION = 2  # 2: reason, settings, shared_runs; version 1 files still read
RESULTS_DIR = "results"


@dataclass(frozen=True)
class ClaimResult:
    """Everything stored about one run of one claim."""

    id: str
    paper: str
    statement: str
    verdict: str
    measurements: Sequence[Measurement]
    profile: str
    seed: int
    figures: Sequence[Figure] = ()
    notes: str = ""
    inconclusive_reason: str | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    started_at: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    shared_runs: Sequence[dict[str, Any]] = ()

    @property
    def shared_s(self) -> float:
        """Seconds of the shared runs this claim used (built by it or by an earlier claim)."""
        return float(sum(u.get("elapsed_s", 0.0) for u in self.shared_runs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "id": self.id,
            "paper": self.paper,
            "statement": self.statement,
            "verdict": self.verdict,
            "measurements": [m.to_dict() for m in self.measurements],
            "figures": [
                {"name": f.name, "caption": f.caption,
                 "png_base64": base64.b64encode(f.png).decode("ascii")}
                for f in self.figures
            ],
            "profile": self.profile,
            "seed": self.seed,
            "notes": self.notes,
            "inconclusive_reason": self.inconclusive_reason,
            "error": self.error,
            "elapsed_s": self.elapsed_s,
            "started_at": self.started_at,
            "environment": self.environment,
            "details": self.details,
            "reason": self.reason,
            "settings": self.settings,
            "shared_runs": list(self.shared_runs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClaimResult:
        return cls(
            id=d["id"],
            paper=d["paper"],
            statement=d["statement"],
            verdict=d["verdict"],
            measurements=[Measurement.from_dict(m) for m in d.get("measurements", [])],
            figures=[Figure(f["name"], f["caption"], base64.b64decode(f["png_base64"]))
                     for f in d.get("figures", [])],
            profile=d["profile"],
            seed=int(d["seed"]),
            notes=d.get("notes", ""),
            inconclusive_reason=d.get("inconclusive_reason"),
            error=d.get("error"),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
            started_at=d.get("started_at", ""),
            environment=d.get("environment", {}),
            details=d.get("details", {}),
            reason=d.get("reason"),
            settings=d.get("settings", {}),
            shared_runs=tuple(d.get("shared_runs", ())),
        )


def result_path(out_dir: str | os.PathLike, claim_id: str) -> Path:
    """Where the result of ``claim_id`` is stored under ``out_dir``."""
    return Path(out_dir) / RESULTS_DIR / f"{claim_id}.json"


def write_result(out_dir: str | os.PathLike, result: ClaimResult) -> Path:
    """Store ``result`` atomically; returns its path."""
    path = result_path(out_dir, result.id)
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, allow_nan=True))
    return path


def read_result(path: str | os.PathLike) -> ClaimResult:
    """Read one stored result.

    Raises:
        ValueError: the file is not a valid result (the message names the file).
    """
    path = Path(path)
    try:
        return ClaimResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a valid dropreg result ({e})") from None


def load_results(out_dir: str | os.PathLike) -> tuple[list[ClaimResult], list[str]]:
    """All stored results under ``out_dir`` sorted by id, and messages for unreadable files."""
    folder = Path(out_dir) / RESULTS_DIR
    results, problems = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            results.append(read_result(path))
        except ValueError as e:
            problems.append(str(e))
    return results, problems
