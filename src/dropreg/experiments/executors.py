"""Executors of a sweep's work units: ``serial`` (in this process), ``process`` (stdlib
:class:`~concurrent.futures.ProcessPoolExecutor`, spawn) and ``ray`` (Ray Core tasks, the optional
extra ``dropreg[ray]``).

Every executor takes :class:`~dropreg.experiments.sweep.Unit` objects and yields ``(unit,
result)`` pairs as results arrive; the driver (``dropreg reproduce``) is the only one that writes
them. A worker runs the claims of its unit in order with one fresh
:class:`~dropreg.experiments.context.RunCache` (so a run shared inside the group is built once)
and pins torch's and the BLAS thread counts to ``threads`` (:func:`runner.pinned_threads
<dropreg.experiments.runner.pinned_threads>`); every result's environment records the executor
and the thread counts. A claim's random numbers come from ``(seed, claim id)`` and a shared run's
from ``(seed, stage name)``, so at equal thread counts a unit gives bit-identical results in any
executor.

Ray: a local head is started with ``ray.init(num_cpus=jobs * threads, include_dashboard=False)``
bound to 127.0.0.1 (Ray on Linux otherwise listens on every interface); Ray 2.60 also turns on
token authentication for a new cluster (it writes the token to ``~/.ray/auth_token``), which a
cluster joined with ``address`` needs too. A unit whose worker dies is retried (``max_retries``);
results that arrived are already stored.

Example:
    >>> from dropreg.experiments.sweep import Unit
    >>> ex = make_executor("serial", threads=1)
    >>> [(u.seed, r.verdict) for u, r in ex.run([Unit(
    ...     ("cavazza2018.dropout-expected-objective",), "smoke", 0)])]
    [(0, 'reproduced')]
    >>> ex.close()
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dropreg.experiments.claims import Progress
from dropreg.experiments.pieces import PieceOptions, ignore_sigint, stop_pool
from dropreg.experiments.store import ClaimResult
from dropreg.experiments.sweep import Unit

EXECUTORS: tuple[str, ...] = ("serial", "process", "ray")
RAY_EXTRA_MESSAGE = ("--executor ray needs Ray, the optional extra dropreg[ray]: "
                     "pip install 'dropreg[ray]'")


class MissingExtraError(ImportError):
    """An executor needs an optional extra that is not installed (the message names it)."""


class UnitFailed(RuntimeError):
    """A unit could not be run to its end outside its claims' own code (the claims' own errors
    are results with verdict "error"); results that arrived are stored."""


class WorkerDied(UnitFailed):
    """A worker died and its unit could not be finished (results that arrived are stored)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs besides its unit: the thread count to pin, the executor's name for
    the environment record, and where the claims live: the modules that register the claims to
    run, the driver's ``sys.path`` and ``DROPREG_CLAIM_MODULES`` (so that claims of the user's
    own modules load in any worker, and a worker imports only the papers it runs)."""

    threads: int | None
    executor: str
    modules: tuple[str, ...] = ()
    claim_modules: str = ""
    sys_path: tuple[str, ...] = ()
    pieces: PieceOptions | None = None

    @classmethod
    def of_driver(cls, threads: int | None, executor: str, units: Sequence[Unit] = (),
                  pieces: PieceOptions | None = None) -> WorkerSpec:
        from dropreg.experiments import load_all
        from dropreg.experiments.claims import _REGISTRY, get_claim

        ids = {i for u in units for i in u.claim_ids}
        if not ids <= set(_REGISTRY):
            load_all()  # the driver has not loaded them yet (library use)
        modules = sorted({get_claim(i).module for i in ids if i in _REGISTRY})
        return cls(threads=threads, executor=executor, modules=tuple(modules),
                   claim_modules=os.environ.get("DROPREG_CLAIM_MODULES", ""),
                   sys_path=tuple(p for p in sys.path if p), pieces=pieces)


def _prepare_worker(spec: WorkerSpec, claim_ids: Sequence[str]) -> None:
    """Make the driver's claims importable here and register those of ``claim_ids``: import
    their modules, and every claim module (``load_all``) only if that was not enough."""
    import importlib

    from dropreg.experiments import load_all
    from dropreg.experiments.claims import _REGISTRY

    for p in reversed(spec.sys_path):
        if p not in sys.path:
            sys.path.insert(0, p)
    if spec.claim_modules and os.environ.get("DROPREG_CLAIM_MODULES") != spec.claim_modules:
        os.environ["DROPREG_CLAIM_MODULES"] = spec.claim_modules
    for name in spec.modules:
        if name != "__main__" and not all(i in _REGISTRY for i in claim_ids):
            importlib.import_module(name)
    if not all(i in _REGISTRY for i in claim_ids):
        load_all()
    missing = [i for i in claim_ids if i not in _REGISTRY]
    if missing:
        raise UnitFailed(f"claim {missing[0]!r} is not registered in the worker: define it in "
                         "an importable module named in DROPREG_CLAIM_MODULES (not in __main__)")


def run_unit(unit: Unit, spec: WorkerSpec,
             progress_for: Callable[[str], Progress | None] | None = None
             ) -> Iterator[ClaimResult]:
    """Run the claims of ``unit`` in order, sharing one run cache; yield each result.

    Args:
        unit: the claims, profile and seed.
        spec: thread count, executor name and where the claims live.
        progress_for: a progress sink for a claim id (the serial executor's bars).
    """
    from dropreg.experiments.claims import get_claim
    from dropreg.experiments.context import RunCache
    from dropreg.experiments.runner import run_claim

    _prepare_worker(spec, unit.claim_ids)
    runs = RunCache()
    for claim_id in unit.claim_ids:
        progress = progress_for(claim_id) if progress_for else None
        result = run_claim(get_claim(claim_id), unit.profile, unit.seed, progress, runs=runs,
                           threads=spec.threads, pieces=spec.pieces)
        env = {**result.environment, "executor": spec.executor,
               "threads_per_job": spec.threads}
        yield dataclasses.replace(result, environment=env)


def run_unit_remote(unit: Unit, spec: WorkerSpec) -> list[dict[str, Any]]:
    """:func:`run_unit` for another process: the results as JSON-ready dicts."""
    return [r.to_dict() for r in run_unit(unit, spec)]


class Executor(Protocol):
    """Runs units and yields ``(unit, result)`` as results arrive; ``close`` stops the workers
    (also after Ctrl-C)."""

    name: str

    def run(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, ClaimResult]]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Every unit in this process, one after another; each result is yielded as it is done."""

    name = "serial"

    def __init__(self, threads: int | None = None,
                 progress_for: Callable[[Unit, str], Progress | None] | None = None,
                 pieces: PieceOptions | None = None) -> None:
        self.threads, self.jobs = threads, 1
        self._progress_for = progress_for
        self.pieces = pieces

    def run(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, ClaimResult]]:
        spec = WorkerSpec.of_driver(self.threads, self.name, units, self.pieces)
        for unit in units:
            hook = (lambda cid, u=unit: self._progress_for(u, cid)) if self._progress_for \
                else None
            for result in run_unit(unit, spec, hook):
                yield unit, result

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Units in ``jobs`` spawned worker processes (stdlib, no dependency). A worker that dies
    breaks the pool: :class:`WorkerDied` is raised and the results that arrived are kept (use
    ``--resume``, or the ``ray`` executor for automatic retries)."""

    name = "process"

    def __init__(self, jobs: int | None = None, threads: int | None = 1,
                 pieces: PieceOptions | None = None) -> None:
        from dropreg._checks import check_int

        self.pieces = pieces
        self.threads = 1 if threads is None else check_int("threads", threads, minimum=1)
        cores = os.cpu_count() or 1
        self.jobs = (max(1, cores // self.threads) if jobs is None
                     else check_int("jobs", jobs, minimum=1))
        self._pool = None

    def run(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, ClaimResult]]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        if not units:
            return
        spec = WorkerSpec.of_driver(self.threads, self.name, units, self.pieces)
        self._pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(units)),
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=ignore_sigint)
        futures = {self._pool.submit(run_unit_remote, u, spec): u for u in units}
        try:
            for future in as_completed(futures):
                for d in future.result():
                    yield futures[future], ClaimResult.from_dict(d)
        except BrokenProcessPool as e:
            raise WorkerDied(f"a worker process died ({e}); the results that arrived are "
                             "stored: run again with --resume (the ray executor retries dead "
                             "workers)") from None
        finally:
            self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            stop_pool(pool)


def import_ray():
    """The ``ray`` module, or :class:`MissingExtraError` naming the extra ``dropreg[ray]``."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError(RAY_EXTRA_MESSAGE) from None
    return ray


