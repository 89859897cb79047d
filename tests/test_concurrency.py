"""The catalog under concurrent use: slow imports, deploys, reloads and a folder that comes and goes."""

import os
import random
import threading
import time

import pytest

from taskcatalog import CatalogError, Context, InterfaceNotFound, VersionNotFound

SLOW_PLUGIN = """
import os, time
with open({log!r}, "a") as file:
    file.write("import\\n")
while not os.path.exists({release!r}):  # held until the test releases it
    time.sleep(0.002)

from taskcatalog import plugin_config

@plugin_config(version=1, slot="scale")
def slow(ctx, a, b):
    return 100.0
"""


def wait_for(condition, what, timeout=30.0):
    """Wait until ``condition()`` holds; fail (rather than hang) if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.001)


def test_a_slow_import_blocks_neither_other_customers_nor_reload(scale, tmp_path):
    log, release = tmp_path / "imports.log", tmp_path / "release"
    scale.plugin("slow", "scale", SLOW_PLUGIN.format(log=str(log), release=str(release)))
    catalog = scale.catalog()
    assert catalog.call("scale", 1, None, x=1) == 1.0  # the interface itself is loaded
    results, errors = [], []

    def call_slow():
        try:
            results.append(catalog.call("scale", 1, Context("slow"), x=1))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    first = threading.Thread(target=call_slow)
    first.start()
    wait_for(log.exists, "the slow import to start")
    second = threading.Thread(target=call_slow)  # wants the same file: waits for the first import
    second.start()

    other = threading.Thread(target=lambda: results.append(catalog.call("scale", 1, Context("acme"), x=3)))
    other.start()
    other.join(30)
    assert not other.is_alive(), "another customer's first call waited for the slow import"
    assert results == [6.0]
    reloading = threading.Thread(target=catalog.reload)
    reloading.start()
    reloading.join(30)
    assert not reloading.is_alive(), "reload waited for the slow import"

    release.touch()
    first.join(30)
    second.join(30)
    assert errors == [] and sorted(results) == [6.0, 100.0, 100.0]
    assert log.read_text() == "import\n"  # one import for both callers


CUSTOMERS = ["c0", "c1", "c2"]
NAMES = [f"i{n}" for n in range(8)]

INTERFACE = """
from taskcatalog import slot

GENERATION = {generation}

@slot("tag", returns=str)
def {name}_entrypoint_v1(ctx):
    found, tag = ctx.plugins.call("tag")
    return "{name}", GENERATION, tag
"""

PLUGIN = """
from taskcatalog import plugin_config

@plugin_config(slot="tag")
def tag(ctx):
    return "{customer}"
"""


def test_stress_calls_deploys_reloads_and_a_vanishing_folder(layout, tmp_path):
    """For a bounded time: callers, a deployer, a folder flipping away and back, reloads.

    No call may ever see another customer's result or a missing interface;
    when things settle, one reload brings every interface back at its newest
    generation.
    """
    generation = dict.fromkeys(NAMES, 0)
    for name in NAMES:
        layout.interface(name, INTERFACE.format(name=name, generation=0))
        for customer in CUSTOMERS:
            layout.plugin(customer, name, PLUGIN.format(customer=customer))
    catalog = layout.catalog()
    stop = threading.Event()
    wrong, unexpected, calls = [], [], [0]
    away = tmp_path / "away"

    def caller(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            name, customer = rng.choice(NAMES), rng.choice(CUSTOMERS)
            try:
                got_name, _, tag = catalog.call(name, 1, Context(customer))
            except (InterfaceNotFound, VersionNotFound) as exc:
                unexpected.append(exc)  # a partial read must never look like a deletion
                continue
            except CatalogError:
                continue  # the folder was away when this file was first needed: retried at reload
            calls[0] += 1
            if (got_name, tag) != (name, customer):
                wrong.append((name, customer, got_name, tag))

    def deployer():
        rng = random.Random(7)
        while not stop.is_set():
            name = rng.choice(NAMES)
            temporary, path = layout.interfaces / f".{name}.tmp", layout.interfaces / f"{name}.py"
            try:  # write beside, rename over; never re-create the folder while it is away
                temporary.write_text(INTERFACE.format(name=name, generation=generation[name] + 1))
                os.replace(temporary, path)
            except OSError:
                continue  # the folder went away in the middle: this deploy did not happen
            generation[name] += 1

    def flipper():
        while not stop.is_set():
            try:
                os.rename(layout.interfaces, away)
                os.rename(away, layout.interfaces)
            except OSError:
                pass

    def reloader():
        while not stop.is_set():
            report = catalog.reload()
            if report.removed:
                unexpected.append(report.removed)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=f) for f in (deployer, flipper, reloader)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the length of the storm, not a wait for a result
    stop.set()
    for thread in threads:
        thread.join(30)
    if away.exists():
        os.rename(away, layout.interfaces)

    catalog.reload()
    assert wrong == [] and unexpected == []
    assert calls[0] > 100  # the callers really ran during the storm
    for name in NAMES:
        for customer in CUSTOMERS:
            assert catalog.call(name, 1, Context(customer)) == (name, generation[name], customer)
    assert catalog.check() == []
