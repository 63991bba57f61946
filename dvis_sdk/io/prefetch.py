"""Background prefetching: decode the next frames while the model runs."""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator, Optional, Tuple, TypeVar

from .formats import _check_positive_int

T = TypeVar("T")
_ITEM, _DONE, _ERROR = "item", "done", "error"


def prefetch(iterable: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``iterable`` in a background thread, at most ``depth`` items ahead of the consumer.

    Decoding (OpenCV releases the GIL) then overlaps with inference. An exception raised by the iterable is
    re-raised to the consumer, unchanged, after the items produced before it. If the consumer stops early
    (``break``, an exception, or ``close()`` of this generator), the thread is told to stop, the wrapped
    iterator is closed *in that thread* (so e.g. a video decoder is released) and the thread is joined.
    Items are produced lazily: the thread starts on the first ``next()``.
    """
    _check_positive_int("depth", depth, allow_none=False)
    q: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(msg: Tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        it: Optional[Iterator[T]] = None
        try:
            it = iter(iterable)
            for item in it:
                if not put((_ITEM, item)):
                    return
                del item  # the queue owns it now; do not keep an extra frame alive in this thread
            put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer, re-raised there
            put((_ERROR, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - cleanup must not mask the real outcome
                    pass

    thread = threading.Thread(target=worker, name="dvis-video-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, payload = q.get(timeout=0.1)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("prefetch worker thread ended without a result") from None
                continue
            if kind == _ITEM:
                yield payload
                del payload
            elif kind == _DONE:
                return
            else:
                raise payload
    finally:
        stop.set()
        while True:  # free queued items and unblock a worker waiting to put
            try:
                q.get_nowait()
            except queue.Empty:
                break
        thread.join(timeout=10.0)


