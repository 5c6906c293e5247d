"""Coalescing: calls that worker threads make within a short window go to Brevo as one request.

A thread :meth:`Coalescer.submit`\\ s its item and waits for that item's own result. The item that
opens a batch makes its thread the batch's *leader*: it waits until the batch is full or
``window`` has passed since it opened, closes it (later items open the next batch), sends it
with ``send`` and hands every item its result. So a lone item waits at most ``window`` before it
is sent, and a batch never holds more than ``max_items`` items or ``max_bytes`` of them.

Every item keeps its own fate: ``send`` returns one result per item, a value or the exception
that item's caller raises. A 207's refused item is retried or dead-lettered by its own message
while the accepted ones are recorded as sent; an exception for the whole request (a timeout, a
429) is every item's. The worker acks a message only once its item's effect is recorded, so a
process killed while it holds a batch loses nothing: its messages are delivered again.

A batch also leaves early when no other call could join it: a :class:`Crowd` counts the calls in
progress in the process (the worker's pipeline attempts) and how many of them wait on a batch;
when every one waits, the open batches end their windows at once. So one event at a time is
never held back, and a batch waits its window only while another thread may still bring an item.

**A batch stays open while its request waits for its token.** With a ``ticket`` (the worker's:
wait for a token of the endpoint's family, spent by the batch's first request), the leader
takes the ticket after the window and closes the batch only once it has it: calls made while
Brevo's limit holds the request back join it (up to ``max_items``) instead of opening batches
that queue for tokens of their own. When tokens are to spare, this changes nothing; when the
family is the bottleneck, each request carries what arrived while it waited, so the items per
request grow with the backlog.

Per-contact order needs nothing here: a worker thread holds its contact's lock while it waits,
so one batch never holds two items of one contact, and a contact's next event starts only after
this one's item has its answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from calendly_brevo.metrics import BREVO_BATCH_ITEMS

T = TypeVar("T")
R = TypeVar("R")

#: One result per item: the item's value, or the exception its caller raises.
Results = Sequence["R | BaseException"]


class Crowd:
    """The calls in progress (:meth:`member`) and how many wait on a batch (:meth:`waiting`):
    when all of them wait, every coalescer sharing the crowd sends its open batch now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.busy = 0
        self.blocked = 0
        self._flushers: list[Callable[[], None]] = []

    def join(self, flush: Callable[[], None]) -> None:
        with self._lock:
            self._flushers.append(flush)

    @contextmanager
    def member(self) -> Iterator[None]:
        """Around one call in progress (one pipeline attempt)."""
        with self._lock:
            self.busy += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1
                self._check()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            self.blocked += 1
            self._check()
        try:
            yield
        finally:
            with self._lock:
                self.blocked -= 1

    def _check(self) -> None:
        """Under the lock (taken before a coalescer's, never after)."""
        if self.blocked and self.blocked >= self.busy:
            for flush in self._flushers:
                flush()


@dataclass(frozen=True)
class Limits(Generic[T]):
    """A batch's bounds: it leaves ``window`` seconds after it opened, or once it holds
    ``max_items``, or before an item would take it past ``max_bytes`` (``size_of`` each)."""

    window: float
    max_items: int
    max_bytes: int | None = None
    size_of: Callable[[T], int] | None = None


@dataclass
class _Batch(Generic[T, R]):
    opened: float
    items: list[T] = field(default_factory=list)
    futures: list[Future[R]] = field(default_factory=list)
    size: int = 0
    closed: bool = False
    full: threading.Event = field(default_factory=threading.Event)


