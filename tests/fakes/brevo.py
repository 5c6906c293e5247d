"""A fake Brevo API v3 for tests and the demo: the public entry points.

    with running_fake_brevo(api_key="k", lists={10: "Booked"}) as brevo:
        httpx.post(f"{brevo.base_url}/contacts", headers={"api-key": "k"}, json={...})
        assert brevo.state.violations == []

- :class:`FakeBrevo` (``brevo_state``): the account's state and the fake's knobs.
- :func:`create_fake_brevo_app` (``brevo_app``): the aiohttp app, for ``aiohttp_client``.
- :func:`running_fake_brevo` / :class:`FakeBrevoServer`: the app on 127.0.0.1 on a free port,
  in a background thread with its own event loop; works as ``with`` and ``async with``.
- ``python -m tests.fakes.brevo --port 8081 [--api-key K] [--lists 10,11]`` serves it.

Module map: ``openapi_validation`` (spec, cached per process), ``brevo_records`` (dataclasses),
``brevo_faults`` (rate windows, fault rules), ``brevo_ops`` (Brevo's semantics),
``brevo_control`` (``/__fake__/``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.brevo_app import create_fake_brevo_app
from tests.fakes.brevo_faults import FaultRule
from tests.fakes.brevo_records import Attribute, Family
from tests.fakes.brevo_state import FakeBrevo
from tests.fakes.threaded import ThreadedServer

__all__ = [
    "Attribute",
    "FakeBrevo",
    "FakeBrevoServer",
    "create_fake_brevo_app",
    "main",
    "running_fake_brevo",
]

T = TypeVar("T")


class FakeBrevoServer(ThreadedServer):
    """The fake on 127.0.0.1 in a daemon thread with its own event loop.

    ``state`` is mutated only on that loop. Use :meth:`call` (or the helpers built on it) to
    change it while the server runs; plain reads of ``state`` from the test are fine when no
    request is in flight, and :meth:`snapshot` gives a consistent copy at any time.
    """

    name = "fake Brevo"

    def __init__(self, state: FakeBrevo, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.state = state

    def make_app(self) -> web.Application:
        return create_fake_brevo_app(self.state)

    @property
    def base_url(self) -> str:
        """Brevo's base URL on the fake: ``http://127.0.0.1:PORT/v3`` (control API at
        ``url + "/__fake__"``)."""
        return f"{self.url}/v3"

    def snapshot(self) -> dict[str, Any]:
        return self.call(self.state.snapshot)

    def inject(self, kind: str, **options: Any) -> FaultRule:
        return self.call(self.state.inject, kind, **options)

    def clear_faults(self) -> None:
        self.call(self.state.clear_faults)

    def set_limit(self, family: Family, limit: int, window_seconds: float) -> None:
        self.call(self.state.set_limit, family, limit, window_seconds)

    def add_list(self, name: str | None = None, *, list_id: int | None = None) -> int:
        return self.call(self.state.add_list, name, list_id=list_id)

    def add_attribute(self, name: str, type: str = "text", category: str = "normal") -> None:
        self.call(self.state.add_attribute, name, type, category)

    def reset(self) -> None:
        self.call(self.state.reset)


@contextmanager
def running_fake_brevo(
    state: FakeBrevo | None = None, *, port: int = 0, **options: Any
) -> Iterator[FakeBrevoServer]:
    """Start a fake Brevo (``options`` go to :class:`FakeBrevo`), stop it on exit.

    In async tests ``async with FakeBrevoServer(FakeBrevo(...))`` avoids blocking the loop
    while the server thread starts and stops; the plain ``with`` works there too.
    """
    if state is not None and options:
        raise TypeError(f"pass either state or FakeBrevo options, not both: {sorted(options)}")
    server = FakeBrevoServer(state or FakeBrevo(**options), port=port)
    with server:
        yield server


def _parse_lists(text: str) -> dict[int, str]:
    return {int(part): f"List {int(part)}" for part in text.split(",") if part.strip()}


async def _serve_forever(state: FakeBrevo, host: str, port: int) -> None:
    runner = web.AppRunner(create_fake_brevo_app(state), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    print(
        f"fake Brevo listening on http://{host}:{bound}/v3 "
        f"(control: http://{host}:{bound}/__fake__/state)",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.brevo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--api-key", default=None, help="require this api-key header")
    parser.add_argument(
        "--lists",
        type=_parse_lists,
        default={},
        help="comma-separated list ids to pre-create, e.g. 10,11",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    parser.add_argument(
        "--import-delay",
        type=float,
        default=0.0,
        help="seconds before an accepted POST /contacts/import is applied (Brevo's imports "
        "are asynchronous)",
    )
    args = parser.parse_args(argv)
    state = FakeBrevo(api_key=args.api_key, lists=args.lists, seed=args.seed)
    state.import_delay_seconds = args.import_delay
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(state, args.host, args.port))


if __name__ == "__main__":
    main()
