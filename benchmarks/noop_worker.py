"""The pipeline benchmark's baseline: a Dramatiq worker process whose actor does nothing.

    python -m benchmarks.noop_worker --threads 4

It is composed exactly like one process of ``calendly-brevo worker``
(:func:`worker.main.run_process`): the same broker and middleware
(:func:`worker.broker.make_broker`, plus Dramatiq's Prometheus middleware when
``PROMETHEUS_MULTIPROC_DIR`` is set), the same actor name and queue, the same thread count; only
the actor's body is empty. So events/s of the real worker divided by messages/s of this one is the
share of the consuming capacity that the pipeline itself leaves.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.noop_worker")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)

    import dramatiq
    from dramatiq.middleware import Middleware

    from calendly_brevo.config import load_settings
    from calendly_brevo.logs import configure_logging
    from calendly_brevo.queueing import ACTOR_NAME, QUEUE_NAME
    from worker.broker import make_broker

    settings = load_settings(None)
    configure_logging(settings)
    extra: list[Middleware] = []
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["dramatiq_prom_db"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        from dramatiq.middleware.prometheus import Prometheus

        extra.append(Prometheus())
    broker = make_broker(settings, extra=extra)

    def process_event(body: str, received_at: float, source: str = "webhook") -> str:
        return "applied"

    dramatiq.Actor(
        process_event,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={},
    )
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=args.threads, worker_timeout=250)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    stop.wait()
    worker.stop(timeout=5000)
    broker.close()


if __name__ == "__main__":
    main()
