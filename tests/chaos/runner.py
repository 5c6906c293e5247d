"""The chaos run: real receivers and workers on a private Redis and Postgres, under fire.

What happens (``ChaosRun(...).run()``):

1. A private Redis (AOF, ``appendfsync always``) and a private Postgres cluster start on free
   ports; ``calendly-brevo migrate``; the fake Brevo starts in this process, seeded, with raised
   rate limits and faults on every contact write, ``POST /events`` and ``GET /events``: 5%
   5xx, 3% 429, 1% timeouts (held past the client's timeout; half of them after Brevo applied
   the request, a lost answer) and permanent 400s on 2% of custom events (sticky per logical
   event, see ``FAULTS``): a ``POST /events`` answered 400, or an item of a
   ``POST /events/batch`` refused in a 207, whichever way the event travels.
2. Two ``calendly-brevo receiver`` processes and one ``calendly-brevo worker --processes 2``
   supervisor start. Senders POST every delivery (the logical events of
   :mod:`tests.chaos.scenario`, 10% of them twice) signed at send time, paced over
   ``send_seconds``, and resend anything that did not get a 2xx, like Calendly.
3. Meanwhile a worker child is SIGKILLed every ``kill_every`` seconds (the supervisor restarts
   it; its queue maintenance requeues the dead child's unacked messages once the heartbeat is
   stale), Redis is SIGKILLed and restarted once, Postgres is crash-stopped (``-m immediate``)
   and restarted once.
   ``calendly-brevo resync`` runs in a loop throughout (:mod:`tests.chaos.resync_loop`), and
   the workers run with ``sync.auto_resync`` on.
3b. The last kill, then no traffic (issue 18): a few duplicate deliveries go out while Brevo is
   slow, so workers hold messages; every worker child is SIGKILLed at once (so every ack set
   then in Redis is a dead worker's); nothing more is sent. The dead children's messages must
   be back on the queue within ``heartbeat_timeout_seconds + maintenance_interval_seconds``
   plus :data:`RECOVERY_MARGIN` (Dramatiq's chance maintenance is all but off in this config).
4. Drain: wait until no message is ready, delayed or unacked anywhere in Redis and every logical
   event is ``applied`` or ``dead`` in Postgres.
5. Check: dead letters == injected 400s; clear the faults, ``calendly-brevo dlq replay --all``,
   drain again; every logical event applied (lost = 0); the fake's contacts equal the model;
   the custom events fired equal the model's multiset; a last ``resync`` finds nothing to push.

Brevo's ``POST /events`` has no idempotency key, so a worker killed after Brevo took the event,
or an answer lost after it did, would fire the event twice on the next attempt. The worker looks
such in-doubt events up (``GET /events``) before sending again
(``calendly_brevo/event_send.py``); the run counts those lookups and allows no extra copy at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from calendly_brevo.config import Settings, load_settings
from calendly_brevo.signature import HEADER, sign
from tests.chaos import scenario as sc
from tests.chaos.infra import PrivatePostgres, PrivateRedis
from tests.chaos.resync_loop import ResyncFigures, ResyncLoop
from tests.e2e.procs import Proc, free_port, run_cli, wait_http
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo

SIGNING_KEY = "chaos-signing-key-Zq3v9XfT0pL8mN2bR6cW1yH4"
BREVO_KEY = "xkeysib-chaos-5f0c2d9e8b7a6f5e4d3c2b1a"
#: Marginal fault rates and rule options; rules fire in this order, so later ones are
#: conditioned on the rest. The permanent 400s hit ``POST /events`` (2 % of them: about 1 % of
#: all requests) and are *sticky*, as a real validation error is: the same logical event
#: (``connector_event_id``) gets the same 400 on every later attempt until the faults are
#: cleared. A random one-off 400 that reached a worker killed before it could read it would be
#: retried, succeed, and leave no dead letter for an injected fault.
FAULTS: tuple[tuple[str, float, dict[str, Any]], ...] = (
    ("5xx", 0.05, {}),
    ("429", 0.03, {}),
    ("timeout", 0.005, {"apply_effect": False}),  # the request is lost
    ("timeout", 0.005, {"apply_effect": True}),  # Brevo applied it; the answer is lost
    ("400", 0.02, {"family": "events", "sticky": "event_properties.connector_event_id"}),
)
#: Counted in the report: that the bulk paths were taken, not just available.
BULK_ROUTES = ("/v3/events/batch", "/v3/contacts/batch", "/v3/contacts/import", "/v3/contacts")
#: With ``live_imports``: how long the fake takes to apply an import (Brevo's are asynchronous).
IMPORT_DELAY = 0.3
#: What a busy machine may add to the recovery bound (the supervisor's timer thread, a fetch).
RECOVERY_MARGIN = 8.0
#: Contact writes and custom events (and their lookups); not the set-up reads.
FAULT_PATH = r"^/v3/(events|contacts(/(?!attributes$|lists$)[^/]+)?)$"


@dataclass
class Report:
    logical: int = 0
    sent: int = 0
    duplicates: int = 0
    pairs_cancel_first: int = 0
    pairs_create_first: int = 0
    http_503: int = 0
    http_other_errors: int = 0
    resends: int = 0
    kills: int = 0
    redis_restarts: int = 0
    postgres_restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    applied_before_replay: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    applied: int = 0
    lost: int = 0
    expected_custom_events: int = 0
    fired_custom_events: int = 0
    duplicated_effects: int = 0
    repeated_400s: int = 0
    #: Injected 400s that fell on an item of ``POST /events/batch`` (answered 207).
    batch_item_400s: int = 0
    lost_answers: int = 0
    lookups: int = 0
    #: Requests by bulk route: /events/batch, /contacts/batch, /contacts/import, GET /contacts.
    bulk: dict[str, int] = field(default_factory=dict)
    missing_effects: int = 0
    contact_mismatches: list[str] = field(default_factory=list)
    dramatiq_dead: int = 0
    spec_violations: int = 0
    seconds: float = 0.0
    kinds: str = ""
    held_at_last_kill: int = 0
    recovery_seconds: float = 0.0
    recovery_bound: float = 0.0
    resync: ResyncFigures = field(default_factory=ResyncFigures)

    def summary(self) -> str:
        lines = [
            f"chaos run: {self.logical} logical events ({self.kinds}) in {self.seconds:.0f}s",
            f"  sent {self.sent} deliveries ({self.duplicates} duplicates, "
            f"reschedule pairs cancel-first {self.pairs_cancel_first} / "
            f"create-first {self.pairs_create_first}), resends {self.resends}, "
            f"503s {self.http_503}, other errors {self.http_other_errors}",
            f"  chaos: {self.kills} worker SIGKILLs, {self.redis_restarts} Redis restart, "
            f"{self.postgres_restarts} Postgres restart; Brevo faults {self.faults} "
            f"(and the same 400 again on {self.repeated_400s} later attempts; "
            f"{self.batch_item_400s} of the 400s were items of a 207)",
            f"  applied before replay {self.applied_before_replay}, dead-lettered "
            f"{self.dead_lettered} {self.dead_letter_reasons}, replayed {self.replayed}, "
            f"applied {self.applied}, lost {self.lost}",
            f"  custom events: expected {self.expected_custom_events}, fired "
            f"{self.fired_custom_events}, duplicated {self.duplicated_effects}, "
            f"missing {self.missing_effects}; in-doubt lookups (GET /events) {self.lookups}, "
            f"answers lost after Brevo applied the request {self.lost_answers}",
            f"  last kill with no traffic after it: {self.held_at_last_kill} messages held, "
            f"requeued after {self.recovery_seconds:.1f}s (bound {self.recovery_bound:.0f}s "
            f"+ {RECOVERY_MARGIN:.0f}s margin)",
            f"  bulk requests: {self.bulk}",
            f"  contacts differing from the model: {len(self.contact_mismatches)}; "
            f"dramatiq dead-letter queue {self.dramatiq_dead}; spec violations "
            f"{self.spec_violations}",
            self.resync.summary(),
        ]
        return "\n".join(lines)

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{self.lost} events lost")
        if self.duplicated_effects:
            found.append(f"{self.duplicated_effects} custom events fired more than once")
        if self.missing_effects:
            found.append(f"{self.missing_effects} custom events never fired")
        if self.contact_mismatches:
            found.append("contacts differ: " + "; ".join(self.contact_mismatches[:10]))
        if self.dead_lettered != self.faults.get("400", 0):
            found.append(
                f"dead letters {self.dead_lettered} != injected 400s {self.faults.get('400', 0)}"
            )
        if set(self.dead_letter_reasons) - {"brevo_permanent"}:
            found.append(f"unexpected dead-letter reasons {self.dead_letter_reasons}")
        if self.http_other_errors:
            found.append(f"{self.http_other_errors} receiver answers other than 2xx/503")
        if self.dramatiq_dead:
            found.append(f"{self.dramatiq_dead} messages in Dramatiq's dead-letter queue")
        if self.spec_violations:
            found.append(f"{self.spec_violations} requests violated Brevo's spec")
        if not self.held_at_last_kill:
            found.append("no worker held a message at the last kill: recovery was not tested")
        elif self.recovery_seconds > self.recovery_bound + RECOVERY_MARGIN:
            found.append(
                f"a killed worker's messages came back after {self.recovery_seconds:.1f}s, "
                f"past the bound {self.recovery_bound:.0f}s + {RECOVERY_MARGIN:.0f}s"
            )
        return found + self.resync.problems()


class ChaosRun:
    def __init__(
        self,
        workdir: Path,
        *,
        events: int = 300,
        seed: int = 1,
        send_seconds: float = 40.0,
        kill_every: float = 4.0,
        drain_timeout: float = 180.0,
        worker_processes: int = 2,
        worker_threads: int = 4,
        senders: int = 8,
        live_imports: bool = False,
    ) -> None:
        self.workdir = workdir
        self.events = events
        self.seed = seed
        self.send_seconds = send_seconds
        self.kill_every = kill_every
        self.drain_timeout = drain_timeout
        self.worker_processes = worker_processes
        self.worker_threads = worker_threads
        self.senders = senders
        #: ``brevo.batch.live_imports`` on, with Brevo taking IMPORT_DELAY to apply an import.
        self.live_imports = live_imports
        self.report = Report()
        self._lock = threading.Lock()
        self.log_lines: list[str] = []

    # -- helpers -----------------------------------------------------------------------------
    def say(self, message: str) -> None:
        line = f"[chaos {time.strftime('%H:%M:%S')}] {message}"
        self.log_lines.append(line)
        print(line, flush=True)

    def _settings(self, env: dict[str, str]) -> Settings:
        return load_settings(str(self.config_path), env=env)

    def _worker_children(self, supervisor: Proc) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == supervisor.popen.pid and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return sorted(pids)

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.yaml"
        config = sc.CONFIG
        if self.live_imports:
            config = config.replace("\nbrevo:\n", "\nbrevo:\n  batch: {live_imports: true}\n", 1)
        self.config_path.write_text(config)
        rng = random.Random(self.seed)
        scenario = sc.build(self.events, self.seed)
        redis_srv = PrivateRedis(self.workdir).start()
        pg = PrivatePostgres(self.workdir).start()
        procs: list[Proc] = []
        try:
            with running_fake_brevo(
                api_key=BREVO_KEY,
                lists=sc.LISTS,
                seed=self.seed,
                timeout_hold_seconds=3.0,
                validate_responses=False,
            ) as fake:
                self._run(scenario, fake, redis_srv, pg, procs, rng)
        finally:
            for proc in procs:
                proc.stop(timeout=20)
            redis_srv.stop()
            pg.stop()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _run(
        self,
        scenario: sc.Scenario,
        fake: FakeBrevoServer,
        redis_srv: PrivateRedis,
        pg: PrivatePostgres,
        procs: list[Proc],
        rng: random.Random,
    ) -> None:
        r = self.report
        for name, kind in sc.ATTRIBUTES:
            fake.add_attribute(name, kind)
        if self.live_imports:
            fake.call(setattr, fake.state, "import_delay_seconds", IMPORT_DELAY)
        for family in ("contacts", "events"):
            fake.set_limit(family, 300, 1.0)
        # Brevo's "other" window is an hour; a 429 there pauses the family until its reset, so
        # an injected one on a GET /events lookup would stall the run for up to an hour.
        fake.set_limit("other", 10_000, 10.0)
        ports = [free_port(), free_port()]
        metrics_port = free_port()
        env = {
            "CONNECTOR_CONFIG": str(self.config_path),
            "CONNECTOR_DATA_DIR": str(self.workdir / "data"),
            "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "BREVO_API_KEY": BREVO_KEY,
            "BREVO_API_URL": fake.base_url,
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis_srv.url,
            "METRICS_PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prom"),
            "LOG_FORMAT": "json",
        }
        settings = self._settings(env)
        sc.annotate(scenario, settings)
        migrated = run_cli(["migrate"], env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for i, port in enumerate(ports):
            procs.append(Proc(["receiver"], env | {"PORT": str(port)}, self.log(f"receiver{i}")))
        worker_args = ["worker", "--processes", str(self.worker_processes)]
        worker_args += ["--threads", str(self.worker_threads)]
        supervisor = Proc(worker_args, env, self.log("worker"))
        procs.append(supervisor)
        for port, proc in zip(ports, procs, strict=False):
            wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=60)
        wait_http(f"http://127.0.0.1:{metrics_port}/healthz", supervisor, timeout=60)
        self.say(f"{len(scenario.events)} logical events, {len(scenario.order)} deliveries")

        # Faults only once everything is up: the worker's set-up check must pass.
        remaining = 1.0
        for kind, p, options in FAULTS:
            fake.inject(kind, path=FAULT_PATH, probability=min(1.0, p / remaining), **options)
            remaining -= p

        r.logical = len(scenario.events)
        r.sent = len(scenario.order)
        r.duplicates = scenario.duplicates
        r.pairs_cancel_first = scenario.pairs_cancel_first
        r.pairs_create_first = scenario.pairs_create_first
        r.kinds = sc.describe(scenario)

        done = threading.Event()
        chaos = threading.Thread(
            target=self._chaos, args=(supervisor, redis_srv, pg, done, rng), daemon=True
        )
        chaos.start()
        resyncs = ResyncLoop(
            env, pg.url, self.log("resync")
        ).start()  # resync races the live events throughout
        self._send_all(scenario, ports)
        self.say("all deliveries accepted")
        done.set()
        chaos.join(timeout=120)
        resyncs.stop()
        assert not chaos.is_alive(), "the chaos thread did not finish"
        assert supervisor.alive(), "the worker supervisor died:\n" + supervisor.log()[-3000:]

        ids = [e.event_id for e in scenario.events]
        rds = redis.Redis.from_url(redis_srv.url, socket_timeout=5)
        self._last_kill_then_silence(scenario, ports, supervisor, fake, rds, settings, rng)
        self._drain(rds, pg.url, ids)
        statuses = self._statuses(pg.url, ids)
        r.applied_before_replay = sum(1 for s in statuses.values() if s == "applied")
        snapshot = fake.snapshot()
        faults = Counter(f["kind"] for f in snapshot["faults"] if not f["repeat"])
        r.faults = dict(faults)
        r.repeated_400s = sum(1 for f in snapshot["faults"] if f["repeat"])
        r.batch_item_400s = sum(
            1 for f in snapshot["faults"] if f["path"] == "/v3/events/batch" and not f["repeat"]
        )
        r.lost_answers = sum(
            1 for f in snapshot["faults"] if f["kind"] == "timeout" and f["effect_applied"]
        )
        with psycopg.connect(pg.url) as conn:
            # Events' dead letters; a looping resync's failed pushes are counted apart.
            rows = conn.execute(
                "SELECT reason FROM dead_letters WHERE source <> 'resync'"
            ).fetchall()
        r.dead_lettered = len(rows)
        r.dead_letter_reasons = dict(Counter(row[0] for row in rows))
        self.say(f"drained; dead letters {r.dead_lettered}, faults {r.faults}")

        fake.clear_faults()
        replayed = run_cli(["dlq", "replay", "--all"], env)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        r.replayed = int(replayed.stdout.split("replayed ", 1)[1].split()[0])
        self._drain(rds, pg.url, ids, allow_dead=False)
        statuses = self._statuses(pg.url, ids)
        r.applied = sum(1 for s in statuses.values() if s == "applied")
        r.lost = len(ids) - r.applied
        r.dramatiq_dead = int(rds.zcard("dramatiq:calendly.XQ"))
        rds.close()

        snapshot = fake.snapshot()
        r.spec_violations = len(snapshot["violations"])
        r.lookups = sum(
            1
            for q in snapshot["requests"]
            if q["method"] == "GET" and q["path"] == "/v3/events" and q["status"] == 200
        )
        r.bulk = dict(
            Counter(
                f"{q['method']} {q['path']}"
                for q in snapshot["requests"]
                if q["path"] in BULK_ROUTES and q["status"] < 300
            )
        )
        r.contact_mismatches = sc.contact_diff(
            sc.expected_contacts(scenario, settings), snapshot["contacts"]
        )
        self._check_effects(scenario, snapshot["events"])
        resyncs.final()
        r.resync = resyncs.figures
        after = fake.snapshot()  # the final resync changed nothing the run checked
        r.contact_mismatches += sc.contact_diff(
            sc.expected_contacts(scenario, settings), after["contacts"]
        )
        r.duplicated_effects += len(after["events"]) - len(snapshot["events"])
        assert supervisor.alive()

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # -- sending -----------------------------------------------------------------------------
    def _send_all(self, scenario: sc.Scenario, ports: list[int]) -> None:
        interval = self.send_seconds / max(1, len(scenario.order))
        start = time.monotonic()
        clients = [httpx.Client(timeout=10) for _ in range(self.senders)]
        local = threading.local()
        counter = iter(range(10**9))

        def client() -> httpx.Client:
            if not hasattr(local, "client"):
                local.client = clients[next(counter) % len(clients)]
            return local.client  # type: ignore[no-any-return]

        def deliver(n: int, index: int) -> None:
            raw = scenario.body(index)
            attempt = 0
            while True:
                port = ports[(n + attempt) % len(ports)]
                headers = {HEADER: sign(SIGNING_KEY, raw, int(time.time()))}
                headers["Content-Type"] = "application/json"
                try:
                    resp = client().post(
                        f"http://127.0.0.1:{port}/webhooks/calendly", content=raw, headers=headers
                    )
                    status = resp.status_code
                except httpx.HTTPError:
                    status = 0
                if 200 <= status < 300:
                    return
                with self._lock:
                    self.report.resends += 1
                    if status == 503:
                        self.report.http_503 += 1
                    elif status != 0:
                        self.report.http_other_errors += 1
                attempt += 1
                time.sleep(min(2.0, 0.1 * attempt))

        with ThreadPoolExecutor(self.senders) as pool:
            futures = []
            for n, index in enumerate(scenario.order):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(deliver, n, index))
            for future in futures:
                future.result(timeout=300)
        for c in clients:
            c.close()

    # -- chaos -------------------------------------------------------------------------------
    def _chaos(
        self,
        supervisor: Proc,
        redis_srv: PrivateRedis,
        pg: PrivatePostgres,
        done: threading.Event,
        rng: random.Random,
    ) -> None:
        start = time.monotonic()
        redis_at, pg_at = 0.35 * self.send_seconds, 0.65 * self.send_seconds
        next_kill = self.kill_every
        redis_done = pg_done = False
        while True:
            elapsed = time.monotonic() - start
            if done.is_set() and redis_done and pg_done:
                break
            if not redis_done and elapsed >= redis_at:
                self.say("SIGKILL Redis")
                redis_srv.restart(down_seconds=2.0)
                self.report.redis_restarts += 1
                redis_done = True
                self.say("Redis back")
            elif not pg_done and elapsed >= pg_at:
                self.say("crash-stop Postgres")
                pg.restart(mode="immediate", down_seconds=2.0)
                self.report.postgres_restarts += 1
                pg_done = True
                self.say("Postgres back")
            elif elapsed >= next_kill:
                children = self._worker_children(supervisor)
                if children:
                    victim = rng.choice(children)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                    self.report.kills += 1
                next_kill += self.kill_every * rng.uniform(0.6, 1.4)
            time.sleep(0.1)

    def _last_kill_then_silence(
        self,
        scenario: sc.Scenario,
        ports: list[int],
        supervisor: Proc,
        fake: FakeBrevoServer,
        rds: redis.Redis,
        settings: Settings,
        rng: random.Random,
    ) -> None:
        """Kill every worker child while they hold messages, send nothing more, and time how
        long the dead children's messages take to get back on the queue."""
        r = self.report
        w = settings.worker
        r.recovery_bound = w.heartbeat_timeout_seconds + w.maintenance_interval_seconds
        fake.inject("slow", path=FAULT_PATH, delay=1.5, count=60)  # workers hold what they fetch
        last_traffic = rng.sample(range(len(scenario.events)), min(12, len(scenario.events)))
        for n, index in enumerate(last_traffic):  # duplicates: no new effect, but messages
            self._post_until_accepted(scenario.body(index), ports[n % len(ports)])
        deadline = time.monotonic() + 60
        children = self._worker_children(supervisor)
        # Every child up (none mid-restart, which would survive the kill) and something held.
        while time.monotonic() < deadline and (
            len(children) < self.worker_processes or self._held(rds) == {}
        ):
            time.sleep(0.05)
            children = self._worker_children(supervisor)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        r.kills += len(children)
        # Every ack set in Redis now is a dead child's: the supervisor holds none, and the
        # children it restarts are not up yet.
        held = self._held(rds)
        r.held_at_last_kill = sum(len(members) for members in held.values())
        self.say(f"last kill: {len(children)} worker processes holding {r.held_at_last_kill}")
        deadline = killed_at + r.recovery_bound + RECOVERY_MARGIN + 60
        while time.monotonic() < deadline:
            if all(int(rds.scard(key)) == 0 for key in held):
                break
            time.sleep(0.2)
        r.recovery_seconds = time.monotonic() - killed_at
        self.say(f"the dead workers' messages were requeued after {r.recovery_seconds:.1f}s")

    def _held(self, rds: redis.Redis) -> dict[bytes | str, set[bytes | str]]:
        held: dict[bytes | str, set[bytes | str]] = {}
        for key in rds.scan_iter("dramatiq:__acks__.*"):
            members = rds.smembers(key)
            if members:
                held[key] = set(members)
        return held

    def _post_until_accepted(self, raw: bytes, port: int) -> None:
        with httpx.Client(timeout=10) as client:
            for attempt in range(1, 60):
                headers = {HEADER: sign(SIGNING_KEY, raw, int(time.time()))}
                headers["Content-Type"] = "application/json"
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{port}/webhooks/calendly"
                    if 200 <= client.post(url, content=raw, headers=headers).status_code < 300:
                        return
                time.sleep(min(2.0, 0.1 * attempt))
        raise AssertionError("a receiver did not accept a delivery for a minute")

    # -- observing ---------------------------------------------------------------------------
    def _statuses(self, pg_url: str, ids: list[str]) -> dict[str, str]:
        with psycopg.connect(pg_url, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT event_id, status FROM processed_events WHERE event_id = ANY(%s)", (ids,)
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def _pending(self, rds: redis.Redis) -> int:
        total = int(rds.llen("dramatiq:calendly")) + int(rds.llen("dramatiq:calendly.DQ"))
        for key in rds.scan_iter("dramatiq:__acks__.*"):
            total += int(rds.scard(key))
        return total

    def _drain(
        self, rds: redis.Redis, pg_url: str, ids: list[str], *, allow_dead: bool = True
    ) -> None:
        deadline = time.monotonic() + self.drain_timeout
        terminal = {"applied", "dead"} if allow_dead else {"applied"}
        quiet_since: float | None = None
        last = ""
        while time.monotonic() < deadline:
            try:
                pending = self._pending(rds)
                statuses = self._statuses(pg_url, ids)
            except (redis.RedisError, psycopg.Error, OSError):
                time.sleep(0.5)
                continue
            open_ = [i for i in ids if statuses.get(i) not in terminal]
            last = f"pending messages {pending}, unfinished events {len(open_)}"
            if pending == 0 and not open_:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 2.0:
                    return
            else:
                quiet_since = None
            time.sleep(0.5)
        raise AssertionError(f"not drained after {self.drain_timeout}s: {last}")

    def _check_effects(self, scenario: sc.Scenario, fired: list[dict[str, Any]]) -> None:
        r = self.report
        expected = sc.expected_events(scenario)
        actual = Counter(sc.fired_key(e) for e in fired)
        r.expected_custom_events = sum(expected.values())
        r.fired_custom_events = sum(actual.values())
        r.missing_effects = sum((expected - actual).values())
        extra = actual - expected
        r.duplicated_effects = sum(extra.values())
        for key, copies in extra.items():
            self.say(f"custom event fired {copies} extra time(s): {key}")


def main() -> None:  # pragma: no cover - manual runs
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--send-seconds", type=float, default=40.0)
    parser.add_argument("--kill-every", type=float, default=4.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    run = ChaosRun(
        workdir,
        events=args.events,
        seed=args.seed,
        send_seconds=args.send_seconds,
        kill_every=args.kill_every,
    )
    report = run.run()
    print(report.summary())
    print(json.dumps(report.problems(), indent=2))
    print(f"logs in {workdir}")


if __name__ == "__main__":  # pragma: no cover
    main()
