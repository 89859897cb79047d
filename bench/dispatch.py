"""Cost of one ``catalog.call`` against a direct call and a pluggy hook call.

Run from the repository root (pluggy is optional: ``pip install -e '.[bench]'``)::

    python bench/dispatch.py [--number 200000] [--repeat 7]

Every row is measured in this process, in this run: the best of ``repeat``
timings of ``number`` calls, in nanoseconds per call. The target is
``catalog.call`` with one slot call costing no more than one pluggy
``firstresult`` hook call with one implementation (ratio <= 1.0).
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from taskcatalog import Catalog, Context  # noqa: E402


def direct_case():
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


def pluggy_case():
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

    manager = pluggy.PluginManager("bench")
    manager.add_hookspecs(Spec)
    manager.register(Customer1())
    hook = manager.hook.scale
    return lambda: hook(a=4, b=8.0), pluggy.__version__


def measure(cases: dict, number: int, repeat: int) -> dict[str, float]:
    """Best time per call in ns. Rounds interleave the cases, so a slow moment
    of the machine hits all of them alike rather than one."""
    timers = {label: timeit.Timer(fn) for label, fn in cases.items()}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for label, timer in timers.items():
            best[label] = min(best[label], timer.timeit(number) / number * 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()

    catalog = Catalog(ROOT / "src" / "interfaces", ROOT / "src" / "plugins")
    dict_ctx = {"customer": "customer_1"}
    context = Context("customer_1")
    assert catalog.call("interface_a", 1, dict_ctx, arg1=2, arg2=21) == 34.0
    assert direct_case()() == 34.0

    cases = {
        "direct Python call (same work)": direct_case(),
        "catalog.call, dict ctx, 1 slot call": lambda: catalog.call("interface_a", 1, dict_ctx, arg1=2, arg2=21),
        "catalog.call, Context, 1 slot call": lambda: catalog.call("interface_a", 1, context, arg1=2, arg2=21),
        "catalog.call, no customer (no plugin)": lambda: catalog.call("interface_a", 1, None, arg1=2, arg2=21),
        "catalog.run, dict ctx, 1 slot call": lambda: catalog.run("interface_a", 1, dict_ctx, arg1=2, arg2=21),
    }
    found = pluggy_case()
    pluggy_label = None
    if found is not None:
        hook_call, version = found
        assert hook_call() == 32.0
        pluggy_label = f"pluggy {version} hook, firstresult, 1 impl"
        cases[pluggy_label] = hook_call

    results = measure(cases, options.number, options.repeat)
    direct = results["direct Python call (same work)"]
    baseline = results.get(pluggy_label) if pluggy_label else None

    print(f"Python {platform.python_version()} on {platform.machine()}; best of {options.repeat} x {options.number:,} calls")
    header = f"{'case':<42} {'ns/call':>9} {'x direct':>9} {'x pluggy':>9}"
    print(header)
    print("-" * len(header))
    for label, ns in results.items():
        vs_pluggy = f"{ns / baseline:9.2f}" if baseline else f"{'n/a':>9}"
        print(f"{label:<42} {ns:9.0f} {ns / direct:9.2f} {vs_pluggy}")
    if baseline is None:
        print("(pluggy is not installed: pip install -e '.[bench]' for the baseline)")
    catalog.close()


if __name__ == "__main__":
    main()
