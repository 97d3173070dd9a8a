"""Independent pieces of one claim: stored one by one, reused by ``--resume``, run in parallel.

A long claim (the full-profile training comparisons of Wei et al. 2020, Sec. 5: eight update
rules times ten seeds, hours on one core) is a list of pieces that do not depend on each other:
one trained run per ``(rule, seed)``. :func:`run_pieces` computes ``fn(item)`` for every item
and

- writes each piece's value as soon as it is done (``<name>-<index>.json`` in the claim's piece
  folder, atomically), so an interrupted run loses at most the pieces in flight;
- with ``resume=True`` reads the pieces already stored (a piece is reused only when its stored
  ``item`` is the same), so ``dropreg reproduce --resume`` goes on where it stopped;
- with ``jobs > 1`` runs the missing pieces in that many spawned processes, each pinned to the
  same torch and BLAS thread counts as the claim.

A piece's value must be JSON-ready (dicts, lists, numbers, strings) and depend only on its item:
its random numbers come from seeds in the item, drawn by the claim from its own generator before
the pieces are made. Then the values are the same in any order, any process and after any
interruption (at equal thread counts), and ``fn`` and the items must be picklable for
``jobs > 1`` (a module-level function or a :func:`functools.partial` of one).

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> run_pieces(pow, [(2, 3), (3, 2)], name="power", folder=folder)
    [8, 9]
    >>> sorted(p.name for p in Path(folder).iterdir())
    ['power-0000.json', 'power-0001.json']
    >>> run_pieces(pow, [(2, 3), (3, 2)], name="power", folder=folder, resume=True)
    [8, 9]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropreg._checks import check_int
from dropreg._io import atomic_write_text

__all__ = ["PieceOptions", "ignore_sigint", "item_key", "piece_path", "run_pieces", "stop_pool"]


@dataclass(frozen=True)
class PieceOptions:
    """How ``dropreg reproduce`` keeps the pieces of its claims: under ``out`` (the seed folder
    of each seed when ``several``), reused when ``resume``, ``jobs`` processes per claim.

    A claim's pieces live in ``<seed folder>/pieces/<claim id>/<profile>-seed<seed>-t<threads>-
    <settings digest>/``: pieces made with other settings or another thread count are never
    mixed in. The driver removes a claim's folder once its result is stored.

    Example:
        >>> PieceOptions("results").folder(0, "a.b", "quick", {"n": 1}, 1).parts[-3:]
        ('pieces', 'a.b', 'quick-seed0-t1-0af73c42')
    """

    out: str
    several: bool = False
    resume: bool = False
    jobs: int = 1

    def claim_root(self, seed: int, claim_id: str) -> Path:
        """The folder of every piece of ``claim_id`` for ``seed``."""
        from dropreg.experiments.sweep import seed_folder

        return seed_folder(self.out, seed, self.several) / "pieces" / claim_id

    def folder(self, seed: int, claim_id: str, profile: str, settings: dict[str, Any],
               threads: int) -> Path:
        """The folder of the pieces of one ``(claim, profile, seed, settings, threads)``."""
        digest = zlib.crc32(json.dumps(settings, sort_keys=True, default=repr).encode())
        return self.claim_root(seed, claim_id) / (
            f"{profile}-seed{int(seed)}-t{int(threads)}-{digest:08x}")

    def clear(self, seed: int, claim_id: str) -> None:
        """Remove every stored piece of ``claim_id`` for ``seed`` (and ``pieces/`` if that
        leaves it empty)."""
        root = self.claim_root(seed, claim_id)
        shutil.rmtree(root, ignore_errors=True)
        try:
            root.parent.rmdir()
        except OSError:
            pass  # other claims' pieces are there, or it never existed


def piece_path(folder: str | os.PathLike, name: str, index: int) -> Path:
    """Where piece ``index`` of ``name`` is stored in ``folder``."""
    return Path(folder) / f"{name}-{int(index):04d}.json"


def item_key(item: Any) -> str:
    """The text that identifies a stored piece: ``repr(item)``, with functions written as
    ``module.qualname`` (their default repr holds a memory address, different in every process).

    Example:
        >>> item_key((len, 3, "a"))
        "(builtins.len, 3, 'a')"
    """
    if isinstance(item, tuple):
        inner = ", ".join(item_key(x) for x in item)
        return f"({inner},)" if len(item) == 1 else f"({inner})"
    if callable(item) and hasattr(item, "__qualname__") and not isinstance(item, type):
        return f"{getattr(item, '__module__', None) or '?'}.{item.__qualname__}"
    return repr(item)


def _call(fn: Callable[..., Any], item: Any) -> Any:
    return fn(*item) if isinstance(item, tuple) else fn(item)


def _stored(path: Path, item_key: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``path`` holds a piece made from the same item."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False, None
    if not isinstance(record, dict) or record.get("item") != item_key or "value" not in record:
        return False, None
    return True, record["value"]


def ignore_sigint() -> None:
    """Worker initializer: Ctrl-C reaches the whole foreground process group; the driver
    decides and stops its workers (:func:`stop_pool`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pin_worker(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    ignore_sigint()
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


def stop_pool(pool: Any) -> None:
    """Stop a :class:`~concurrent.futures.ProcessPoolExecutor` now, busy workers included."""
    kill = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if kill is not None:
        kill()
        pool.shutdown(wait=False, cancel_futures=True)
        return
    # Python < 3.14 has no public way to stop busy workers: terminate them ourselves.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def run_pieces(fn: Callable[..., Any], items: Sequence[Any], *, name: str,
               folder: str | os.PathLike | None = None, resume: bool = False, jobs: int = 1,
               threads: int | None = None,
               on_done: Callable[[int], None] | None = None) -> list[Any]:
    """``[fn(item) for item in items]`` (``fn(*item)`` for a tuple item), piece by piece.

    Args:
        fn: computes one piece; its value must be JSON-ready.
        items: one per piece; :func:`item_key` identifies a stored piece.
        name: the pieces' name in ``folder`` (letters, digits, ``-`` and ``_``).
        folder: where each finished piece is written (None: nowhere).
        resume: reuse the pieces already in ``folder`` that were made from the same item.
        jobs: processes for the missing pieces (1: in this process, in order).
        threads: torch and BLAS threads of each worker (None: this process's torch count).
        on_done: called as ``on_done(index, reused)`` when a piece is done or read back.

    Raises:
        ValueError: ``name`` has other characters, or ``jobs`` or ``threads`` is below 1.
    """
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ValueError(f"name must be letters, digits, '-' and '_', got {name!r}")
    jobs = check_int("jobs", jobs, minimum=1)
    keys = [item_key(item) for item in items]
    values: list[Any] = [None] * len(items)
    todo: list[int] = []
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        found, value = (_stored(piece_path(folder, name, i), key)
                        if resume and folder is not None else (False, None))
        if found:
            values[i] = value
            if on_done is not None:
                on_done(i, True)
        else:
            todo.append(i)

    def keep(i: int, value: Any) -> None:
        if folder is not None:
            atomic_write_text(piece_path(folder, name, i),
                              json.dumps({"item": keys[i], "value": value}))
        values[i] = value
        if on_done is not None:
            on_done(i, False)

    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            keep(i, _call(fn, items[i]))
        return values

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    workers = torch.get_num_threads() if threads is None else check_int("threads", threads,
                                                                          minimum=1)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_pin_worker, initargs=(workers,))
    try:
        futures = {pool.submit(_call, fn, items[i]): i for i in todo}
        for future in as_completed(futures):
            keep(futures[future], future.result())
    finally:
        stop_pool(pool)
    return values
