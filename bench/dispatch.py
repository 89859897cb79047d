"""Cost of one ``catalog.call`` against a pluggy hook call, with telemetry off,
recorded in memory, and persisted to a database.

Run from the repository root (pluggy is optional: ``pip install -e '.[bench]'``)::

    python bench/dispatch.py [--number 200000] [--repeat 7] [--only off|memory|persisted] [--no-gc]

Every row is measured in this process, in this run. Rounds interleave all
the cases (each round times ``number`` calls of every case in turn), so a
slow moment of the machine hits all of them alike; a row gives the best and
the median round in nanoseconds per call, and its ratio to its baseline on
the best rounds and on the medians. The load averages before and after are
printed with the table: on a busy machine, wait and run it again.

The calls are the ones the README and docs/interfaces-and-plugins.md show,
on the example folders (src/interfaces, src/plugins): ``interface_a`` v1 for
customer_1 runs the classic slot call ``call_if_present(ctx, 0, a, b)``, v2
the documented one, ``ctx.plugins.call("scale", a=..., b=...)`` (keywords, a
named slot); each multiplies in one plugin. Three catalogs, each made once
before the clock starts; every route is resolved before the clock starts:

* telemetry off (``telemetry=False``): v1 and v2, with a dict context and
  with a ``Context``. Target: <= 1.0x one pluggy ``firstresult`` hook call
  with one implementation (``hook(a=4, b=8.0)``).
* telemetry recorded in memory (the default, no database): v1 and v2.
  Target: <= 1.0x the same hook on a plugin manager carrying a timing
  monitor (``add_hookcall_monitoring``: before and after append
  ``time.perf_counter()`` to a list, emptied after each round, untimed).
* telemetry persisted (``database=`` a file in a temporary folder): v1 and
  v2. Target: <= 2.0x the plain pluggy hook call. These run while the
  catalog's writer thread works (see telemetry.py: it writes once enough
  records wait, or after its flush interval), and its work competes with
  the calls for the GIL: that is part of what the row measures. What the
  writer has not written when a round ends it writes afterwards on its own
  schedule; the script waits for that, untimed, so the backlog is charged
  to no other case, and the "+ writer CPU after the round" row charges it
  back to the round: the round's time plus the CPU time (not the wall time:
  the writer sleeps before it writes a small backlog) the writer thread
  used until every record was written.

The collector is enabled while timing (unlike timeit's default): recorded
calls leave records alive that collections would have to traverse if they
were tracked. ``--no-gc`` measures the timeit way. ``--only`` (repeatable)
leaves the other telemetry configurations out of the timing. At the end the
persisted catalog is closed and its TelemetryReport printed, with the number
of calls it should have written.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from taskcatalog import Catalog, Context  # noqa: E402

PLAIN, MONITORED = "pluggy", "pluggy+monitor"
SECTIONS = {"off": "telemetry off", "memory": "telemetry in memory", "persisted": "telemetry persisted"}


def direct_case() -> Callable[[], float]:
    """The same work as interface_a v1 for customer_1, as plain Python calls."""

    def multiply(ctx, a, b, **kwargs):
        return a * b

    def entrypoint(ctx, arg1, arg2, **kwargs):
        a = arg1 * 2
        b = 8.0
        result = multiply(ctx, a, b)
        return result + arg1

    ctx = {"customer": "customer_1"}
    return lambda: entrypoint(ctx, arg1=2, arg2=21)


def pluggy_hooks():
    """(plain hook call, monitored hook call, the monitor's list, pluggy version), or None without pluggy."""
    try:
        import pluggy
    except ImportError:
        return None
    spec = pluggy.HookspecMarker("bench")
    impl = pluggy.HookimplMarker("bench")

    class Spec:
        @spec(firstresult=True)
        def scale(self, a, b):
            """Combine a and b."""

    class Customer1:
        @impl
        def scale(self, a, b):
            return a * b

    def manager():
        pm = pluggy.PluginManager("bench")
        pm.add_hookspecs(Spec)
        pm.register(Customer1())
        return pm

    plain = manager().hook.scale
    monitored_pm = manager()
    times: list[float] = []
    append, clock = times.append, time.perf_counter

    def before(hook_name, hook_impls, kwargs):
        append(clock())

    def after(outcome, hook_name, hook_impls, kwargs):
        append(clock())

    monitored_pm.add_hookcall_monitoring(before, after)
    monitored = monitored_pm.hook.scale
    return (lambda: plain(a=4, b=8.0)), (lambda: monitored(a=4, b=8.0)), times, pluggy.__version__


def writer_idle(catalog: Catalog, timeout: float = 30.0) -> bool:
    """Wait until the catalog's writer has written every record recorded so far (it is not asked to).

    Reads private state: the buffer and the pending lists are empty and no write is under way.
    """
    telemetry = catalog._telemetry
    assert telemetry is not None
    buffer = catalog._buffers.calls
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not buffer and not any(telemetry._pending) and not telemetry._flushing.locked():
            return True
        time.sleep(0.0005)
    return False


def writer_clock(catalog: Catalog) -> Callable[[], float]:
    """A function reading the CPU time (seconds) the catalog's writer thread has used."""
    clock = time.pthread_getcpuclockid(catalog._telemetry._thread.ident)
    return lambda: time.clock_gettime(clock)


class Case:
    """One row: a call to time, what it is compared with, and its timings (ns per call, per round)."""

    def __init__(self, section, label, fn, baseline=None, target=None, persisted=None, after=None):
        self.section, self.label, self.fn = section, label, fn
        self.baseline, self.target = baseline, target
        self.persisted = persisted  # its catalog, when it writes to a database: the writer's drain is timed too
        self.after = after  # untimed, after each round
        self.times: list[float] = []
        self.drained: list[float] = []  # plus the writer's CPU time after the round
        self.writer_during: list[float] = []  # the writer's CPU time during the round


def measure(cases: list[Case], number: int, repeat: int, gc_enabled: bool) -> None:
    setup = "import gc; gc.enable()" if gc_enabled else "pass"
    timers = [(case, timeit.Timer(case.fn, setup=setup)) for case in cases]
    for _ in range(repeat):
        for case, timer in timers:
            if case.persisted is None:
                case.times.append(timer.timeit(number) / number * 1e9)
            else:
                writer_cpu = writer_clock(case.persisted)
                before = writer_cpu()
                seconds = timer.timeit(number)
                during = writer_cpu()
                if not writer_idle(case.persisted):
                    raise SystemExit(f"{case.label}: the writer did not catch up within 30 s")
                after = writer_cpu()
                case.times.append(seconds / number * 1e9)
                case.writer_during.append((during - before) / number * 1e9)
                case.drained.append((seconds + after - during) / number * 1e9)
            if case.after is not None:
                case.after()


def rows(cases: list[Case], baselines: dict[str, Case]) -> list[tuple[str, ...]]:
    """The table: one row per case (two for a persisted one), a section name above each group."""
    table = []
    section = None
    for case in cases:
        if case.section != section:
            section = case.section
            table.append((f"**{section}**",) + ("",) * 7)
        measured = [(case.label, case.times)]
        if case.drained:
            measured.append(("  + writer CPU after the round", case.drained))
        base = baselines.get(case.baseline)
        for label, times in measured:
            best, median = min(times), statistics.median(times)
            ratio_best = ratio_median = verdict = ""
            if base is not None and base is not case:
                x_best, x_median = best / min(base.times), median / statistics.median(base.times)
                ratio_best, ratio_median = f"{x_best:.2f}", f"{x_median:.2f}"
                if case.target is not None:
                    verdict = "yes" if x_best <= case.target and x_median <= case.target else (
                        "best" if x_best <= case.target else "NO")
            target = f"<= {case.target:.1f}" if case.target is not None else ""
            table.append((label, f"{best:.0f}", f"{median:.0f}", case.baseline if base is not case else "",
                          ratio_best, ratio_median, target, verdict))
    return table


def print_table(table: list[tuple[str, ...]]) -> None:
    header = ("case", "best ns", "median ns", "baseline", "x best", "x median", "target", "met")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" if i in (0, 3, 7) else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print(line.format(*row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=200_000, help="calls per case per round (default 200000)")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--no-gc", action="store_true", help="disable the collector while timing, as timeit does")
    parser.add_argument("--only", choices=list(SECTIONS), action="append",
                        help="measure only this telemetry configuration (repeatable; default: all three)")
    options = parser.parse_args()

    interfaces, plugins = ROOT / "src" / "interfaces", ROOT / "src" / "plugins"
    folder = tempfile.TemporaryDirectory(prefix="taskcatalog-bench-")
    off = Catalog(interfaces, plugins, telemetry=False)
    memory = Catalog(interfaces, plugins)
    persisted = Catalog(interfaces, plugins, database=Path(folder.name) / "catalog.sqlite3")
    writer = persisted._telemetry._thread
    assert writer is not None and writer.is_alive(), "the persisted catalog's writer thread is not running"

    dict_ctx = {"customer": "customer_1"}
    context = Context("customer_1")
    v1 = "catalog.call v1: call_if_present(ctx, 0, a, b)"
    v2 = 'catalog.call v2: ctx.plugins.call("scale", a=, b=)'
    cases = [
        Case("baselines", "direct Python call (same work as v1)", direct_case(), PLAIN),
        Case(SECTIONS["off"], f"{v1}, dict ctx",
             lambda: off.call("interface_a", 1, dict_ctx, arg1=2, arg2=21), PLAIN, 1.0),
        Case(SECTIONS["off"], f"{v1}, Context",
             lambda: off.call("interface_a", 1, context, arg1=2, arg2=21), PLAIN, 1.0),
        Case(SECTIONS["off"], f"{v2}, dict ctx",
             lambda: off.call("interface_a", 2, dict_ctx, arg1=2, arg2=8), PLAIN, 1.0),
        Case(SECTIONS["off"], f"{v2}, Context",
             lambda: off.call("interface_a", 2, context, arg1=2, arg2=8), PLAIN, 1.0),
        Case(SECTIONS["off"], "catalog.call v1, no customer (no plugin)",
             lambda: off.call("interface_a", 1, None, arg1=2, arg2=21), PLAIN),
        Case(SECTIONS["off"], "catalog.run v1, dict ctx",
             lambda: off.run("interface_a", 1, dict_ctx, arg1=2, arg2=21), PLAIN),
        Case(SECTIONS["memory"], f"{v1}, dict ctx",
             lambda: memory.call("interface_a", 1, dict_ctx, arg1=2, arg2=21), MONITORED, 1.0),
        Case(SECTIONS["memory"], f"{v2}, dict ctx",
             lambda: memory.call("interface_a", 2, dict_ctx, arg1=2, arg2=8), MONITORED, 1.0),
        Case(SECTIONS["persisted"], f"{v1}, dict ctx",
             lambda: persisted.call("interface_a", 1, dict_ctx, arg1=2, arg2=21), PLAIN, 2.0, persisted),
        Case(SECTIONS["persisted"], f"{v2}, dict ctx",
             lambda: persisted.call("interface_a", 2, dict_ctx, arg1=2, arg2=8), PLAIN, 2.0, persisted),
    ]
    wanted = {"baselines", *(SECTIONS[name] for name in options.only or SECTIONS)}
    cases = [case for case in cases if case.section in wanted]
    for case in cases:  # right answers, and every route resolved before the clock starts
        value = case.fn()
        expected = 2 if "no customer" in case.label else 34.0  # without a plugin: arg1
        assert getattr(value, "value", value) == expected, (case.label, value)
    persisted_calls = sum(case.persisted is not None for case in cases)  # the checks above

    found = pluggy_hooks()
    pluggy_version = None
    baselines: dict[str, Case] = {}
    if found is not None:
        plain, monitored, monitor_times, pluggy_version = found
        assert plain() == 32.0 and monitored() == 32.0 and len(monitor_times) == 2
        monitor_times.clear()
        baselines[PLAIN] = Case("baselines", "pluggy hook, firstresult, 1 impl", plain, PLAIN)
        baselines[MONITORED] = Case("baselines", "pluggy hook + timing monitor", monitored, PLAIN,
                                    after=monitor_times.clear)
        cases += baselines.values()

    load_before = os.getloadavg()
    measure(cases, options.number, options.repeat, not options.no_gc)
    load_after = os.getloadavg()
    persisted_calls += sum(case.persisted is not None for case in cases) * options.repeat * options.number

    print(f"Python {platform.python_version()} ({sys.executable}) on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {platform.platform()}")
    print(f"SQLite {sqlite3.sqlite_version}; pluggy {pluggy_version or 'not installed'}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"load average {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after")
    print(f"{options.repeat} interleaved rounds x {options.number:,} calls per case; "
          f"collector {'disabled' if options.no_gc else 'enabled'} while timing"
          + (f"; only {', '.join(options.only)}" if options.only else ""))
    print()
    print_table(rows(cases, baselines))
    if found is None:
        print("(pluggy is not installed: pip install -e '.[bench]' for the baselines)")
    print()
    print("x best: best round / the baseline's best round; x median: the same with medians.")
    print("met: yes = on the best and on the median rounds; best = on the best rounds only.")
    for case in cases:
        if case.persisted is not None:
            drain = [d - t for d, t in zip(case.drained, case.times)]
            print(f"{case.section}, {case.label}: writer CPU per call during the rounds "
                  f"{min(case.writer_during):.0f} best, {statistics.median(case.writer_during):.0f} median ns; "
                  f"after them (the drain) {min(drain):.0f} best, {statistics.median(drain):.0f} median ns")

    off.close()
    memory.close()
    report = persisted.close()
    print(f"persisted catalog closed: {report} (calls made: {persisted_calls:,}; "
          f"{'all written' if report.written == persisted_calls and report.ok else 'MISMATCH'})")
    folder.cleanup()


if __name__ == "__main__":
    main()
