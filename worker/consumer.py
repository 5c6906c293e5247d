"""The worker process's consumer: Dramatiq's worker, with threads that take batches.

Dramatiq hands each message to one worker thread, which runs the actor and acks it. The group
pass (:mod:`worker.group`) needs many messages in one thread, and when the worker threads
gathered into groups themselves they ran in lockstep: while a group waited on Postgres or
Brevo every thread waited in it, and when it ended every thread went back to Dramatiq at once,
so the process was either waiting or queueing, never both (``benchmarks/RESULTS.md``, "Where
a group's wall time goes").

Here :class:`BatchWorker` is Dramatiq's :class:`~dramatiq.Worker` (its consumer threads,
prefetch, heartbeats, acks and shutdown unchanged) with two kinds of threads:

- ``worker.batch_threads`` batch threads take what the consumer has put on the work queue, up
  to ``worker.group_max`` messages at once (never waiting for more: a lone message goes
  alone), and hand the first attempts the group pass can take to it as one batch; each
  message of the batch then ends exactly as Dramatiq would end it (the middleware's
  ``after_process_message`` with its own result or exception, then its ack, the batch's in
  one round trip). While one batch waits on Postgres or Brevo, the other thread's batch runs.
- ``worker.threads`` threads run the one-event path, as Dramatiq's own threads do: a retry, a
  routing form, a second event of one contact, anything the pass screens out before it
  starts. A message the pass declines once it has started (its contact locked by another
  process, a redelivery, a forgotten person) takes the one-event path in its batch thread.

A message is acked only after its batch recorded its effects; a worker killed holding a batch
leaves its messages unacked, and they come back like any other (:mod:`worker.maintenance`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from queue import Empty, PriorityQueue
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.errors import RateLimitExceeded
from dramatiq.middleware import SkipMessage
from dramatiq.worker import ConsumerThread, WorkerThread, _WorkerMiddleware, _WorkQueueItem

from calendly_brevo.config import WorkerSettings
from calendly_brevo.errors import TransientError
from calendly_brevo.logs import get_logger
from calendly_brevo.queueing import ACTOR_NAME
from worker.actors import Attempt, is_expired
from worker.pipeline import Job, Last

if TYPE_CHECKING:
    from dramatiq.broker import MessageProxy

    from worker.group import GroupPass, Item
    from worker.pipeline import Pipeline

log = get_logger("calendly_brevo.worker")

#: How long an ack waits before it tries Redis again (Dramatiq's own wait for one).
ACK_RETRY_SECONDS = 5.0


def _fields(body: str, received_at: float, source: str = "webhook") -> tuple[str, float, str]:
    return body, received_at, source


class BatchWorker(dramatiq.Worker):
    """Dramatiq's worker with batch threads for the group pass (see the module)."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        pipeline: Pipeline,
        group: GroupPass,
        settings: WorkerSettings,
        *,
        worker_timeout: int = 250,
    ) -> None:
        super().__init__(broker, worker_threads=settings.threads, worker_timeout=worker_timeout)
        self.pipeline = pipeline
        self.group = group
        self.settings = settings
        # A batch in each batch thread and one more waiting: with less, a thread that ends its
        # batch finds the work queue empty (the consumer fetches only while it holds fewer than
        # this), and the batches run one after the other again.
        self.queue_prefetch = max(
            self.queue_prefetch, (settings.batch_threads + 1) * group.max_items
        )
        #: What the batch threads leave to the one-event path's threads.
        self.alone_queue: PriorityQueue[_WorkQueueItem] = PriorityQueue()

    def start(self) -> None:
        self.broker.emit_before("worker_boot", self)
        self.broker.add_middleware(_WorkerMiddleware(self))
        for _ in range(self.worker_threads):
            self._add_thread(
                WorkerThread(
                    broker=self.broker,
                    consumers=self.consumers,
                    work_queue=self.alone_queue,
                    worker_timeout=self.worker_timeout,
                )
            )
        for _ in range(self.settings.batch_threads):
            self._add_thread(BatchThread(self))
        self.broker.emit_after("worker_boot", self)

    def _add_thread(self, thread: WorkerThread) -> None:
        thread.start()
        self.workers.append(thread)

    def stop(self, timeout: int = 600000) -> None:
        """Dramatiq's stop, with what waits for the one-event path's threads requeued too: the
        threads stop first (each ends what it holds), then those messages join the work
        queue's, which Dramatiq puts back on their queues."""
        for thread in self.workers:
            thread.stop()
        deadline = time.monotonic() + timeout / 1000
        for thread in self.workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        while True:
            try:
                self.work_queue.put(self.alone_queue.get_nowait())
            except Empty:
                break
        super().stop(timeout)

    def join(self) -> None:
        """Wait until both queues are done (for tests)."""
        while True:
            super().join()
            self.alone_queue.join()
            if not (self.work_queue.unfinished_tasks or self.alone_queue.unfinished_tasks):
                return

    # -- one batch -----------------------------------------------------------------------------
    def take(self, messages: Sequence[MessageProxy]) -> None:
        """End every one of ``messages`` (a batch off the work queue): the group pass's, each
        with its middleware and its ack here; the others on the one-event path's threads."""
        pending = {id(m): m for m in messages}  # not yet ended or handed on
        try:
            self._take(messages, pending)
        finally:  # a failure here (a bug): what it left takes the one-event path
            for message in pending.values():
                self._alone(message)

    def _take(self, messages: Sequence[MessageProxy], pending: dict[int, MessageProxy]) -> None:
        jobs: dict[int, MessageProxy] = {}
        ordered: list[Job] = []
        for message in messages:
            job = self._job(message)
            if job is None:
                self._alone(pending.pop(id(message)))
            else:
                jobs[id(job)] = message
                ordered.append(job)
        items = self.group.screen(ordered)
        taken = {id(item.job) for item in items}
        for job in ordered:
            if id(job) not in taken:
                self._alone(pending.pop(id(jobs[id(job)])))
        started: list[tuple[Item, MessageProxy]] = []
        ended: list[MessageProxy] = []
        for item in items:
            message = pending.pop(id(jobs[id(item.job)]))
            if self._begin(message):
                started.append((item, message))
            else:
                ended.append(message)
        try:
            self.group.run([item for item, message in started if not message.failed])
            for item, message in started:
                result = item.result
                if result is None and not message.failed:  # declined once started: alone, here
                    result = self._one(item.job)
                try:
                    self._end(message, result, Attempt.of(message.options))
                except Exception:  # a middleware failed: acked all the same, as Dramatiq does
                    log.exception("message_end_failed", message_id=message.message_id)
                ended.append(message)
        finally:
            self._ack(ended)

    def _job(self, message: MessageProxy) -> Job | None:
        """The message as the group pass's job: only a first attempt of our actor."""
        if message.actor_name != ACTOR_NAME:
            return None
        attempt = Attempt.of(message.options)
        if attempt.number != 1:
            return None  # a retry knows its claim
        try:
            body, received_at, source = _fields(*message.args, **message.kwargs)
        except TypeError:
            return None  # the actor's own call says what is wrong with it
        expired = is_expired(received_at, self.settings)
        last = Last(failure=attempt.final(self.settings) or expired, expired=expired)
        return Job(body, received_at, source, attempt.signature_key, last, time.perf_counter())

    def _alone(self, message: MessageProxy) -> None:
        self.alone_queue.put(_WorkQueueItem(0, message))

    def _begin(self, message: MessageProxy) -> bool:
        """The middleware's ``before_process_message``; ``False``: it skipped the message (to
        be acked)."""
        try:
            self.broker.emit_before("process_message", message)
        except SkipMessage:
            log.warning("message_skipped", message_id=message.message_id)
            self.broker.emit_after("skip_message", message)
            return False
        return True

    def _one(self, job: Job) -> Any:
        """The one-event path for a first attempt of the batch: its outcome or its exception."""
        try:
            return self.pipeline.process(
                job.body,
                job.received_at,
                job.source,
                final=job.last.failure,
                expired=job.last.expired,
                signature_key=job.signature_key,
            )
        except BaseException as exc:
            return exc

    def _end(self, message: MessageProxy, result: Any, attempt: Attempt) -> None:
        """As Dramatiq's worker thread ends a message: ``after_process_message`` with its
        result or its exception (a transient one as its retry); its ack is :meth:`_ack`'s."""
        if not isinstance(result, BaseException):
            self.broker.emit_after("process_message", message, result=None)
            return
        exc = result
        if isinstance(exc, TransientError):
            exc = attempt.retry(exc, self.settings)
            exc.__cause__ = result
        message.stuff_exception(exc)
        if not isinstance(exc, dramatiq.Retry | RateLimitExceeded):
            log.error(
                "message_failed",
                message_id=message.message_id,
                error=type(exc).__name__,
                exc_info=exc,
            )
        self.broker.emit_after("process_message", message, exception=exc)

    def _ack(self, messages: Sequence[MessageProxy]) -> None:
        """Ack (or, failed, dead-letter) ``messages``: on Redis in one round trip per queue
        (:func:`ack_all`), elsewhere one by one as Dramatiq does."""
        if isinstance(self.broker, RedisBroker):
            by_queue: dict[str, list[MessageProxy]] = {}
            for message in messages:
                by_queue.setdefault(message.queue_name, []).append(message)
            for queue, queued in by_queue.items():
                ack_all(self.broker, self.consumers[queue], queued)
        else:
            for message in messages:
                self.consumers[message.queue_name].post_process_message(message)
        for message in messages:
            message.clear_exception()


