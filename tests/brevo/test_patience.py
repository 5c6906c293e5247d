"""Transient Brevo answers at start-up are waited out (issue 18, point 4): ``brevo setup``,
``doctor`` and the worker's set-up check retry 5xx, 429 and timeouts with backoff for
``brevo.startup_wait_seconds``; a definite answer (a 401, a missing attribute) stops them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from calendly_brevo.bootstrap import Services
from calendly_brevo.brevo.patience import wait_out
from calendly_brevo.errors import BrevoPermanentError, BrevoSetupError, BrevoTransientError
from tests.conftest import make_settings
from tests.e2e.stream import STREAM_CONFIG, STREAM_LISTS, setup_fake
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo

KEY = "xkeysib-patience-0123456789"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_transient_answers_are_retried_with_growing_backoff_until_one_succeeds() -> None:
    t = FakeTime()
    answers: list[Exception | str] = [
        BrevoTransientError("502", status=502),
        BrevoTransientError("timeout"),
        BrevoTransientError("429", status=429, delay=6.0),
        "ok",
    ]

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_out(call, what="test", budget_seconds=60, sleep=t.sleep, clock=t.clock) == "ok"
    assert t.slept == [1.0, 2.0, 6.0]  # backoff, and a 429's reset when it is longer


def test_a_definite_answer_stops_the_wait_at_once() -> None:
    t = FakeTime()

    def call() -> None:
        raise BrevoPermanentError("401", status=401)

    with pytest.raises(BrevoPermanentError):
        wait_out(call, what="test", budget_seconds=60, sleep=t.sleep, clock=t.clock)
    assert t.slept == []


def test_the_wait_gives_up_with_the_last_transient_error_once_the_budget_is_spent() -> None:
    t = FakeTime()
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise BrevoTransientError(f"502 #{calls}", status=502)

    with pytest.raises(BrevoTransientError, match="502 #"):
        wait_out(call, what="test", budget_seconds=30, sleep=t.sleep, clock=t.clock)
    assert sum(t.slept) <= 30
    assert t.slept == [1.0, 2.0, 4.0, 8.0, 15.0]  # a sixth wait would pass the budget


@pytest.fixture
def fake() -> Iterator[FakeBrevoServer]:
    with running_fake_brevo(api_key=KEY, lists=STREAM_LISTS) as server:
        yield server


def env_for(tmp_path: Path, fake: FakeBrevoServer, key: str = KEY) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(STREAM_CONFIG + "  startup_wait_seconds: 60\n")
    return {
        "CONNECTOR_CONFIG": str(config),
        "BREVO_API_KEY": key,
        "BREVO_API_URL": fake.base_url,
        "REDIS_URL": "",
        "DATABASE_URL": "",
    }


def statuses(fake: FakeBrevoServer) -> list[int]:
    return fake.call(lambda: [r.status for r in fake.state.requests])


def test_the_worker_start_check_waits_out_502s_and_then_starts(
    tmp_path: Path, fake: FakeBrevoServer
) -> None:
    from worker.runtime import check_brevo_ready

    setup_fake(fake)
    fake.inject("5xx", status=502, count=3)
    t = FakeTime()
    services = Services(make_settings(tmp_path, **env_for(tmp_path, fake)))
    try:
        check_brevo_ready(services, sleep=t.sleep)  # no BrevoSetupError
    finally:
        services.close()
    assert statuses(fake).count(502) == 3
    assert t.slept == [1.0, 2.0, 4.0]


def test_the_worker_start_check_stops_at_once_on_a_401(
    tmp_path: Path, fake: FakeBrevoServer
) -> None:
    from worker.runtime import check_brevo_ready

    t = FakeTime()
    services = Services(make_settings(tmp_path, **env_for(tmp_path, fake, key="xkeysib-wrong-99")))
    try:
        with pytest.raises(BrevoSetupError, match="401"):
            check_brevo_ready(services, sleep=t.sleep)
    finally:
        services.close()
    assert t.slept == []


def test_the_worker_start_check_still_refuses_a_missing_attribute_after_a_502(
    tmp_path: Path, fake: FakeBrevoServer
) -> None:
    from worker.runtime import check_brevo_ready

    fake.inject("5xx", status=502, count=1)  # no attributes set up: a definite "missing"
    t = FakeTime()
    services = Services(make_settings(tmp_path, **env_for(tmp_path, fake)))
    try:
        with pytest.raises(BrevoSetupError, match="missing attributes"):
            check_brevo_ready(services, sleep=t.sleep)
    finally:
        services.close()
    assert t.slept == [1.0]


def test_brevo_setup_waits_out_502s_and_creates_the_attributes(
    tmp_path: Path, fake: FakeBrevoServer
) -> None:
    from cli.main import cli

    fake.inject("5xx", status=502, count=2)
    env = env_for(tmp_path, fake) | {"CONNECTOR_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(cli, ["brevo", "setup"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "created attribute MEETING_DATE" in result.output
    assert statuses(fake).count(502) == 2


def test_doctor_waits_out_502s_before_judging_the_brevo_key(
    tmp_path: Path, fake: FakeBrevoServer
) -> None:
    from calendly_brevo.doctor import DoctorContext, check_brevo_attributes, check_brevo_key

    setup_fake(fake)
    fake.inject("5xx", status=502, count=2)
    t = FakeTime()
    services = Services(make_settings(tmp_path, **env_for(tmp_path, fake)))
    with httpx.Client(timeout=10) as http:
        ctx = DoctorContext(
            services.settings,
            http,
            engine_factory=lambda: services.engine,
            sessions_factory=lambda: services.sessions,
            sleep=t.sleep,
        )
        assert check_brevo_key(ctx).status == "OK"
        assert check_brevo_attributes(ctx).status == "OK"
    services.close()
    assert t.slept == [1.0, 2.0]
