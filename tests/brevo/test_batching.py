"""The coalescer: calls from many threads within a window become one request, each caller gets
its own item's answer, and nothing waits past the window (or forever, if its sender vanished)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.brevo.batching import Coalescer, Crowd, Limits


class Lost(Exception):
    pass


class Recorder:
    """A ``send`` that keeps every batch it was handed."""

    def __init__(self, answer: Callable[[int], Any] = lambda item: item * 10) -> None:
        self.batches: list[list[int]] = []
        self.answer = answer
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> Sequence[Any]:
        with self.lock:
            self.batches.append(list(items))
        return [self.answer(item) for item in items]


def coalescer(
    send: Callable[[list[int]], Sequence[Any]],
    *,
    window: float = 5.0,
    max_items: int = 8,
    max_bytes: int | None = None,
    size_of: Callable[[int], int] | None = None,
    **options: Any,
) -> Coalescer[int, Any]:
    limits = Limits(window, max_items, max_bytes, size_of)
    return Coalescer("test", send, limits, gave_up=lambda: Lost("gave up"), **options)


def submit_all(c: Coalescer[int, Any], items: list[int]) -> list[Any]:
    """Submit from one thread per item at once; each result, or the exception it raised."""
    barrier = threading.Barrier(len(items))

    def one(item: int) -> Any:
        barrier.wait()
        try:
            return c.submit(item)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(one, items))


def test_calls_that_fill_a_batch_go_out_as_one_request_each_with_its_own_answer() -> None:
    send = Recorder()
    # A long window: only a full batch can send before it ends, so one request proves coalescing.
    results = submit_all(coalescer(send, window=30.0, max_items=6), list(range(6)))
    assert results == [0, 10, 20, 30, 40, 50]
    assert len(send.batches) == 1
    assert sorted(send.batches[0]) == list(range(6))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=24), st.integers(min_value=1, max_value=7))
def test_no_batch_holds_more_than_max_items_and_every_item_is_sent_once(
    n: int, max_items: int
) -> None:
    send = Recorder()
    results = submit_all(coalescer(send, window=0.05, max_items=max_items), list(range(n)))
    assert results == [i * 10 for i in range(n)]
    assert all(1 <= len(b) <= max_items for b in send.batches)
    assert sorted(i for b in send.batches for i in b) == list(range(n))


def test_a_lone_call_is_sent_alone_once_the_window_ends() -> None:
    send = Recorder()
    assert coalescer(send, window=0.01).submit(7) == 70
    assert send.batches == [[7]]


def test_a_batch_stops_growing_before_it_would_pass_max_bytes() -> None:
    send = Recorder()
    c = coalescer(send, window=0.05, max_items=4, max_bytes=25, size_of=lambda item: 10)
    results = submit_all(c, [1, 2, 3, 4])  # 10 + 10 fits in 25 bytes, a third would not
    assert results == [10, 20, 30, 40]
    assert all(len(b) <= 2 for b in send.batches)


def test_each_item_raises_its_own_error_and_the_others_succeed() -> None:
    def answer(item: int) -> Any:
        return ValueError(f"item {item} refused") if item % 2 else item

    results = submit_all(coalescer(Recorder(answer), window=30.0, max_items=4), [0, 1, 2, 3])
    assert results[0] == 0 and results[2] == 2
    assert [str(r) for r in (results[1], results[3])] == ["item 1 refused", "item 3 refused"]


def test_a_request_that_fails_as_a_whole_fails_every_item_each_with_its_own_exception() -> None:
    def send(items: list[int]) -> Sequence[Any]:
        raise TimeoutError("no answer")

    results = submit_all(coalescer(send, window=30.0, max_items=3), [1, 2, 3])
    assert all(isinstance(r, TimeoutError) and str(r) == "no answer" for r in results)
    assert len({id(r) for r in results}) == 3  # not one object raised in three threads


def test_a_caller_whose_sender_vanished_gives_up_in_bounded_time_in_doubt() -> None:
    release = threading.Event()

    def stuck(items: list[int]) -> Sequence[Any]:
        release.wait(10)  # the sending thread hangs (it has its own HTTP timeout)
        return [i * 10 for i in items]

    c = coalescer(stuck, window=30.0, max_items=2, patience=0.2)
    threading.Timer(2.0, release.set).start()
    results = submit_all(c, [1, 2])
    # The thread that sent gets its answer; the one that only waited gave up, in doubt.
    assert sorted(type(r).__name__ for r in results) == ["Lost", "int"]


def test_a_sender_that_answers_the_wrong_number_of_items_fails_every_item() -> None:
    results = submit_all(coalescer(lambda items: [1], window=30.0, max_items=2), [1, 2])
    assert all(
        isinstance(r, RuntimeError) and "1 results for a batch of 2" in str(r) for r in results
    )


def test_when_every_call_in_progress_waits_on_a_batch_it_leaves_without_its_window() -> None:
    """A worker with one event at a time (or all its threads in one batch) never waits out
    the window: nobody else could join."""
    send, crowd = Recorder(), Crowd()
    c = coalescer(send, window=30.0, max_items=8, crowd=crowd)
    started = time.monotonic()
    with crowd.member():
        assert c.submit(7) == 70
    barrier = threading.Barrier(3)

    def member(item: int) -> Any:
        with crowd.member():
            barrier.wait()
            return c.submit(item)

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(member, [1, 2, 3])) == [10, 20, 30]
    assert time.monotonic() - started < 15  # far less than one 30 s window
    assert send.batches[0] == [7]
    assert sorted(i for b in send.batches[1:] for i in b) == [1, 2, 3]


def test_a_call_still_busy_elsewhere_is_waited_for_up_to_the_window() -> None:
    send, crowd = Recorder(), Crowd()
    c = coalescer(send, window=30.0, max_items=8, crowd=crowd)
    joined = threading.Event()

    def late() -> Any:
        with crowd.member():
            joined.wait(10)  # busy with its contact upsert while the other waits
            return c.submit(2)

    with ThreadPoolExecutor(2) as pool:
        later = pool.submit(late)
        with crowd.member():
            first = pool.submit(c.submit, 1)
            time.sleep(0.2)
            joined.set()
            assert first.result(20) == 10
        assert later.result(20) == 20
    assert send.batches == [[1, 2]]


def test_calls_made_while_the_leader_waits_for_its_token_join_its_batch() -> None:
    """Brevo's limit holds the request back: what arrives meanwhile rides along instead of
    queueing for a token of its own."""
    send, crowd = Recorder(), Crowd()
    token, waiting = threading.Event(), threading.Event()
    tickets: list[int] = []

    @contextmanager
    def ticket(items: int) -> Iterator[None]:
        tickets.append(items)
        waiting.set()
        token.wait(10)  # the bucket's next slot
        yield

    c = coalescer(send, window=0.01, max_items=8, crowd=crowd, ticket=ticket)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(c.submit, 1)
        assert waiting.wait(10)  # the window has ended; the leader waits for its token
        later = [pool.submit(c.submit, i) for i in (2, 3, 4)]
        time.sleep(0.2)
        token.set()
        assert [f.result(10) for f in (first, *later)] == [10, 20, 30, 40]
    assert tickets == [1]  # one token for the four
    assert sorted(send.batches[0]) == [1, 2, 3, 4] and len(send.batches) == 1


def test_a_ticket_that_fails_fails_every_item_of_its_batch_and_sends_nothing() -> None:
    send, tickets = Recorder(), [Lost("no token within max_wait"), None]

    @contextmanager
    def ticket(_items: int) -> Iterator[None]:
        if error := tickets.pop(0):
            raise error
        yield

    c = coalescer(send, window=0.05, max_items=3, ticket=ticket)
    results = submit_all(c, [1, 2, 3])
    assert all(isinstance(r, Lost) for r in results)
    assert send.batches == []
    assert c.submit(5) == 50  # the failed batch is closed: the next call opens its own
    assert send.batches == [[5]]