def start_local_ray(num_cpus: int, num_gpus: int | None = None) -> None:
    """Start a local Ray head with ``num_cpus`` CPUs, no dashboard, bound to 127.0.0.1.

    Ray on Linux binds to the machine's address on every interface unless it believes it runs
    on a desktop OS; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read by the head's processes, set
    only while they start) and the same flag in this process keep every port on the loopback.
    """
    ray = import_ray()
    from ray._private import ray_constants  # the flag Ray reads when it picks its address

    key, before_env = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", os.environ.get(
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    before_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[key] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=int(num_cpus), num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before_env


class RayExecutor:
    """Units as Ray Core tasks (``max_retries``: a task whose worker dies runs again).

    Joins the running Ray of this process if there is one, else the cluster at ``address``
    (``"auto"`` or ``"HOST:PORT"``), else starts a local head of ``jobs * threads`` CPUs (bound
    to 127.0.0.1) and shuts it down on :meth:`close`. Each task asks for ``threads`` CPUs and
    ``gpus`` GPUs; at most ``jobs`` are in flight (None: as many as Ray schedules).
    """

    name = "ray"

    def __init__(self, jobs: int | None = None, threads: int | None = 1,
                 address: str | None = None, gpus: float = 0.0, max_retries: int = 3,
                 pieces: PieceOptions | None = None) -> None:
        from dropreg._checks import check_int

        self.pieces = pieces
        ray = import_ray()
        self.threads = 1 if threads is None else check_int("threads", threads, minimum=1)
        self.jobs = None if jobs is None else check_int("jobs", jobs, minimum=1)
        if not float(gpus) >= 0:
            raise ValueError(f"gpus must be >= 0, got {gpus}")
        self.gpus, self.max_retries = float(gpus), check_int("max_retries", max_retries,
                                                                minimum=0)
        self._own_cluster = False
        self._pending: list = []
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                cores = (self.jobs * self.threads if self.jobs is not None
                         else os.cpu_count() or 1)
                start_local_ray(num_cpus=cores)
            self._own_cluster = True

    def run(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, ClaimResult]]:
        ray = import_ray()
        task = ray.remote(run_unit_remote).options(
            num_cpus=self.threads, num_gpus=self.gpus, max_retries=self.max_retries,
            retry_exceptions=False)
        spec = WorkerSpec.of_driver(self.threads, self.name, units, self.pieces)
        queue, unit_of = list(units), {}
        limit = self.jobs or len(queue)
        try:
            while queue or self._pending:
                while queue and len(self._pending) < limit:
                    ref = task.remote(queue[0], spec)
                    unit_of[ref] = queue.pop(0)
                    self._pending.append(ref)
                done, self._pending = ray.wait(self._pending, num_returns=1)
                for ref in done:
                    try:
                        dicts = ray.get(ref)
                    except (ray.exceptions.WorkerCrashedError,
                            ray.exceptions.NodeDiedError) as e:
                        raise WorkerDied(f"{unit_of[ref].label}: the worker died "
                                         f"{self.max_retries + 1} times ({type(e).__name__}); "
                                         "the results that arrived are stored") from None
                    for d in dicts:
                        yield unit_of[ref], ClaimResult.from_dict(d)
        finally:
            self.close()

    def close(self) -> None:
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            return
        for ref in self._pending:
            ray.cancel(ref, force=True)
        self._pending = []
        if self._own_cluster:
            ray.shutdown()
            self._own_cluster = False


def make_executor(name: str, *, jobs: int | None = None, threads: int | None = None,
                  address: str | None = None, gpus: float = 0.0,
                  progress_for: Callable[[Unit, str], Progress | None] | None = None,
                  pieces: PieceOptions | None = None) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`); ``pieces``: where the claims
    store their pieces and how many processes one claim may use
    (:class:`~dropreg.experiments.pieces.PieceOptions`).

    Raises:
        ValueError: unknown name, or an option the executor does not take (``jobs`` > 1,
            ``address`` or ``gpus`` with ``serial``; ``address`` or ``gpus`` with ``process``;
            more than one process per claim with ``process`` or ``ray``, which run claims in
            parallel already).
        MissingExtraError: ``ray`` without Ray installed.
    """
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name != "ray" and address:
        raise ValueError(f"--address joins a Ray cluster: it needs --executor ray, got {name}")
    if name != "ray" and gpus:
        raise ValueError(f"--gpus-per-job places GPUs with Ray: it needs --executor ray, "
                         f"got {name}")
    if name == "serial":
        if jobs not in (None, 1):
            raise ValueError(f"--jobs {jobs} needs --executor process or ray (serial runs one "
                             "unit at a time)")
        return SerialExecutor(threads, progress_for, pieces)
    if pieces is not None and pieces.jobs > 1:
        raise ValueError(f"--claim-jobs {pieces.jobs} runs one claim's pieces in parallel: it "
                         f"needs --executor serial (got {name}, which runs claims in parallel)")
    if name == "process":
        return ProcessExecutor(jobs, threads, pieces)
    return RayExecutor(jobs, threads, address=address, gpus=gpus, pieces=pieces)
