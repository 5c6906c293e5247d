"""Worker metrics in prometheus-client's multiprocess mode, with the process id asked once
(``calendly_brevo/metrics.py``): each process still writes its own file, a forked child too,
and the supervisor's collector sums them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, sys
from calendly_brevo import metrics
metrics.WORKER_GROUP_EVENTS.observe(3)
child = os.fork()
if child == 0:
    metrics.WORKER_GROUP_EVENTS.observe(5)
    os._exit(0)
os.waitpid(child, 0)
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
registry = CollectorRegistry()
MultiProcessCollector(registry)
print(registry.get_sample_value("calendly_brevo_worker_group_events_sum"))
print(registry.get_sample_value("calendly_brevo_worker_group_events_count"))
print(child)
"""


def test_each_process_writes_its_own_values_a_forked_child_too(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    total, count, child = done.stdout.split()
    assert (float(total), float(count)) == (8.0, 2.0)  # the parent's 3 and the child's 5
    files = {p.name for p in tmp_path.iterdir()}
    assert f"histogram_{child}.db" in files  # the child wrote under its own id
    assert len([f for f in files if f.startswith("histogram_")]) == 2