def ack_all(broker: RedisBroker, thread: ConsumerThread, messages: Sequence[MessageProxy]) -> None:
    """What :meth:`ConsumerThread.post_process_message` does for each of ``messages``, in one
    Redis round trip: the same ``dispatch`` script with the same arguments (an ack or a nack
    never triggers maintenance), pipelined; a connection error is retried until Redis is back,
    as Dramatiq retries one."""
    consumer: Any = thread.consumer  # Dramatiq's _RedisConsumer (its own bookkeeping below)
    assert consumer is not None
    script = broker.scripts["dispatch"]
    unpack = broker._max_unpack_size()  # type: ignore[no-untyped-call]
    for message in messages:
        broker.emit_before("nack" if message.failed else "ack", message)
    while True:
        try:
            with broker.client.pipeline(transaction=False) as pipe:
                now = current_millis()
                for message in messages:
                    command = "nack" if message.failed else "ack"
                    args = [
                        command,
                        now,
                        consumer.queue_name,
                        broker.broker_id,
                        broker.heartbeat_timeout,
                        broker.dead_message_ttl,
                        0,
                        unpack,
                        message.options["redis_message_id"],
                    ]
                    script(keys=[broker.namespace], args=args, client=pipe)
                pipe.execute()
            break
        except redis.ConnectionError as exc:
            log.warning("ack_failed_retrying", messages=len(messages), error=str(exc))
            time.sleep(ACK_RETRY_SECONDS)
    # Room to prefetch again: the consumer's next empty-handed look sleeps its shortest
    # backoff, not one grown while every message it may hold was in a batch.
    consumer.misses = 0
    for message in messages:
        consumer.queued_message_ids.discard(message.message_id)
        broker.emit_after("nack" if message.failed else "ack", message)


