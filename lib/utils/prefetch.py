"""Ordered prefetching on a thread pool: results come back in task order, errors re-raised.

Data loaders decode images (OpenCV releases the GIL) and compute targets for the next few
batches on worker threads while the network runs. :class:`OrderedPrefetcher` keeps at most
``depth`` tasks in flight and hands results back strictly in submission order, so what a loader
yields does not depend on thread timing. An exception raised by a task is re-raised in the
consumer's thread by ``next()`` (the worker never swallows it and the consumer never waits on a
task that has already failed), with the original traceback chained.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, TypeVar

__all__ = ["OrderedPrefetcher"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _Done(Future):
    """An already finished future, for the synchronous (``num_workers=0``) mode."""

    def __init__(self, fn: Callable[[T], R], task: T) -> None:
        super().__init__()
        try:
            self.set_result(fn(task))
        except BaseException as err:  # noqa: BLE001 (re-raised by result())
            self.set_exception(err)


class OrderedPrefetcher(Generic[T, R]):
    """Iterates ``fn(task)`` over ``tasks`` in order, running up to ``depth`` tasks ahead.

    Args:
        fn: the work for one task; runs on a pool thread (or inline when there is no pool).
        tasks: the tasks, consumed lazily in order.
        pool: the executor to run on (shared by successive prefetchers of one loader); None
            runs each task in the consumer's thread when it is requested.
        depth: how many tasks may be submitted ahead of the consumer (>= 1).
    """

    def __init__(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        pool: ThreadPoolExecutor | None,
        depth: int = 2,
    ) -> None:
        self._fn = fn
        self._tasks: Iterator[T] = iter(tasks)
        self._pool = pool
        self._depth = max(1, int(depth))
        self._pending: deque[Future] = deque()
        self._exhausted = False
        self._fill()

    def _submit_one(self) -> bool:
        if self._exhausted:
            return False
        try:
            task = next(self._tasks)
        except StopIteration:
            self._exhausted = True
            return False
        if self._pool is None:
            self._pending.append(_Done(self._fn, task))
        else:
            self._pending.append(self._pool.submit(self._fn, task))
        return True

    def _fill(self) -> None:
        if self._pool is None:  # synchronous: compute on demand only
            return
        while len(self._pending) < self._depth and self._submit_one():
            pass

    def peek(self) -> R:
        """The next result without consuming it (waits for it; raises its exception)."""
        if not self._pending and not self._submit_one():
            raise StopIteration
        return self._pending[0].result()

    def __iter__(self) -> OrderedPrefetcher[T, R]:
        return self

    def __next__(self) -> R:
        if not self._pending and not self._submit_one():
            raise StopIteration
        result = self._pending.popleft().result()  # a failed task raises here, nothing refilled
        self._fill()
        return result

    def close(self) -> None:
        """Cancels the tasks not started yet; running ones finish and their results are dropped."""
        while self._pending:
            self._pending.popleft().cancel()
        self._exhausted = True
