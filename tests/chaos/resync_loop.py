"""``calendly-brevo resync`` run over and over during the chaos run, and once more at the end.

While events are sent, workers killed and Redis and Postgres restarted, a thread runs the
``resync`` command in a loop (a run that dies with Postgres or Redis just ends; the next one
resumes). A resync reads the stored state under the contact lock and pushes contacts whose
projection differs from the last push (every other run: every contact, ``--all``), so it races
the live events of the same contacts; it
must change nothing the run checks: no event lost, no custom event fired (resync never sends
one, let alone twice), the fake's contacts equal to the model.

At the end, with the faults cleared and everything applied, one more ``resync`` runs; it must
fail nothing, change nothing the run checks (the fake's contacts still equal the model, no
custom event fired), and resolve every ``resync_failed`` dead letter a looping run left (a push
whose three tries all met injected faults): those are not events, and are counted apart from
the events' dead letters. It may push a few contacts: the worker records what it pushed in a
commit after the upsert's, so a worker killed (or a Postgres crash) between the two leaves the
record one push behind, which ``resync`` pushes again (an idempotent upsert; see
``worker/pipeline.py``'s ``_upsert``). Their number is reported.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.e2e.procs import run_cli

#: Between two looping runs.
PAUSE_SECONDS = 0.5


@dataclass
class ResyncFigures:
    runs: int = 0
    #: Runs that ended with exit 1 or worse (Postgres or Redis down mid-run, a failed push).
    interrupted: int = 0
    changed: int = 0
    calls: int = 0
    dead_letters: int = 0
    final_changed: int = -1
    final_failures: int = -1
    open_after_final: int = -1

    def summary(self) -> str:
        return (
            f"  resync during the run: {self.runs} runs ({self.interrupted} interrupted), "
            f"{self.changed} contacts pushed in {self.calls} calls, {self.dead_letters} "
            f"resync dead letters; final resync changed {self.final_changed}, failures "
            f"{self.final_failures}, resync dead letters left open {self.open_after_final}"
        )

    def problems(self) -> list[str]:
        found = []
        if self.runs == 0:
            found.append("resync never ran during the chaos run")
        if self.final_failures != 0:
            found.append(f"the final resync failed {self.final_failures} pushes")
        if self.open_after_final != 0:
            found.append(f"{self.open_after_final} resync dead letters left open")
        return found


class ResyncLoop:
    def __init__(self, env: dict[str, str], pg_url: str, log_path: Path) -> None:
        self.env = env
        self.pg_url = pg_url
        self.log_path = log_path
        self.figures = ResyncFigures()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resync-loop", daemon=True)

    def start(self) -> ResyncLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No new run; the one under way finishes (:meth:`final` waits for it)."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Every other run pushes every contact's whole projection (--all): real Brevo
            # writes racing the live events of the same contacts, not only a diff of nothing.
            self._run("--all" if self.figures.runs % 2 else "--changed")
            self._stop.wait(PAUSE_SECONDS)

    def _run(self, mode: str = "--changed") -> dict[str, int] | None:
        f = self.figures
        f.runs += 1
        try:
            result = run_cli(["resync", mode, "--json"], self.env, timeout=300)
        except subprocess.TimeoutExpired:
            f.interrupted += 1
            self._note(mode, "timed out")
            return None
        self._note(mode, f"exit {result.returncode}: {result.stdout[:200]} {result.stderr[-600:]}")
        if result.returncode != 0:
            f.interrupted += 1
        try:
            summary = json.loads(result.stdout)
        except ValueError as exc:
            self._note(mode, f"no summary ({exc}); stdout ends {result.stdout[-300:]!r}")
            return None  # died before its summary (a store restarting)
        f.changed += int(summary["changed"])
        f.calls += int(summary["calls"])
        f.dead_letters += len(summary["dead_letters"])
        if mode == "--changed" and self._stop.is_set():  # the final run: say whom it pushed
            self._note(mode, "pushed " + ", ".join(c["email"] for c in summary["contacts"]))
        return {"changed": int(summary["changed"]), "failures": int(summary["failures"])}

    def _note(self, mode: str, what: str) -> None:
        with self.log_path.open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} resync {mode}: {what}\n")

    def final(self) -> None:
        """The last run, with the faults cleared and everything applied."""
        self._thread.join(timeout=300)
        assert not self._thread.is_alive(), "the resync loop did not stop"
        last = self._run()
        assert last is not None, "the final resync printed no summary"
        self.figures.final_changed = last["changed"]
        self.figures.final_failures = last["failures"]
        self.figures.open_after_final = open_resync_dead_letters(self.pg_url)


def open_resync_dead_letters(pg_url: str) -> int:
    with psycopg.connect(pg_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE source = 'resync' AND replayed_at IS NULL"
        ).fetchone()
    return int(row[0]) if row else 0
