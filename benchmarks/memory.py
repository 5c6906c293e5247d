"""5. Memory: RSS (``VmRSS`` of ``/proc/<pid>/status``) of a receiver and of a worker process
under steady end-to-end load: signed webhooks at a fixed rate into the real receiver, one worker
process applying them to the zero-latency Brevo stand-in. Peak <= 150 MB each, and flat: growth
<= 10 % from after a 5 s warm-up load (not sampled) and the first 20 % of the run to the end,
comparing the mean of the first and last tenth of those samples. ``make bench`` runs 45 s;
``--long`` runs 5 minutes.
(The receiver and pipeline benchmarks also report their peak RSS under saturation.)
"""

from __future__ import annotations

import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CLI,
    PY,
    Row,
    RssSampler,
    base_env,
    free_port,
    log,
    pg_scalar,
    reset_postgres,
    reset_redis,
    running,
    wait_http,
)
from benchmarks.fakebrevo import UNLIMITED
from benchmarks.pipeline import worker_pids
from benchmarks.receiver import loadgen

PEAK_MB = 150.0
GROWTH = 0.10


def run(opts: Namespace) -> list[Row]:
    duration = 300.0 if opts.long else (20.0 if opts.quick else opts.duration)
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    stub_port, rport = free_port(), free_port()
    env = base_env(
        workdir,
        brevo_url=f"http://127.0.0.1:{stub_port}/v3",
        CONFIG_TEXT=UNLIMITED,
        PORT=str(rport),
    )
    reset_redis()
    reset_postgres(env)
    with (
        running(
            [PY, "-m", "benchmarks.brevo_stub", "--port", str(stub_port)],
            env,
            workdir / "stub.log",
        ),
        running([*CLI, "receiver"], env, workdir / "receiver.log") as receiver,
        running(
            [*CLI, "worker", "--processes", "1", "--threads", "4"], env, workdir / "worker.log"
        ) as worker,
    ):
        wait_http(f"http://127.0.0.1:{rport}/readyz", receiver)
        pid = worker_pids(worker, 1)[0]
        url = f"http://127.0.0.1:{rport}/webhooks/calendly"
        # Warm-up, not sampled: imports done, pools and caches filled.
        loadgen(
            url,
            mode="rate",
            rate=opts.rate,
            conns=16,
            duration=5.0,
            warmup=0.0,
            pool=int(opts.rate * 5) + 1,
        )
        sampler = RssSampler({"receiver": receiver.pid, "worker": pid}, interval=1.0).start()
        sent = loadgen(
            url,
            mode="rate",
            rate=opts.rate,
            conns=16,
            duration=duration,
            warmup=0.0,
            pool=int(opts.rate * duration) + 1,
            offset=1_000_000,
        )
        sampler.stop()
        time.sleep(1)
        applied = pg_scalar("SELECT count(*) FROM processed_events WHERE status = 'applied'")
    rows = []
    for name in ("receiver", "worker"):
        peak, growth = sampler.peak(name), sampler.growth(name)
        first = sampler.samples[name][0][1] if sampler.samples.get(name) else 0.0
        log(f"memory {name}: start {first:.0f} MB, peak {peak:.0f} MB, growth {growth:+.1%}")
        rows.append(
            Row(
                "memory",
                f"{name} peak RSS, {duration:.0f} s at {opts.rate:.0f} webhooks/s",
                f"{peak:.0f} MB",
                f"at start {first:.0f} MB",
                f"<= {PEAK_MB:.0f} MB",
                peak <= PEAK_MB,
            )
        )
        rows.append(
            Row(
                "memory",
                f"{name} RSS growth after warm-up",
                f"{growth:+.1%}",
                "",
                f"<= {GROWTH:.0%}",
                growth <= GROWTH,
                note=f"{sent['ok']} webhooks accepted, {applied} applied during the run",
            )
        )
    return rows


def add_arguments(parser: Any) -> None:
    parser.add_argument("--duration", type=float, default=45.0)
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks/s")