class Coalescer(Generic[T, R]):
    """Items submitted within ``window`` seconds of each other, sent together (see module)."""

    def __init__(
        self,
        name: str,
        send: Callable[[list[T]], Sequence[R | BaseException]],
        limits: Limits[T],
        *,
        gave_up: Callable[[], BaseException],
        patience: float = 60.0,
        crowd: Crowd | None = None,
        ticket: Callable[[int], AbstractContextManager[object]] | None = None,
    ) -> None:
        """``gave_up`` makes the error a waiting item raises when its batch's leader vanished
        (it cannot know whether the batch left: the error should say "in doubt"); ``patience``
        is how long it waits for the answer once its window ended (longer than a ticket's wait
        and a request together). ``ticket(items)``: entered by the leader with the batch still
        open (see the module), its batch is sent inside it."""
        if limits.max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.name = name
        self._send = send
        self.limits = limits
        self._size_of = limits.size_of or (lambda _item: 0)
        self._gave_up = gave_up
        self.patience = patience
        self._lock = threading.Lock()
        self._open: _Batch[T, R] | None = None
        #: ``None``: batches leave when full or when their window ends, nothing else.
        self._crowd = crowd
        if crowd is not None:
            crowd.join(self._flush_open)
        self._ticket = ticket or (lambda _items: nullcontext())

    def submit(self, item: T) -> R:
        """Join the open batch (or open one) and wait for this item's result; raise its error."""
        future: Future[R] = Future()
        batch, leader = self._join(item, future)
        with self._crowd.waiting() if self._crowd is not None else nullcontext():
            if leader:
                self._lead(batch)
            else:  # the leader closes the batch when it is full or its window ends
                batch.full.wait(max(0.0, batch.opened + self.limits.window - time.monotonic()))
            # Not ``future.result(timeout)``: its TimeoutError is the builtin one, which an
            # item's own answer (a request that timed out) may be too.
            if not wait([future], timeout=self.patience).done:
                raise self._gave_up()
        return future.result()

    def _flush_open(self) -> None:
        """End the open batch's window now (no other call can join it before its ticket)."""
        with self._lock:
            if self._open is not None:
                self._open.full.set()

    def _join(self, item: T, future: Future[R]) -> tuple[_Batch[T, R], bool]:
        size = self._size_of(item)
        with self._lock:
            batch = self._open
            leader = batch is None or not self._fits(batch, size)
            if leader:
                if batch is not None:  # full: its leader sends it now
                    self._close(batch)
                batch = _Batch(opened=time.monotonic())
                self._open = batch
            assert batch is not None
            batch.items.append(item)
            batch.futures.append(future)
            batch.size += size
            if len(batch.items) >= self.limits.max_items:
                self._close(batch)
        return batch, leader

    def _fits(self, batch: _Batch[T, R], size: int) -> bool:
        if len(batch.items) >= self.limits.max_items:
            return False
        most = self.limits.max_bytes
        return most is None or not batch.items or batch.size + size <= most

    def _close(self, batch: _Batch[T, R]) -> None:
        """Under the lock: no item joins ``batch`` any more; its leader stops waiting."""
        batch.closed = True
        if self._open is batch:
            self._open = None
        batch.full.set()

    def _lead(self, batch: _Batch[T, R]) -> None:
        batch.full.wait(max(0.0, batch.opened + self.limits.window - time.monotonic()))
        results: Sequence[R | BaseException]
        try:
            with self._ticket(len(batch.items)):  # the batch stays open while it waits
                with self._lock:
                    self._close(batch)
                BREVO_BATCH_ITEMS.labels(self.name).observe(len(batch.items))
                results = self._send(list(batch.items))
            if len(results) != len(batch.items):
                raise RuntimeError(
                    f"{self.name}: {len(results)} results for a batch of {len(batch.items)}"
                )
        except BaseException as exc:  # every item shares the request's (or ticket's) fate
            with self._lock:
                self._close(batch)
            results = [own(exc) for _ in batch.items]
        for future, result in zip(batch.futures, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def own(exc: BaseException) -> BaseException:
    """A copy of ``exc`` per waiting thread (raising one object in several threads would mix
    their tracebacks), built without calling ``__init__`` (whose arguments vary)."""
    clone = type(exc).__new__(type(exc))
    clone.args = exc.args
    clone.__dict__.update(exc.__dict__)
    clone.__cause__ = exc.__cause__ or exc
    return clone
