"""The receiver benchmark's baseline: a bare aiohttp server whose handler only reads the body.

    python -m benchmarks.bare --port 8090

Same aiohttp, same ``web.run_app`` options as ``calendly-brevo receiver`` (no access log), same
route; no signature check, no JSON, no queue, no metrics. Answers ``202`` with a small body of
the size the receiver sends.
"""

from __future__ import annotations

import argparse

from aiohttp import web

ANSWER = b'{"status":"accepted","message_id":"00000000-0000-0000-0000-000000000000"}'


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, status=202, content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = web.Application()
    app.router.add_post("/webhooks/calendly", handle)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
