"""Reload: reports, last good versions, automatic pick-up, and calls never seeing half a reload."""

import os
import shutil
import threading

import pytest

from taskcatalog import Context, ContractError, LoadError, PluginError

GOOD = "def app_entrypoint_v1(ctx):\n    return {value!r}\n"


def test_reload_reports_added_changed_removed(layout):
    old = layout.interface("app", GOOD.format(value="one"))
    gone = layout.interface("gone", "def gone_entrypoint_v1(ctx):\n    return 0\n")
    catalog = layout.catalog()
    assert catalog.call("app", 1, None) == "one"
    assert not catalog.reload()  # nothing changed: an empty, falsy report

    layout.interface("app", GOOD.format(value="two"))
    new = layout.interface("new", "def new_entrypoint_v1(ctx):\n    return 'new'\n")
    plugin = layout.plugin("acme", "app", "")
    os.remove(gone)
    report = catalog.reload()
    assert report.changed == [str(old)]
    assert report.added == sorted([str(new), str(plugin)])
    assert report.removed == [str(gone)]
    assert report.failed == []
    assert report.to_dict()["changed"] == [str(old)]
    assert catalog.call("app", 1, None) == "two"
    assert catalog.call("new", 1, None) == "new"
    assert catalog.interfaces() == ["app", "new"]
    with pytest.raises(LookupError, match="no interface 'gone'"):
        catalog.call("gone", 1, None)


def test_broken_new_version_keeps_the_last_good_one(layout):
    layout.interface("app", GOOD.format(value="good"))
    catalog = layout.catalog()
    assert catalog.call("app", 1, None) == "good"

    path = layout.interface("app", "def app_entrypoint_v1(ctx):\n    return (\n")
    report = catalog.reload()
    assert report.changed == [str(path)]
    [failure] = report.failed
    assert (failure.kind, failure.path, failure.interface) == ("import", str(path), "app")
    assert "SyntaxError" in failure.message
    assert catalog.call("app", 1, None) == "good"  # still running
    assert [p.kind for p in catalog.check()] == ["import"]  # and still reported
    assert not catalog.reload()  # the same broken file is not retried or re-reported...
    assert [p.kind for p in catalog.check()] == ["import"]  # ...but stays listed

    layout.interface("app", GOOD.format(value="fixed"))
    report = catalog.reload()
    assert report.failed == [] and catalog.check() == []
    assert catalog.call("app", 1, None) == "fixed"


def test_new_file_that_is_broken_fails_closed(scale):
    catalog = scale.catalog()
    path = scale.interface("fresh", "raise RuntimeError('half written')\n")
    [failure] = catalog.reload().failed
    assert failure.path == str(path) and "RuntimeError at import: half written" in failure.message
    with pytest.raises(LoadError, match="half written"):
        catalog.call("fresh", 1, None)


def test_broken_plugin_update_keeps_the_last_good_plugin(scale):
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0
    scale.plugin("acme", "scale", "from taskcatalog import plugin_config\n\n"
                 "@plugin_config(version=1, slot='scale')\ndef times(ctx, nope):\n    return 0.0\n")
    [failure] = catalog.reload().failed
    assert (failure.kind, failure.customer) == ("contract", "acme")
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0
    assert [p.kind for p in catalog.check()] == ["contract"]

    scale.plugin("acme", "scale", "raise ImportError('bad release')\n")
    [failure] = catalog.reload().failed
    assert failure.kind == "import" and "bad release" in failure.message
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0


def test_interface_change_that_breaks_an_unchanged_plugin(scale):
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0
    scale.interface("scale", """
        from taskcatalog import slot

        @slot("scale", args={"a": int, "b": float, "c": int}, returns=float)
        def scale_entrypoint_v1(ctx, x):
            return ctx.plugins.call("scale", a=x, b=2.0, c=0)[1]
    """)
    report = catalog.reload()
    assert [(p.kind, p.customer) for p in report.failed] == [("contract", "acme")]
    with pytest.raises(ContractError, match="customer 'acme' cannot call 'scale'"):
        catalog.call("scale", 1, Context("acme"), x=2)  # fail closed: never silently skipped
    assert catalog.call("scale", 1, None, x=2) is None


