"""BaseTask entrypoints: one instance per call, is_actionable before execute, skipped."""

import pytest

from taskcatalog import ArgumentError, BaseTask, Context

TASK = """
    from taskcatalog import BaseTask, slot

    EVENTS = []

    @slot("notify", args={"count": int}, returns=str)
    class SyncOrders(BaseTask):
        def __init__(self):
            self.seen = []
            EVENTS.append(("new", id(self)))

        def is_actionable(self, ctx, orders, **kwargs):
            EVENTS.append(("actionable?", len(orders)))
            self.seen.append("checked")
            return bool(orders)

        def execute(self, ctx, orders, dry_run=False):
            EVENTS.append(("execute", self.seen))
            found, note = ctx.plugins.call("notify", count=len(orders))
            return {"synced": len(orders), "dry_run": dry_run, "note": note}

    sync_entrypoint_v1 = SyncOrders
"""


@pytest.fixture
def sync(layout):
    layout.interface("sync", TASK)
    layout.plugin(
        "acme",
        "sync",
        """
        from taskcatalog import plugin_config

        @plugin_config(slot="notify")
        def note(ctx, count):
            return f"{count} for {ctx.customer}"
        """,
    )
    catalog = layout.catalog()
    events = catalog._snapshot.interface("sync").entrypoints[1].target.__init__.__globals__["EVENTS"]
    return catalog, events


def test_actionable_task_runs_execute(sync):
    catalog, events = sync
    assert catalog.call("sync", 1, Context("acme"), orders=[1, 2]) == {"synced": 2, "dry_run": False, "note": "2 for acme"}
    assert [e[0] for e in events] == ["new", "actionable?", "execute"]
    assert events[2] == ("execute", ["checked"])


def test_one_instance_per_call(sync):
    catalog, events = sync
    catalog.call("sync", 1, None, orders=[1])
    catalog.call("sync", 1, None, orders=[1])
    instances = [e[1] for e in events if e[0] == "new"]
    assert len(instances) == 2
    assert [e for e in events if e[0] == "execute"] == [("execute", ["checked"])] * 2  # fresh state each time


def test_not_actionable_is_skipped(sync):
    catalog, events = sync
    assert catalog.call("sync", 1, Context("acme"), orders=[]) is None
    result = catalog.run("sync", 1, Context("acme"), orders=[])
    assert (result.status, result.value, result.error) == ("skipped", None, None)
    assert [e[0] for e in events].count("execute") == 0


def test_task_arguments_come_from_execute_and_are_checked_first(sync):
    catalog, events = sync
    with pytest.raises(ArgumentError, match=r"sync v1 \(.*\): unexpected keyword argument\(s\) 'bogus'; it accepts: orders, dry_run"):
        catalog.call("sync", 1, None, orders=[1], bogus=True)
    with pytest.raises(ArgumentError, match=r"no value for required argument\(s\) 'orders'"):
        catalog.call("sync", 1, None)
    assert events == []  # nothing ran, not even is_actionable
    assert catalog.describe("sync")["versions"][0]["kind"] == "task"
    assert catalog.describe("sync")["versions"][0]["signature"] == "sync_entrypoint_v1(ctx, orders, dry_run=False)"


def test_default_task_is_always_actionable_and_execute_is_required():
    class Nothing(BaseTask):
        pass

    assert Nothing().is_actionable(None) is True
    with pytest.raises(NotImplementedError, match="Nothing must define execute"):
        Nothing().execute(None)


def test_errors_in_a_task_propagate_and_run_reports_them(layout):
    layout.interface(
        "fail",
        """
        from taskcatalog import BaseTask

        class Fail(BaseTask):
            def execute(self, ctx):
                raise LookupError("gone")

        fail_entrypoint_v1 = Fail
        """,
    )
    catalog = layout.catalog()
    with pytest.raises(LookupError, match="gone"):
        catalog.call("fail", 1, None)
    result = catalog.run("fail", 1, None)
    assert result.status == "error" and type(result.error) is LookupError and str(result.error) == "gone"


def test_a_class_that_is_not_a_task_is_reported(layout):
    layout.interface("cls", "class cls_entrypoint_v1:\n    pass\n")
    catalog = layout.catalog()
    assert catalog.versions("cls") == []
    [problem] = catalog.check()
    assert problem.message == "entrypoint cls_entrypoint_v1 cannot be called: it is a class but not a BaseTask subclass"
