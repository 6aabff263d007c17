"""Run one pure function over many argument tuples: in this process, in worker processes, or on Dask.

All three take the same path: submit `fn(*args)` per item, collect results as they finish (a
progress bar counts them), return them in item order. Worker processes are a
concurrent.futures.ProcessPoolExecutor; a Dask cluster is reached through
distributed.Client(address) (imported only then). Results must be picklable.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from moesim.errors import SpecError


@contextmanager
def _executor(workers: int | None, dask_address: str | None, n_items: int,
              connect_timeout_s: float) -> Iterator[tuple[Callable, Callable]]:
    """(submit(fn, *args) -> future, as_completed(futures) -> iterator) of the chosen backend."""
    if dask_address:
        try:
            from distributed import Client, as_completed
        except ModuleNotFoundError:
            raise SpecError("--dask needs dask[distributed] (pip install 'moesim[dask]')", field="--dask",
                            value=dask_address) from None
        client = _connect_dask(Client, dask_address, connect_timeout_s)
        try:
            yield (lambda fn, *args: client.submit(fn, *args, pure=False)), as_completed
        finally:
            client.close()
        return
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise SpecError("must be >= 1", field="--workers", value=workers)
    if workers == 1 or n_items <= 1:
        with _InProcess() as pool:
            yield pool.submit, concurrent.futures.as_completed
        return
    # forkserver: workers start from a clean server process, not from a fork of this one, which may
    # hold threads (a Dask client, numpy's thread pools) whose locks a fork would copy mid-use.
    context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                          else "spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, n_items), mp_context=context) as pool:
        yield pool.submit, concurrent.futures.as_completed


def _connect_dask(client_cls, address: str, timeout_s: float):
    """A connected `distributed.Client`, or a SpecError within about `timeout_s`.

    The client is built on a helper thread joined with a deadline: a server at `address` that
    accepts the connection but is not a Dask scheduler (it never answers the handshake) otherwise
    holds `Client()` past its own `timeout` indefinitely (issue #14).
    """
    box: dict[str, object] = {}

    def connect() -> None:
        try:
            box["client"] = client_cls(address, timeout=timeout_s)
        except BaseException as err:  # handed to the caller below
            box["error"] = err

    thread = threading.Thread(target=connect, name="moesim-dask-connect", daemon=True)
    thread.start()
    deadline_s = timeout_s + min(timeout_s, 5.0)
    thread.join(deadline_s)
    if thread.is_alive():
        raise SpecError(f"no Dask scheduler answered within {deadline_s:g} s (is it a Dask scheduler?)",
                        field="--dask", value=address)
    err = box.get("error")
    if err is not None:
        if isinstance(err, (OSError, TimeoutError, ValueError)):
            message = " ".join(str(err).split())
            raise SpecError(f"cannot reach the Dask scheduler: {message}", field="--dask", value=address) from None
        raise err
    return box["client"]


class _InProcess(concurrent.futures.Executor):
    """Runs each submitted call at once in this process; its futures are already done."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # handed to the caller through the future, as a pool would
            future.set_exception(err)
        return future


def default_workers() -> int:
    """Worker processes by default: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def map_items(fn: Callable, items: Sequence[tuple], *, workers: int | None = None, dask_address: str | None = None,
              progress: bool = False, label: str = "points", connect_timeout_s: float = 10.0) -> list:
    """[fn(*item) for item in items], computed by the chosen backend; a tqdm bar on stderr if `progress`."""
    from tqdm import tqdm

    results: list = [None] * len(items)
    bar = tqdm(total=len(items), unit=label[:-1] if label.endswith("s") else label, file=sys.stderr,
               disable=not progress, leave=False)
    with bar, _executor(workers, dask_address, len(items), connect_timeout_s) as (submit, as_completed):
        index = {}
        for i, item in enumerate(items):
            index[submit(fn, *item)] = i
        for future in as_completed(list(index)):
            results[index[future]] = future.result()
            bar.update(1)
    return results