def test_plugin_that_failed_is_retried_when_its_interface_changes(scale):
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0
    scale.plugin("acme", "scale", "from taskcatalog import plugin_config\n\n"
                 "@plugin_config(version=1, slot='scale')\ndef times(ctx, a, b, c):\n    return a * b * c\n")
    assert [p.kind for p in catalog.reload().failed] == ["contract"]  # the slot passes no c yet
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0  # the last good plugin
    scale.interface("scale", """
        from taskcatalog import slot

        @slot("scale", args={"a": int, "b": float, "c": int}, returns=float)
        def scale_entrypoint_v1(ctx, x):
            return ctx.plugins.call("scale", a=x, b=2.0, c=10)[1]
    """)
    assert catalog.reload().failed == []
    assert catalog.call("scale", 1, Context("acme"), x=2) == 40.0  # the new plugin, now that it fits
    assert catalog.check() == []


def test_folder_vanishing_keeps_what_it_had(layout, tmp_path):
    layout.interface("app", GOOD.format(value="kept"))
    layout.plugin("acme", "app", "")
    catalog = layout.catalog()
    assert catalog.call("app", 1, Context("acme")) == "kept"
    moved = tmp_path / "moved-away"
    shutil.move(layout.interfaces, moved)
    report = catalog.reload()
    assert [p.kind for p in report.failed] == ["folder"]
    assert "does not exist" in report.failed[0].message
    assert report.removed == []
    assert catalog.call("app", 1, Context("acme")) == "kept"
    assert catalog.interfaces() == ["app"]
    shutil.move(moved, layout.interfaces)
    assert not catalog.reload()


def test_reload_interval_picks_changes_up(layout):
    layout.interface("app", GOOD.format(value="one"))
    catalog = layout.catalog(reload_interval=0)
    assert catalog.call("app", 1, None) == "one"
    layout.interface("app", GOOD.format(value="two"))
    assert catalog.call("app", 1, None) == "two"


def test_reload_interval_waits_for_the_interval(layout):
    layout.interface("app", GOOD.format(value="one"))
    catalog = layout.catalog(reload_interval=3600)
    assert catalog.call("app", 1, None) == "one"
    layout.interface("app", GOOD.format(value="two"))
    assert catalog.call("app", 1, None) == "one"  # not checked yet
    catalog.reload()
    assert catalog.call("app", 1, None) == "two"


@pytest.mark.parametrize("interval", [-1, "2", True, float("nan"), float("inf")])
def test_bad_reload_interval(layout, interval):
    with pytest.raises(ValueError, match="reload_interval must be a finite number of seconds >= 0"):
        layout.catalog(reload_interval=interval)


def test_call_in_flight_finishes_on_the_state_it_started_with(scale):
    scale.interface("slow", """
        from taskcatalog import slot

        @slot("scale", args={"a": int, "b": float}, returns=float)
        def slow_entrypoint_v1(ctx, x):
            ctx["entered"].set()
            assert ctx["gate"].wait(10)
            return ctx.plugins.call("scale", a=x, b=2.0)[1]
    """)
    scale.plugin("acme", "slow", "from taskcatalog import plugin_config\n\n"
                 "@plugin_config(slot='scale')\ndef old(ctx, a, b):\n    return 1.0\n")
    catalog = scale.catalog()
    entered, gate, results = threading.Event(), threading.Event(), []
    ctx = {"customer": "acme", "entered": entered, "gate": gate}
    worker = threading.Thread(target=lambda: results.append(catalog.call("slow", 1, ctx, x=5)))
    worker.start()
    assert entered.wait(10)
    scale.plugin("acme", "slow", "from taskcatalog import plugin_config\n\n"
                 "@plugin_config(slot='scale')\ndef new(ctx, a, b):\n    return 2.0\n")
    assert catalog.reload().changed
    gate.set()
    worker.join(10)
    assert results == [1.0]  # the old plugin, with the old interface
    ready = threading.Event()
    ready.set()
    assert catalog.call("slow", 1, {"customer": "acme", "entered": threading.Event(), "gate": ready}, x=5) == 2.0


