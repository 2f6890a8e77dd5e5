"""Where cells run: in this process, in local worker processes, or on a Dask distributed cluster.

Every executor has the same face: :meth:`Executor.run` takes a top-level function and a list of picklable
items and yields an :class:`Outcome` per item *as it completes* (a result or the exception it raised);
:meth:`close` stops the work (``cancel=True`` also abandons what is queued or running). Exceptions raised by
``fn`` are reported, not raised, so one failing cell does not stop a sweep; ``KeyboardInterrupt``
in the caller is not swallowed.

* :class:`SerialExecutor` -- one after the other, here.
* :class:`ProcessExecutor` -- ``jobs`` local processes (``concurrent.futures`` with the ``forkserver`` start
  method where available, else ``spawn``; never plain ``fork``). Workers ignore SIGINT and use one torch
  thread; the parent handles Ctrl-C and terminates them. If the parent dies without clean-up (SIGKILL), each
  worker notices within a second and exits.
* :class:`DaskExecutor` -- a ``dask.distributed`` cluster at a scheduler address. Dask is an optional extra
  (``pip install 'fastfair[dask]'``) imported only here, on use. Workers need fastfair installed, and any CSV
  dataset readable at the same path.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..errors import FastfairError, one_line, require


class CellLost(RuntimeError):
    """A cell that did not fail but was lost by its executor (a worker process died, a Dask task was
    cancelled): running it again may well succeed, unlike a :class:`~fastfair.errors.FastfairError`."""


@dataclass
class Outcome:
    """What became of one item: its ``result``, or the ``error`` it raised (with a traceback text)."""

    item: Any
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, (FastfairError, CellLost)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _traceback_text(exc: BaseException) -> str:
    cause = exc.__cause__
    remote = str(cause) if cause is not None and type(cause).__name__ == "_RemoteTraceback" else ""
    return remote or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class Executor:
    """Base class: a context manager with ``run`` and ``close``."""

    name = "executor"
    workers = 1

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]:  # pragma: no cover
        raise NotImplementedError

    def start(self) -> None:
        """Acquire what running needs (e.g. a connection), so that it fails before any work is written."""

    def close(self, cancel: bool = False) -> None:
        """Release resources; with ``cancel`` also drop queued and running work."""

    def describe(self) -> str:
        return self.name

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(cancel=exc_type is not None)


class SerialExecutor(Executor):
    """Run each item in this process, in order."""

    name = "serial"

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]:
        for item in items:
            try:
                result = fn(item)
            except Exception as exc:
                yield Outcome(item, error=exc, traceback=_traceback_text(exc))
            else:
                yield Outcome(item, result=result)

    def describe(self) -> str:
        return "in this process"


def _init_worker(parent_pid: int) -> None:
    """Worker set-up: leave Ctrl-C to the parent, exit when the parent is gone, one torch thread, no nested BLAS
    threading."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="fastfair-orphan-watch", daemon=True).start()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch  # after the variables above, which the BLAS libraries read when torch loads them

    torch.set_num_threads(1)


