"""One worker thread fed through a bounded queue, so that a video encoder runs beside the decode.

The decode thread hands each frame over and goes on with the next step; the
worker encodes. The queue holds at most ``depth`` items, so a slow encoder
makes the decode wait instead of piling frames up in memory (its bytes are in
the memory plan: :meth:`.video.VideoFileSink.held_bytes`). A failure in the
worker is raised in the decode thread at its next hand-over, or at ``close()``.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, TypeVar

Item = TypeVar("Item")
_STOP = object()


class Worker(Generic[Item]):
    """Runs ``handle(item)`` for every item :meth:`put`, in order, on its own thread."""

    def __init__(self, handle: Callable[[Item], None], depth: int, name: str = "framestream-worker") -> None:
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None and not self._cancelled.is_set():
                try:
                    self._handle(item)
                except BaseException as err:  # noqa: BLE001  (raised in the caller's thread)
                    self._error = err

    def put(self, item: Item) -> None:
        """Hands ``item`` over, waiting while the queue is full; raises what the worker failed with."""
        self._raise()
        self._queue.put(item)  # the worker keeps taking items, also after it failed

    def close(self) -> None:
        """Waits until every item is handled; raises what the worker failed with."""
        self._stop()
        self._raise()

    def cancel(self) -> None:
        """Drops what is queued and stops the worker (after the item at hand); never raises."""
        self._cancelled.set()
        self._stop()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)  # the worker keeps taking items (skipping them once cancelled or failed)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._cancelled.set()
            raise error
