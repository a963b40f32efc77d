"""Where the points of a grid run: in-process, a local process pool, or a Dask cluster.

:func:`open_executor` turns the user's choice (``executor=``, ``workers=``, ``scheduler=`` of
:func:`margin_sim.grid.run_grid`) into a runner with one method, ``run(fn, tasks)``, which
yields ``fn(task)`` for every task in completion order. Results carry their point index, so
the order never matters to the table. ``dask.distributed`` is imported only when asked for.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from margin_sim._allocator import keep_freed_memory
from margin_sim.errors import GridError

__all__ = ["EXECUTORS", "PointRunner", "open_executor"]

#: Executor names accepted by ``run_grid(executor=...)`` and ``margin-sim grid --executor``.
EXECUTORS = ("process", "inline", "dask-local")

#: Modules a pool worker imports once, before it is forked (POSIX forkserver).
_WORKER_PRELOAD = ["margin_sim.grid", "margin_sim.engine"]


class PointRunner(Protocol):
    """Runs a function over tasks and yields the results as they complete."""

    def run(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, n_tasks: int) -> Iterator[Any]:
        """Start every task now; yield ``fn(task)`` results in completion order."""
        ...


class _InlineRunner:
    """One task after the other in this process (debugging, tiny grids, notebooks)."""

    def run(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, n_tasks: int) -> Iterator[Any]:
        return (fn(task) for task in tasks)


class _PoolRunner:
    """A :class:`concurrent.futures.Executor` (the local process pool, or one passed in)."""

    def __init__(self, pool: cf.Executor) -> None:
        self.pool = pool

    def run(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, n_tasks: int) -> Iterator[Any]:
        futures = [self.pool.submit(fn, task) for task in tasks]
        return self._results(futures)

    @staticmethod
    def _results(futures: list[cf.Future[Any]]) -> Iterator[Any]:
        try:
            for future in cf.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


class _DaskRunner:
    """A ``dask.distributed`` client: a running cluster or a LocalCluster."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, n_tasks: int) -> Iterator[Any]:
        futures = self.client.map(fn, list(tasks), pure=False)
        return self._results(futures)

    def _results(self, futures: list[Any]) -> Iterator[Any]:
        from distributed import as_completed

        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            pending = [f for f in futures if not f.done()]
            if pending:
                self.client.cancel(pending)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise GridError(
            "scheduler: dask.distributed is not installed "
            "(pip install 'margin_sim[dask]' or 'dask[distributed]')"
        ) from None
    return distributed


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "map")


def _process_pool(workers: int) -> cf.ProcessPoolExecutor:
    # forkserver: workers fork from a clean process that has imported the numerics once,
    # so starting them is cheap and never copies this process's threads (tqdm, dask).
    if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_PRELOAD)
    else:  # pragma: no cover - Windows and macOS without forkserver
        context = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=keep_freed_memory
    )


@contextlib.contextmanager
def open_executor(
    executor: Any = None, *, workers: int | None = None, scheduler: str | None = None
) -> Iterator[PointRunner]:
    """Open the runner for a grid run, and close what it started afterwards.

    Parameters
    ----------
    executor : {"process", "inline", "dask-local"}, Executor or dask Client, optional
        Default ``"process"`` (``"dask"`` when ``scheduler`` is given). Executor and client
        objects are used as they are and left open.
    workers : int, optional
        Processes of the local pool, or workers of the LocalCluster; default: the number of
        cores (``os.cpu_count()``).
    scheduler : str, optional
        Address of a running Dask scheduler, ``tcp://host:8786``.

    Yields
    ------
    PointRunner

    Raises
    ------
    GridError
        For an unknown executor name, a worker count below 1, both ``workers`` and
        ``scheduler``, a scheduler that cannot be reached, or Dask missing.
    """
    if workers is not None and (
        isinstance(workers, bool) or int(workers) != workers or workers < 1
    ):
        raise GridError(f"workers: must be a whole number of at least 1, got {workers!r}")
    if scheduler is not None:
        if workers is not None:
            raise GridError("workers: give either workers or a scheduler, not both")
        if executor not in (None, "dask"):
            raise GridError(f"executor: {executor!r} cannot be used with a scheduler")
        distributed = _import_distributed()
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise GridError(f"scheduler: cannot reach {scheduler}: {reason}") from None
        try:
            yield _DaskRunner(client)
        finally:
            client.close()
        return
    n_workers = workers or os.cpu_count() or 1
    if executor is None or executor == "process":
        with _process_pool(n_workers) as pool:
            runner = _PoolRunner(pool)
            try:
                yield runner
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return
    if executor == "inline":
        yield _InlineRunner()
        return
    if executor == "dask-local":
        distributed = _import_distributed()
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, dashboard_address=None
        )
        client = distributed.Client(cluster)
        try:
            yield _DaskRunner(client)
        finally:
            client.close()
            cluster.close()
        return
    if isinstance(executor, cf.Executor):
        yield _PoolRunner(executor)
        return
    if _is_dask_client(executor):
        yield _DaskRunner(executor)
        return
    raise GridError(
        f"executor: unknown executor {executor!r} (use one of {', '.join(EXECUTORS)}, "
        "a concurrent.futures.Executor or a dask.distributed.Client)"
    )