def _exit_when_orphaned(parent_pid: int, interval_s: float = 1.0) -> None:
    """Exit the worker within ``interval_s`` of its parent's death (e.g. SIGKILL, which no clean-up survives).

    A worker's own parent is the fork server, not the sweep, so the sweep's pid is polled. Without this, a killed
    sweep left its workers computing their queued cells for minutes, and with them the fork server and the
    resource tracker (both hold pipes the workers inherit). Their results could not have been stored anyway."""
    while True:
        time.sleep(interval_s)
        if not _alive(parent_pid):
            os._exit(1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process of ours (a zombie, dead but not yet reaped, counts as dead on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid was reused by another user's process
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): the signal check is all there is
        return True


#: Modules the fork server imports once, so that every worker forked from it starts with them. The first
#: optimiser step of a process imports ``torch._dynamo`` (about 7 s here), once per worker without this.
PRELOAD = ("fastfair.experiments.cell", "fastfair.training", "torch._dynamo")


def _mp_context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # workers fork from a server that has already imported torch and fastfair: fast start-up (a module
        # that cannot be imported is skipped by the server)
        ctx.set_forkserver_preload([*PRELOAD, *preload])
        return ctx
    return multiprocessing.get_context("spawn")


class ProcessExecutor(Executor):
    """Run items in ``jobs`` local worker processes."""

    name = "processes"

    def __init__(self, jobs: int, preload: Sequence[str] = ()) -> None:
        require(isinstance(jobs, int) and jobs >= 1, f"--jobs must be a positive integer, got {jobs!r}")
        self.jobs = jobs
        self.preload = tuple(preload)
        self.workers = jobs
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]:
        if not items:
            return
        self.workers = min(self.jobs, len(items))
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_mp_context(self.preload),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        pending = {self._pool.submit(fn, item): item for item in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    err = CellLost("a worker process died (out of memory or killed?)")
                    yield Outcome(item, error=err, traceback=f"{type(exc).__name__}: {exc}")
                except Exception as exc:
                    yield Outcome(item, error=exc, traceback=_traceback_text(exc))
                else:
                    yield Outcome(item, result=result)

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not cancel:
            pool.shutdown(wait=True)
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:  # running cells are abandoned: their results were never stored
            if proc.is_alive():
                proc.terminate()
        for proc in processes:
            proc.join(timeout=5)

    def describe(self) -> str:
        return f"with {self.workers} local process{'es' if self.workers != 1 else ''}"


def import_distributed() -> Any:
    """Import ``dask.distributed`` lazily, with an actionable error when it is not installed."""
    try:
        import distributed
    except ImportError:
        raise FastfairError(
            "--scheduler needs dask.distributed, which is not installed; "
            "install it with: pip install 'fastfair[dask]'"
        ) from None
    return distributed


class DaskExecutor(Executor):
    """Run items on a ``dask.distributed`` cluster, given its scheduler address (``tcp://host:8786``)."""

    name = "dask"

    def __init__(self, address: str, timeout: float = 20.0) -> None:
        require(
            isinstance(address, str) and address.strip() != "",
            "--scheduler needs an address, e.g. tcp://host:8786",
        )
        self.address = address.strip()
        require(
            re.fullmatch(r"[a-z]+://\S+|[\w.\-\[\]:]+:\d+", self.address) is not None,
            f"--scheduler {self.address!r} is not a scheduler address; expected e.g. tcp://host:8786",
        )
        self.timeout = timeout
        self._client: Any = None
        self._futures: list[Any] = []

    def start(self) -> None:
        if self._client is None:
            self._connect()

    def _connect(self) -> Any:
        distributed = import_distributed()
        try:
            client = distributed.Client(self.address, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            message = f"cannot connect to the Dask scheduler at {self.address!r}: {one_line(exc)}"
            _collect_quietly()  # the half-built Client's __del__ would print a traceback at exit
            raise FastfairError(message) from None
        self._client = client
        try:
            self.workers = len(client.scheduler_info().get("workers", {}))
        except Exception:  # pragma: no cover - informational only
            self.workers = 0
        return client

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]:
        if not items:
            return
        distributed = import_distributed()
        client = self._client or self._connect()
        token = uuid.uuid4().hex[:8]
        futures = {}
        for i, item in enumerate(items):
            key = f"fastfair-{getattr(item, 'cell_id', i)}-{token}"
            futures[client.submit(fn, item, key=key, pure=False, retries=0)] = item
        self._futures = list(futures)
        for future in distributed.as_completed(list(futures), loop=client.loop):
            item = futures[future]
            if future.status == "error":
                exc = future.exception()
                tb = future.traceback()
                text = (
                    "".join(traceback.format_exception(type(exc), exc, tb)) if tb is not None else repr(exc)
                )
                yield Outcome(item, error=exc, traceback=text)
            elif future.status == "cancelled":
                yield Outcome(item, error=CellLost("the Dask task was cancelled"))
            else:
                yield Outcome(item, result=future.result())
            future.release()

    def close(self, cancel: bool = False) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if cancel and self._futures:
                client.cancel(self._futures)
        finally:
            self._futures = []
            client.close()

    def describe(self) -> str:
        return f"on the Dask cluster at {self.address} ({self.workers} workers)"


def make_executor(jobs: int = 1, scheduler: str | None = None, preload: Sequence[str] = ()) -> Executor:
    """The executor for ``--jobs`` / ``--scheduler``: Dask given an address, else processes or serial.
    ``preload``: modules local worker processes should start with (besides :data:`PRELOAD`)."""
    if scheduler is not None:
        return DaskExecutor(scheduler)
    require(
        isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1,
        f"--jobs must be a positive integer, got {jobs!r}",
    )
    return SerialExecutor() if jobs == 1 else ProcessExecutor(jobs, preload)


def _collect_quietly() -> None:
    """Garbage-collect now with the 'Exception ignored in ...' reporting switched off."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook
