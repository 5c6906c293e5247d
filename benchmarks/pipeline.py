"""2. Pipeline: events/s applied by one worker process (dedup and state in Postgres, mapping,
contact upsert + custom event to a zero-latency Brevo stand-in) from a pre-filled Redis queue,
against a no-op Dramatiq actor (:mod:`benchmarks.noop_worker`) with as many threads draining the
same number of messages from the same Redis in the same run, once per thread count (``--threads``,
default 4 and 16: the config's default and what the compose file and the Kubernetes manifests
run); then two worker processes at the last thread count; CPU ms per event; and a cProfile of the
pipeline (top 10 by cumulative time).

Throughput is measured between 10 % and 90 % of the messages acked (``HLEN`` of the queue's
message hash: Dramatiq deletes a message from it when it acks), so start-up and the tail are
left out. Brevo is :mod:`benchmarks.brevo_stub` (the tests' fake validates every request against
the OpenAPI spec, which would take CPU from the worker on a 2-core machine).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    CLI,
    PY,
    Proc,
    Row,
    RssSampler,
    base_env,
    body,
    children,
    cpu_seconds,
    fmt,
    free_port,
    log,
    pg_scalar,
    prefill,
    queue_outstanding,
    reset_postgres,
    reset_redis,
    running,
    template,
    wait_http,
)
from benchmarks.fakebrevo import UNLIMITED

#: The bulk issue's targets: events/s of one process against the no-op actor, worker CPU per event.
TARGET_RATIO = 0.5
TARGET_CPU_MS = 1.5


def drain(
    proc: Proc, n: int, *, timeout: float, worker_pids: list[int] | None = None
) -> dict[str, Any]:
    """Poll until ``n`` messages are acked; the rate between 10 % and 90 %, CPU per message."""
    lo, hi = int(n * 0.1), int(n * 0.9)
    t_lo = t_hi = None
    cpu_lo = cpu_hi = 0.0
    deadline = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.args} exited:\n{proc.tail()}")
        if not pids:
            pids = worker_pids if worker_pids is not None else children(proc.pid) or [proc.pid]
        done = n - queue_outstanding()
        now = time.monotonic()
        if t_lo is None and done >= lo:
            t_lo, done_lo, cpu_lo = now, done, sum(cpu_seconds(p) for p in pids)
        if t_hi is None and done >= hi:
            t_hi, done_hi, cpu_hi = now, done, sum(cpu_seconds(p) for p in pids)
        if done >= n:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"only {n - queue_outstanding()} of {n} done in {timeout}s")
    assert t_lo is not None and t_hi is not None
    events = done_hi - done_lo
    elapsed = max(t_hi - t_lo, 1e-6)
    return {
        "rate": events / elapsed,
        "cpu_ms": (cpu_hi - cpu_lo) * 1000 / max(events, 1),
        "pids": pids,
    }


def worker_pids(proc: Proc, want: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [p for p in children(proc.pid) if _is_python(p)]
        if len(kids) >= want:
            return kids
        time.sleep(0.05)
    raise RuntimeError(f"worker children did not start:\n{proc.tail()}")


def _is_python(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def profile_pipeline(env: dict[str, str], n: int, offset: int) -> tuple[float, str]:
    """Run ``n`` events through :class:`worker.pipeline.Pipeline` in this process under cProfile
    (no Dramatiq): CPU ms per event and the top 10 by cumulative time."""
    import os

    from calendly_brevo.bootstrap import Services
    from calendly_brevo.config import load_settings
    from calendly_brevo.logs import configure_logging
    from worker.runtime import build_pipeline

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings(None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    configure_logging(settings)
    services = Services(settings)
    pipe = build_pipeline(services)
    tmpl = template()
    bodies = [body(tmpl, offset + i).decode() for i in range(n + 20)]
    for b in bodies[:20]:  # warm the pools and caches
        pipe.process(b, time.time())
    prof = cProfile.Profile()
    c0 = time.process_time()
    prof.enable()
    for b in bodies[20:]:
        pipe.process(b, time.time())
    prof.disable()
    cpu_ms = (time.process_time() - c0) * 1000 / n
    services.close()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(10)
    return cpu_ms, out.getvalue()


def run(opts: Namespace) -> list[Row]:
    n = opts.messages if not opts.quick else min(opts.messages, 600)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    stub_port = free_port()
    env = base_env(workdir, brevo_url=f"http://127.0.0.1:{stub_port}/v3", CONFIG_TEXT=UNLIMITED)
    reset_redis()
    reset_postgres(env)
    counts_of: list[int] = opts.threads
    rows: list[Row] = []
    results: dict[str, dict[str, Any]] = {}
    samplers = {}
    offset = 0
    with running(
        [PY, "-m", "benchmarks.brevo_stub", "--port", str(stub_port)], env, workdir / "stub.log"
    ) as stub:
        wait_http(f"http://127.0.0.1:{stub_port}/__stub__/counts", stub)
        # Per thread count: the no-op actor (the baseline), then one worker process; two worker
        # processes at the last thread count.
        runs = [(threads, 1) for threads in counts_of] + [(counts_of[-1], 2)]
        for threads, procs in runs:
            reset_redis()
            if procs == 1:
                prefill(n, start=offset)
                argv = [PY, "-m", "benchmarks.noop_worker", "--threads", str(threads)]
                with running(argv, env, workdir / f"noop{threads}.log") as actor:
                    base = drain(actor, n, timeout=120, worker_pids=[actor.pid])
                results[f"noop{threads}"] = base
                log(f"pipeline noop, {threads} threads: {base['rate']:.0f} msg/s")
                reset_redis()
            prefill(n, start=offset)
            argv = [*CLI, "worker", "--processes", str(procs), "--threads", str(threads)]
            name = f"w{procs}x{threads}"
            with running(argv, env, workdir / f"worker{procs}x{threads}.log") as proc:
                pids = worker_pids(proc, procs)
                sampler = RssSampler({f"w{i}": p for i, p in enumerate(pids)}).start()
                results[name] = drain(proc, n, timeout=600, worker_pids=pids)
                sampler.stop()
                samplers[name] = sampler
            applied = pg_scalar(
                "SELECT count(*) FROM processed_events WHERE status = 'applied' "
                "AND email LIKE 'bench%%' AND source = 'webhook'"
            )
            got = results[name]
            log(
                f"pipeline {procs} process(es), {threads} threads: {got['rate']:.0f} events/s, "
                f"{got['cpu_ms']:.2f} CPU ms/event, applied so far {applied}"
            )
            offset += n
        counts = httpx.get(f"http://127.0.0.1:{stub_port}/__stub__/counts").json()
        cpu_ms, profile = profile_pipeline(env, opts.profile_events, offset)
    applied = pg_scalar("SELECT count(*) FROM processed_events WHERE status = 'applied'")
    expected = len(runs) * n + opts.profile_events + 20
    lost = applied != expected
    for threads in counts_of:
        r1, base = results[f"w1x{threads}"], results[f"noop{threads}"]
        ratio = r1["rate"] / base["rate"]
        rows += [
            Row(
                "pipeline",
                f"events/s, 1 worker process ({threads} threads)",
                f"{fmt(r1['rate'])}/s",
                f"no-op actor {fmt(base['rate'])}/s",
                f"ratio >= {TARGET_RATIO}",
                ratio >= TARGET_RATIO and not lost,
            ),
            Row("pipeline", "  ratio 1 process / no-op", f"{ratio:.2f}", "", ""),
            Row(
                "pipeline",
                f"CPU ms per event (worker process, {threads} threads)",
                f"{r1['cpu_ms']:.2f} ms",
                f"no-op {base['cpu_ms']:.2f} ms",
                f"<= {TARGET_CPU_MS} ms",
                r1["cpu_ms"] <= TARGET_CPU_MS,
            ),
        ]
    last = counts_of[-1]
    r1, r2 = results[f"w1x{last}"], results[f"w2x{last}"]
    rows += [
        Row(
            "pipeline",
            f"events/s, 2 worker processes ({last} threads)",
            f"{fmt(r2['rate'])}/s ({r2['rate'] / r1['rate']:.2f}x of 1)",
            f"no-op actor {fmt(results[f'noop{last}']['rate'])}/s",
            "reported",
            note=f"in-process Pipeline.process alone: {cpu_ms:.2f} CPU ms/event (under cProfile)",
        ),
        Row(
            "pipeline",
            "events applied / sent; Brevo calls",
            f"{applied} / {expected}",
            f"upserts {counts.get('upserts', 0)}, events {counts.get('events', 0)}",
            "all applied",
            not lost,
        ),
        Row(
            "memory",
            "worker peak RSS (during bench 2)",
            f"{max(s.peak(k) for s in samplers.values() for k in s.pids):.0f} MB",
            "",
            "<= 150 MB",
            max(s.peak(k) for s in samplers.values() for k in s.pids) <= 150,
        ),
    ]
    (workdir / "profile.txt").write_text(profile)
    print(profile_summary(profile), flush=True)
    rows[-3].note += f"; profile in {workdir / 'profile.txt'}"
    PROFILE["text"] = profile
    return rows


PROFILE: dict[str, str] = {}


def profile_summary(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(["pipeline profile (cProfile, top 10 by cumulative time):", *lines[start:]])


def _thread_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise ValueError(text)
    return counts


def add_arguments(parser: Any) -> None:
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument(
        "--threads",
        type=_thread_counts,
        default=[4, 16],
        help="worker threads, one run each, comma-separated (default 4,16: the config's "
        "default and what the compose file and the Kubernetes manifests run)",
    )
    parser.add_argument("--profile-events", type=int, default=150)
