"""Tickets scored on several threads at once, results in input order.

Why threads: onnxruntime, torch and numpy's matrix products release the GIL while they run, and
one ticket's few short rows leave most cores idle inside a single `Run`. Each thread takes the
next ticket when it is free, so long and short tickets even out. A ticket is still scored on
its own (`score_ticket`), so no score depends on how many threads there were.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


def cpu_workers() -> int:
    """One thread per CPU core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_in_order(fn: Callable[[T], R], items: Sequence[T], workers: int,
                 pool: Executor | None = None,
                 done: Callable[[int, int], None] | None = None) -> list[R]:
    """`fn` over `items` on `workers` threads (the caller's among them); results in order.

    `pool` lends the helper threads (a temporary one is made without it); `done(n, total)` is
    called, under a lock, after each item. The first exception of any item is raised once every
    thread has stopped; the items not yet started are then skipped."""
    total = len(items)
    results: list[R | None] = [None] * total
    if workers <= 1 or total <= 1:
        for k, item in enumerate(items):
            results[k] = fn(item)
            if done is not None:
                done(k + 1, total)
        return cast("list[R]", results)
    queue = iter(range(total))
    lock = threading.Lock()
    finished = [0]
    failed: list[BaseException] = []

    def drain() -> None:
        while True:
            with lock:
                k = None if failed else next(queue, None)
            if k is None:
                return
            try:
                value = fn(items[k])
            except BaseException as exc:
                with lock:
                    failed.append(exc)
                return
            results[k] = value
            with lock:
                finished[0] += 1
                if done is not None:
                    done(finished[0], total)

    helpers_needed = min(workers, total) - 1
    own_pool = pool is None
    lender = pool if pool is not None else ThreadPoolExecutor(
        max_workers=helpers_needed, thread_name_prefix="intakegate-score")
    try:
        helpers = [lender.submit(drain) for _ in range(helpers_needed)]
        drain()
        for helper in helpers:
            helper.result()
    finally:
        if own_pool:
            lender.shutdown(wait=True)
    if failed:
        raise failed[0]
    return cast("list[R]", results)
