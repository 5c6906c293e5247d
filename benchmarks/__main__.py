"""``python -m benchmarks [BENCH ...] [--quick] [--long] [--results PATH]``

Runs the benchmarks named (all of them by default, in the order below) and prints one table:
every figure with its baseline (measured in the same run) and its target. Exits 0 even when a
target is missed (the row says MISSED); exits 1 only on bad arguments.

    receiver   1. webhooks/s through the receiver vs a bare aiohttp handler; p99 at 1,000/s
    pipeline   2. events/s applied by 1 and 2 worker processes vs a no-op Dramatiq actor
    ratelimit  3. 4 worker processes against a fake Brevo enforcing R: achieved rate, 429s
    burst      4. 2,000 bookings in 10 s: time to apply all vs the rate-limit floor
    memory     5. RSS of a receiver and a worker under steady load, peak and growth
    backfill   6. 10,000 invitees from the fake Calendly to applied, with the API calls made
    resync     7. 10,000 stored contacts, all changed, resynced at R = 10/s: time vs the floor
                  (about 17 minutes: the floor alone is 1,000 s; --quick: 500 contacts)

Each can run alone with its own options: ``python -m benchmarks ratelimit --help``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from benchmarks.common import Row, error_row, log, machine, result_json, table

NAMES = ("receiver", "pipeline", "ratelimit", "burst", "memory", "backfill", "resync")
BENCHES: dict[str, ModuleType] = {
    name: importlib.import_module(f"benchmarks.{name}") for name in NAMES
}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = {}
    for name, module in BENCHES.items():
        sub = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", add_help=True)
        module.add_arguments(sub)
        subs[name] = sub
    return parser, subs


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--long", action="store_true", help="the 5-minute memory run")
    parser.add_argument("--results", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subs = _parser()
    _common(parser)
    # Split: global flags anywhere; "NAME [its options]" groups.
    groups: list[tuple[str, list[str]]] = []
    globals_: list[str] = []
    current: list[str] | None = None
    skip_value = False
    for arg in argv:
        if skip_value:
            globals_.append(arg)
            skip_value = False
        elif arg in BENCHES:
            current = []
            groups.append((arg, current))
        elif arg in ("--quick", "--long") or (current is None and arg.startswith("--")):
            globals_.append(arg)
            skip_value = arg in ("--results", "--json")
        elif arg in ("--results", "--json"):
            globals_.append(arg)
            skip_value = True
        elif current is not None:
            current.append(arg)
        else:
            parser.error(f"unknown benchmark {arg!r}; choose from {', '.join(BENCHES)}")
    gopts = parser.parse_args(globals_)
    if not groups:
        groups = [(name, []) for name in BENCHES]
    rows: list[Row] = []
    started = time.monotonic()
    runs: list[tuple[str, Callable[[], list[Row]]]] = []
    for name, args in groups:
        opts = subs[name].parse_args(args)
        opts.quick, opts.long = gopts.quick, gopts.long
        runs.append((name, functools.partial(BENCHES[name].run, opts)))
    for name, fn in runs:
        t0 = time.monotonic()
        log(f"--- {name}")
        try:
            rows.extend(fn())
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            import traceback

            traceback.print_exc()
            rows.append(error_row(name, exc))
        log(f"--- {name} took {time.monotonic() - t0:.0f} s")
    total = time.monotonic() - started
    info = machine()
    print()
    print(table(rows))
    print(
        f"\n{len(rows)} figures, {sum(r.ok is False for r in rows)} MISSED; {total:.0f} s; "
        f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['date']}"
    )
    command = "python -m benchmarks " + " ".join(argv)
    if gopts.results:
        gopts.results.write_text(_markdown(rows, info, command.strip(), total))
    if gopts.json:
        gopts.json.write_text(result_json(rows))
    return 0


def _markdown(rows: list[Row], info: dict[str, str], command: str, total: float) -> str:
    notes = [f"- **{r.bench} / {r.figure.strip()}**: {r.note}" for r in rows if r.note]
    return "\n".join(
        [
            "## Table",
            "",
            f"`{command}` ({total:.0f} s) on {info['nproc']} CPUs, {info['cpu']}, "
            f"Python {info['python']}, {info['platform']}, {info['date']}.",
            "",
            table(rows, markdown=True),
            "",
            *notes,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