class BatchThread(WorkerThread):
    """A thread that takes what is on the work queue, up to the group pass's batch size, and
    hands it to :meth:`BatchWorker.take`."""

    def __init__(self, worker: BatchWorker) -> None:
        super().__init__(
            broker=worker.broker,
            consumers=worker.consumers,
            work_queue=worker.work_queue,
            worker_timeout=worker.worker_timeout,
        )
        self.worker = worker

    def run(self) -> None:
        self.running = True
        self.broker.emit_after("worker_thread_boot", self)
        batch_max = self.worker.group.max_items
        while self.running:
            if self.paused:
                self.paused_event.set()
                time.sleep(self.timeout)
                continue
            try:
                first = self.work_queue.get(timeout=self.timeout)
            except Empty:
                continue
            messages = [first.message]
            while len(messages) < batch_max:
                try:
                    messages.append(self.work_queue.get_nowait().message)
                except Empty:
                    break
            try:
                self.worker.take(messages)
            except Exception:  # a bug: the thread goes on (what it left went to the others)
                log.exception("batch_failed", messages=len(messages))
            finally:
                for _ in messages:
                    self.work_queue.task_done()
        self.broker.emit_before("worker_thread_shutdown", self)


def make_worker(
    broker: dramatiq.Broker, pipeline: Pipeline, settings: WorkerSettings
) -> dramatiq.Worker:
    """The process's worker: batches for the group pass where it applies
    (``pipeline.group``), else Dramatiq's own."""
    group = pipeline.group  # None unless it applies (worker.runtime.make_group)
    if group is None:
        return dramatiq.Worker(broker, worker_threads=settings.threads, worker_timeout=250)
    return BatchWorker(broker, pipeline, group, settings)