def test_calls_never_see_half_a_reload(layout):
    """Interface and plugin change together; every call sees a matching pair.

    Files are imported lazily, so a file nobody has used yet is read as it is
    on disk when first needed. The catalog is warmed first (check() imports
    everything); from then on every reload imports what changed before it
    swaps the snapshot in.
    """
    def deploy(generation):
        layout.interface("gen", f"""
            from taskcatalog import slot

            GENERATION = {generation}

            @slot("which", returns=int)
            def gen_entrypoint_v1(ctx):
                return GENERATION, ctx.plugins.call("which")[1]
        """)
        layout.plugin("acme", "gen", f"""
            from taskcatalog import plugin_config

            @plugin_config(slot="which")
            def which(ctx):
                return {generation}
        """)

    deploy(0)
    catalog = layout.catalog()
    assert catalog.check() == []
    stop = threading.Event()
    seen, mismatches, errors = set(), [], []

    def caller():
        while not stop.is_set():
            try:
                pair = catalog.call("gen", 1, Context("acme"))
            except Exception as exc:  # noqa: BLE001 - any error fails the test below
                errors.append(exc)
                return
            seen.add(pair[0])
            if pair[0] != pair[1]:
                mismatches.append(pair)

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for generation in range(1, 13):
        deploy(generation)
        report = catalog.reload()
        assert report.failed == [], report.failed
    stop.set()
    for thread in threads:
        thread.join(10)
    assert errors == [] and mismatches == []
    assert catalog.call("gen", 1, Context("acme")) == (12, 12)
    assert len(seen) > 1  # the callers really ran across reloads


def test_automatic_reloads_from_many_threads(layout):
    layout.interface("app", GOOD.format(value=0))
    catalog = layout.catalog(reload_interval=0)
    stop, errors, values = threading.Event(), [], set()

    def caller():
        while not stop.is_set():
            try:
                values.add(catalog.call("app", 1, None))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for value in range(1, 10):
        layout.interface("app", GOOD.format(value=value))
    stop.set()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert catalog.call("app", 1, None) == 9


# -- failures of the file system are retried; content failures are not ----------------


def test_an_interface_that_vanished_for_a_moment_recovers_on_reload(layout, tmp_path):
    path = layout.interface("app", GOOD.format(value="back"))
    catalog = layout.catalog()  # scanned, nothing imported yet
    shutil.move(layout.interfaces, tmp_path / "away")
    with pytest.raises(LoadError, match=r"cannot load interface 'app' from .*app\.py: No such file or directory"):
        catalog.call("app", 1, None)
    assert [p.kind for p in catalog.check()] == ["import"]
    shutil.move(tmp_path / "away", layout.interfaces)
    report = catalog.reload()
    assert report.recovered == [str(path)]
    assert report.failed == [] and report.changed == [] and bool(report)
    assert report.to_dict()["recovered"] == [str(path)]
    assert catalog.call("app", 1, None) == "back"
    assert catalog.check() == []
    assert not catalog.reload()  # recovered once, then nothing more to say


def test_a_customer_whose_plugin_file_vanished_for_a_moment_recovers_on_reload(scale, tmp_path):
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("other"), x=1) == 1.0  # the interface is loaded
    shutil.move(scale.plugins / "acme", tmp_path / "acme-away")
    with pytest.raises(PluginError, match=r"customer 'acme' cannot call 'scale': .*No such file or directory"):
        catalog.call("scale", 1, Context("acme"), x=1)
    shutil.move(tmp_path / "acme-away", scale.plugins / "acme")
    report = catalog.reload()
    assert report.recovered == [str(scale.plugins / "acme" / "scale.py")]
    assert catalog.call("scale", 1, Context("acme"), x=1) == 2.0
    assert catalog.check() == []


def test_a_file_unreadable_during_a_reload_keeps_its_last_good_version_and_is_retried(layout, tmp_path):
    """a.py, imported first, moves b.py away: b's new version cannot be read during that reload."""
    layout.interface("a", "def a_entrypoint_v1(ctx):\n    return 'a1'\n")
    b = layout.interface("b", "def b_entrypoint_v1(ctx):\n    return 'b1'\n")
    catalog = layout.catalog()
    assert (catalog.call("a", 1, None), catalog.call("b", 1, None)) == ("a1", "b1")
    layout.interface("a", f"""
        import os
        if os.path.exists({str(b)!r}):
            os.rename({str(b)!r}, {str(tmp_path / "b-away.py")!r})

        def a_entrypoint_v1(ctx):
            return "a2"
    """)
    layout.interface("b", "def b_entrypoint_v1(ctx):\n    return 'b2'\n")
    report = catalog.reload()
    assert [(p.path, p.kind) for p in report.failed] == [(str(b), "import")]
    assert "No such file or directory" in report.failed[0].message
    assert (catalog.call("a", 1, None), catalog.call("b", 1, None)) == ("a2", "b1")  # the last good b
    os.rename(tmp_path / "b-away.py", b)
    report = catalog.reload()
    assert report.recovered == [str(b)] and report.failed == []
    assert catalog.call("b", 1, None) == "b2"
    assert catalog.check() == []


