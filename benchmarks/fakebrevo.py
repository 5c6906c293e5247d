"""The tests' fake Brevo (``tests.fakes.brevo``: OpenAPI validation, per-family fixed-window rate
limits with ``x-sib-ratelimit-*`` headers, 429 over the limit) as a separate process, driven
through its control API. Used where the benchmark is about rate limits (``ratelimit``,
``burst``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ATTRIBUTES, BREVO_KEY, LIST_ID, PY, running, wait_http


class FakeBrevoProc:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v3"

    def control(self, path: str, body: dict[str, Any]) -> None:
        r = httpx.post(f"{self.url}/__fake__/{path}", json=body, timeout=30)
        r.raise_for_status()

    def set_limit(self, family: str, limit: int, window: float = 1.0) -> None:
        self.control("limits", {"family": family, "limit": limit, "window_seconds": window})

    def state(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/__fake__/state", timeout=120)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


@contextmanager
def fake_brevo(
    port: int, workdir: Path, *, rate: int, import_delay: float = 0.0
) -> Iterator[FakeBrevoProc]:
    argv = [PY, "-m", "tests.fakes.brevo", "--port", str(port), "--api-key", BREVO_KEY]
    argv += ["--lists", str(LIST_ID), "--import-delay", str(import_delay)]
    with running(argv, {}, workdir / "fake-brevo.log") as proc:
        fake = FakeBrevoProc(port)
        wait_http(f"{fake.url}/__fake__/state", proc)
        for name, kind in ATTRIBUTES:
            fake.control("attributes", {"name": name, "type": kind})
        for family in ("contacts", "events"):
            fake.set_limit(family, rate)
        yield fake


def rate_config(
    rate: int,
    *,
    live_imports: bool = False,
    batch: bool = True,
    base: str | None = None,
    margin: float | None = None,
) -> str:
    """The benchmark config (or ``base``) with the worker's buckets at ``rate`` per second per
    family (and ``brevo.batch.live_imports`` on when asked, ``brevo.batch.enabled: false``
    without ``batch``, ``brevo.rate_margin`` when given)."""
    from benchmarks.common import CONFIG

    return (base or CONFIG) + (
        "brevo:\n  rate_limits:\n"
        f"    contacts: {{rate: {rate}, burst: {rate}}}\n"
        f"    events: {{rate: {rate}, burst: {rate}}}\n"
        + ("  batch: {live_imports: true}\n" if live_imports else "")
        + ("  batch: {enabled: false}\n" if not batch else "")
        + (f"  rate_margin: {margin}\n" if margin is not None else "")
    )


#: The worker's buckets far above anything a benchmark reaches: for runs against the zero-latency
#: stand-in, where the pipeline and not Brevo's limits must be what is measured.
UNLIMITED_RATE = 100_000
UNLIMITED = rate_config(UNLIMITED_RATE)


def add_import_arguments(parser: Any) -> None:
    """``--live-imports``, ``--import-delay`` and ``--rate-margin``, for the benchmarks that run
    the fake Brevo."""
    parser.add_argument(
        "--live-imports",
        action="store_true",
        help="brevo.batch.live_imports: first-time contacts through POST /contacts/import",
    )
    parser.add_argument(
        "--import-delay",
        type=float,
        default=0.0,
        help="seconds the fake Brevo takes to apply an import (Brevo's are asynchronous)",
    )
    parser.add_argument(
        "--rate-margin",
        type=float,
        default=None,
        help="brevo.rate_margin (default: the config's): the jitter a request may reach Brevo "
        "with and still count in its own window",
    )


def work_calls(state: dict[str, Any]) -> Counter[str]:
    """Requests per family in a fake Brevo's ``state``: every write, and the reads that confirm
    imports (``GET /contacts``), not the worker's set-up reads."""
    return Counter(
        r["family"]
        for r in state["requests"]
        if r["method"] != "GET" or r["path"] == "/v3/contacts"
    )
