"""User code the type checker must accept: CI runs mypy --strict over this file.

Not a test module (pytest does not collect it); it is never executed. Each
annotated assignment states what a user may rely on about a public name.
"""

from __future__ import annotations

import logging
from typing import Any

from taskcatalog import (
    BaseTask,
    CallContext,
    CallResult,
    Catalog,
    Context,
    Problem,
    ReloadReport,
    call_if_present,
    deprecated,
    plugin_config,
    slot,
)
from taskcatalog.db import Connection, Migration, connect


@slot("scale", args={"a": int, "b": float}, returns=float)
@deprecated("use v2", sunset="2030-01-01")
def interface_a_entrypoint_v1(ctx: CallContext, arg1: int, arg2: int, **kwargs: Any) -> float:
    customer: str | None = ctx.customer
    interface: str = ctx.interface
    version: int = ctx.version
    call_id: str = ctx.call_id
    parent: str | None = ctx.parent_id
    db: Connection | None = ctx.db
    log: logging.LoggerAdapter[logging.Logger] = ctx.log
    log.info("%s %s %s %s %s %s", customer, interface, version, call_id, parent, db)
    found, value = ctx.plugins.call("scale", a=arg1 * 2, b=8.0)
    also: tuple[bool, Any] = call_if_present(ctx, "scale", arg1, 8.0)
    declared: list[str | int] = ctx.plugins.slots()
    has: bool = ctx.plugins.has("scale")
    nested: Any = ctx.call("other", 1, x=1)
    extra: Any = ctx.get("user")
    del also, declared, has, nested, extra
    return float(value) + arg1 if found else float(arg1)


@plugin_config(version=1, slot="scale")
def multiply(ctx: CallContext, a: int, b: float, **kwargs: Any) -> float:
    return a * b


class SyncOrders(BaseTask):
    def is_actionable(self, ctx: Any, **kwargs: Any) -> bool:
        return bool(kwargs.get("orders"))

    def execute(self, ctx: Any, **kwargs: Any) -> int:
        return len(kwargs["orders"])


def executor() -> None:
    with Catalog("src/interfaces", ["src/plugins"], reload_interval=2.0) as catalog:
        value: Any = catalog.call("interface_a", 1, Context("customer_1", user="ann"), arg1=2, arg2=21)
        result: CallResult = catalog.run("interface_a", "latest", {"customer": "customer_2"}, arg1=2)
        status: str = result.status
        duration: float = result.duration
        names: list[str] = catalog.interfaces()
        versions: list[int] = catalog.versions("interface_a")
        customers: list[str] = catalog.customers()
        described: dict[str, Any] = catalog.describe("interface_a")
        problems: list[Problem] = catalog.check()
        report: ReloadReport = catalog.reload()
        del value, status, duration, names, versions, customers, described, problems, report
    database: Connection = connect(":memory:")
    database.upgrade([Migration("shop", "0001_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)")])
    row_id: int = database.create("orders", {"sku": "A-1"})
    rows: list[dict[str, Any]] = database.read("orders", where={"id": row_id})
    del rows
    database.close()