def test_a_folder_renamed_away_while_it_is_read_is_read_whole(layout, tmp_path):
    """Entries are stat'ed through the folder's descriptor, wherever the folder went meanwhile."""
    from taskcatalog import scanning

    if not scanning._BY_FD:
        pytest.skip("this platform cannot read folders through descriptors")
    layout.interface("a", GOOD.format(value=1))
    layout.interface("b", GOOD.format(value=2))
    problems, unreadable = [], set()
    with scanning._listing(str(layout.interfaces), "interface", problems, unreadable) as (entries, _):
        shutil.move(layout.interfaces, tmp_path / "away")
        found = scanning._python_files(str(layout.interfaces), entries, "interface", problems)
    assert [name for name, _ in found] == ["a", "b"] and problems == [] and unreadable == set()
    assert found[0][1].path == str(layout.interfaces / "a.py")

    shutil.move(tmp_path / "away", layout.interfaces)
    with scanning._listing(str(layout.interfaces), "interface", problems, unreadable) as (entries, _):
        os.remove(layout.interfaces / "b.py")  # deleted after the listing: simply not there
        found = scanning._python_files(str(layout.interfaces), entries, "interface", problems)
    assert [name for name, _ in found] == ["a"] and problems == []


def test_a_partial_read_never_counts_as_deleted_files(layout, tmp_path):
    for name in "abcdefgh":
        layout.interface(name, f"def {name}_entrypoint_v1(ctx):\n    return {name!r}\n")
    catalog = layout.catalog()
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            try:
                os.rename(layout.interfaces, tmp_path / "away")
                os.rename(tmp_path / "away", layout.interfaces)
            except OSError:
                pass

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        for _ in range(300):
            report = catalog.reload()
            assert report.removed == [], report
            assert catalog.interfaces() == list("abcdefgh")
    finally:
        stop.set()
        thread.join(10)
    if not layout.interfaces.exists():
        os.rename(tmp_path / "away", layout.interfaces)
    catalog.reload()
    assert [catalog.call(name, 1, None) for name in "abcdefgh"] == list("abcdefgh")


@pytest.mark.parametrize(
    "deployed",
    ["", "X = 1\n", "def app_entrypoint_v01(ctx):\n    return 1\n", "def other_entrypoint_v1(ctx):\n    return 1\n"],
)
def test_a_deploy_that_leaves_no_usable_entrypoint_keeps_the_last_good_versions(layout, deployed):
    path = layout.interface("app", GOOD.format(value="good"))
    catalog = layout.catalog()
    assert catalog.call("app", 1, None) == "good"
    layout.interface("app", deployed)
    report = catalog.reload()
    assert report.changed == [str(path)]
    assert [(p.path, p.kind) for p in report.failed] == [(str(path), "entrypoint")]
    assert catalog.call("app", 1, None) == "good"
    assert [p.kind for p in catalog.check()] == ["entrypoint"]
    layout.interface("app", GOOD.format(value="fixed"))
    assert catalog.reload().failed == []
    assert catalog.call("app", 1, None) == "fixed"
    os.remove(path)  # deleting the file is how an interface is removed
    assert catalog.reload().removed == [str(path)]
    assert catalog.interfaces() == []


def test_a_plugin_file_emptied_by_a_deploy_keeps_the_last_good_plugins(scale):
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=3) == 6.0
    path = scale.plugin("acme", "scale", "")
    report = catalog.reload()
    assert [(p.path, p.kind) for p in report.failed] == [(str(path), "contract")]
    assert "defines no @plugin_config function" in report.failed[0].message
    assert catalog.call("scale", 1, Context("acme"), x=3) == 6.0
    os.remove(path)
    assert catalog.reload().removed == [str(path)]
    assert catalog.call("scale", 1, Context("acme"), x=3) == 3.0
