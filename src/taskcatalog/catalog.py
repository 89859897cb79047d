"""``Catalog``: resolve a versioned interface for a customer and call it.

Read top to bottom: construction (scan the folders, nothing imported), the
call path (``call``, ``run`` and the shared ``_invoke``), then reload and
introspection. The call path does no file system access and no
introspection: it looks the route up in the current snapshot's table and
calls it; a miss resolves the route once (importing what it needs) and
memoises it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .context import CallContext, call_id_of, next_call_number
from .errors import ArgumentError, CatalogError
from .naming import check_customer_name, check_interface_name
from .reloading import reloaded
from .results import CallResult, Problem, ReloadReport
from .routes import Route
from .scanning import scan
from .snapshot import Pins, RouteKey, Snapshot

if TYPE_CHECKING:
    from .db import Connection

__all__ = ["Catalog"]

LOG = logging.getLogger("taskcatalog.catalog")

_NO_DATA: Mapping[str, Any] = {"customer": None}
_SKIPPED = object()  # what _invoke returns for a task that was not actionable
_MISSING: Any = object()  # a context without a customer key
_new_context = CallContext.__new__


def _folders(value: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], role: str) -> tuple[str, ...]:
    """Absolute folder paths, each folder once: ``src/x``, ``./src/x/`` and a link to it are one folder."""
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    try:
        folders = [os.path.abspath(os.fspath(v)) for v in value]
    except TypeError:
        raise TypeError(f"{role} must be a path or a list of paths, not {value!r}") from None
    seen: set[str] = set()
    unique = []
    for folder in folders:
        real = os.path.realpath(folder)
        if real not in seen:
            seen.add(real)
            unique.append(folder)
    return tuple(unique)


def _check_pins(pins: Pins | None) -> dict[str, dict[str, int]]:
    checked: dict[str, dict[str, int]] = {}
    for customer, versions in (pins or {}).items():
        check_customer_name(customer)
        if not isinstance(versions, Mapping):
            raise TypeError(f"pins[{customer!r}] must map interface names to versions, not {versions!r}")
        for name, version in versions.items():
            check_interface_name(name)
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise TypeError(f"pins[{customer!r}][{name!r}] must be a positive int, not {version!r}")
        checked[customer] = dict(versions)
    return checked


def _bad_context(ctx: Any) -> ArgumentError:
    if isinstance(ctx, Mapping):
        return ArgumentError(
            "the context mapping has no 'customer' key; use {'customer': None} or ctx=None "
            "for a call without a customer"
        )
    return ArgumentError(f"ctx must be a Context, a mapping with a 'customer' key, or None; got {type(ctx).__name__}")


class Catalog:
    """A catalog of versioned interfaces and per-customer plugins.

    ``interfaces`` and ``plugins`` are a folder or a list of folders. Nothing
    is imported until a call needs it. ``reload_interval`` (seconds) makes
    calls look for changed files by themselves, at most once per interval.
    ``pins`` maps a customer to ``{interface: version}``, the version a call
    with ``version=None`` gets.
    """

    def __init__(
        self,
        interfaces: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        plugins: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = (),
        *,
        reload_interval: float | None = None,
        pins: Pins | None = None,
    ) -> None:
        self._interface_dirs = _folders(interfaces, "interfaces")
        if not self._interface_dirs:
            raise ValueError("interfaces must name at least one folder")
        self._plugin_dirs = _folders(plugins, "plugins")
        if reload_interval is not None and (
            isinstance(reload_interval, bool)
            or not isinstance(reload_interval, (int, float))
            or not math.isfinite(reload_interval)
            or reload_interval < 0
        ):
            raise ValueError(f"reload_interval must be a finite number of seconds >= 0, not {reload_interval!r}")
        self._reload_interval = reload_interval
        self._lock = threading.RLock()  # one reload (or close) at a time
        self._swap(Snapshot(scan(self._interface_dirs, self._plugin_dirs), _check_pins(pins)))
        # Monotonic time of the next automatic disk check; None disables it.
        self._next_scan: float | None = None if reload_interval is None else time.monotonic() + reload_interval
        self._closed = False
        for problem in self._snapshot.tree.problems:
            LOG.warning("%s", problem)

    def _swap(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current. The call path reads ``_routes``, one
        attribute, whichever snapshot it belongs to: every route in it is
        complete on its own, so a call between the two assignments is safe."""
        self._snapshot = snapshot
        self._routes = snapshot.routes

    def __repr__(self) -> str:
        return f"Catalog(interfaces={list(self._interface_dirs)!r}, plugins={list(self._plugin_dirs)!r})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the loaded modules; calls made after closing raise CatalogError."""
        with self._lock:
            self._closed = True
            self._next_scan = None
            self._swap(Snapshot(self._snapshot.tree, {}))

    # -- the call path ---------------------------------------------------

    def call(self, name: str, version: int | str | None, ctx: Any = None, /, **kwargs: Any) -> Any:
        """Call ``name`` at ``version`` for the customer of ``ctx``; return what it returns.

        ``version`` is an int, ``"latest"`` or None (the customer's pin, else
        latest). ``ctx`` is a ``Context``, a mapping with a ``"customer"``
        key, or None for a call without a customer. Errors of resolution are
        ``CatalogError``s; exceptions raised by the entrypoint propagate
        unchanged; a task that is not actionable returns None.
        """
        value = self._invoke(name, version, ctx, kwargs, next_call_number())
        return None if value is _SKIPPED else value

    def run(self, name: str, version: int | str | None, ctx: Any = None, /, **kwargs: Any) -> CallResult:
        """Like ``call``, but never raises for a failure: returns a ``CallResult``."""
        number = next_call_number()
        start = time.perf_counter()
        try:
            value = self._invoke(name, version, ctx, kwargs, number)
        except Exception as exc:
            return CallResult("error", None, exc, call_id_of(number), time.perf_counter() - start)
        status = "skipped" if value is _SKIPPED else "ok"
        return CallResult(status, None if value is _SKIPPED else value, None, call_id_of(number), time.perf_counter() - start)

    def _invoke(self, name: str, version: Any, ctx: Any, kwargs: dict[str, Any], number: int) -> Any:
        """Resolve and run one call: the hot path shared by ``call``, ``run`` and ``ctx.call``."""
        if self._next_scan is not None and time.monotonic() >= self._next_scan:
            self._poll()
        customer: Any
        data: Mapping[str, Any]
        parent: str | None
        if type(ctx) is dict:  # the classic dict context, the commonest case
            customer, data, parent = ctx.get("customer", _MISSING), ctx, None
        elif ctx is None:
            customer, data, parent = None, _NO_DATA, None
        elif type(ctx) is CallContext:  # a nested call: same customer and data
            customer, data, parent = ctx._route.customer, ctx._data, ctx.call_id
        else:
            try:
                customer = ctx["customer"]
            except (KeyError, TypeError, IndexError):
                customer = _MISSING
            data, parent = ctx, None
        # The customer name is validated by _resolve, once per route. The
        # version's type is part of the key: True == 1 and 1.0 == 1, but
        # neither is a valid version and must not hit the route of 1.
        key = (name, version, customer, type(version))
        try:
            route = self._routes.get(key)
        except TypeError:  # something unhashable: let _resolve say what is wrong
            route = None
        if route is None or route.deprecation is not None:
            route = self._resolve(key, route, data)
        if route.check_args:
            keys = kwargs.keys()
            if not (keys >= route.required and (route.var_kw or keys <= route.params)) or (
                route.entrypoint.context_param in keys
            ):
                raise route.argument_error(kwargs)
        call_ctx = _new_context(CallContext)  # no __init__ frame: this is the hot path
        call_ctx._route, call_ctx._data, call_ctx._number, call_ctx.parent_id = route, data, number, parent
        if route.is_task:
            task = route.target()
            if not task.is_actionable(call_ctx, **kwargs):
                return _SKIPPED
            return task.execute(call_ctx, **kwargs)
        try:
            return route.target(call_ctx, **kwargs)
        except TypeError as exc:
            # Raised right here, not inside the entrypoint: the arguments did
            # not bind, and the body never ran. A TypeError from inside the
            # entrypoint has a deeper traceback and propagates unchanged.
            if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                raise route.argument_error(kwargs) from None
            raise

    def _resolve(self, key: RouteKey, cached: Route | None, ctx: Any) -> Route:
        """The slow path of a call: validate, import what is needed, memoise the route.

        Deprecated routes come through here on every call, to be checked
        against their sunset and to warn.
        """
        route = cached
        if route is None or (route.retire_at is not None and time.time() >= route.retire_at):
            name, version, customer, _ = key
            if self._closed:
                raise CatalogError(f"{self!r} is closed")
            if customer is _MISSING:
                raise _bad_context(ctx)
            if customer is not None:
                check_customer_name(customer)
            route = self._snapshot.resolve(key, self)
        if route.deprecation is not None:
            route.warn_deprecated()
        return route

    def customer_database(self, customer: str) -> Connection | None:
        """The customer's own database (``ctx.db``); None until a database is configured."""
        check_customer_name(customer)
        return None

    # -- reload ------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """Rescan the folders; import what is new or changed; swap the snapshot in one step.

        Calls in flight finish on the snapshot they started with. A file
        whose new version fails keeps its last good version running; the
        failure is in the report, in ``check()`` and in the log.
        """
        with self._lock:
            if self._closed:
                raise CatalogError(f"{self!r} is closed")
            old = self._snapshot
            tree = scan(self._interface_dirs, self._plugin_dirs, previous=old.tree)
            snapshot, report = reloaded(old, tree)
            self._swap(snapshot)
            if self._reload_interval is not None:
                self._next_scan = time.monotonic() + self._reload_interval
        return report

    def _poll(self) -> None:
        """The automatic reload of ``reload_interval``: one thread checks, the others go on."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._next_scan is not None and time.monotonic() >= self._next_scan:
                self.reload()
        except Exception:  # a failed automatic reload must not fail the call that noticed it
            LOG.exception("automatic reload failed; the catalog keeps its current state")
            if self._reload_interval is not None:
                self._next_scan = time.monotonic() + self._reload_interval
        finally:
            self._lock.release()

    # -- introspection -----------------------------------------------------

    def interfaces(self) -> list[str]:
        """The interface names, sorted (nothing is imported)."""
        return sorted(self._snapshot.tree.interfaces)

    def versions(self, name: str) -> list[int]:
        """The callable versions of ``name``, sorted, retired ones included."""
        return list(self._snapshot.interface(name).entrypoints)

    def customers(self) -> list[str]:
        """The customers that have plugin files, sorted (nothing is imported)."""
        return self._snapshot.tree.customers()

    def describe(self, name: str) -> dict[str, Any]:
        """A plain-data description of ``name``: versions, signatures, slots, who plugs in where."""
        snapshot = self._snapshot
        interface = snapshot.interface(name)
        users: dict[tuple[int, Any], list[dict[str, Any]]] = {}
        problems: list[Problem] = []
        for customer, plugin_name in snapshot.tree.plugins:
            if plugin_name != name:
                continue
            binding = snapshot.binding(customer, name)
            problems.extend(binding.problems)
            for key, plugins in binding.slot_users().items():
                users.setdefault(key, []).append({"customer": customer, "plugins": plugins})
        now = time.time()
        versions = []
        for version, entry in interface.entrypoints.items():
            deprecation = None
            if entry.deprecation is not None:
                sunset = entry.deprecation.sunset
                deprecation = {
                    "message": entry.deprecation.message,
                    "sunset": sunset.isoformat() if sunset else None,
                    "retired": entry.retired(now),
                }
            versions.append({
                "version": version,
                "kind": "task" if entry.is_task else "function",
                "signature": entry.signature,
                "parameters": list(entry.params),
                "required": sorted(entry.required),
                "accepts_any_keyword": entry.var_kw,
                "doc": entry.doc,
                "line": entry.line,
                "deprecated": deprecation,
                "slots": [
                    {**contract.describe(), "customers": users.get((version, sid), [])}
                    for sid, contract in entry.slots.items()
                ],
            })
        return {
            "name": name,
            "path": interface.source.path,
            "versions": versions,
            "customers": sorted({c for c, n in snapshot.tree.plugins if n == name}),
            "problems": [p.to_dict() for p in interface.problems + tuple(problems)],
        }

    def check(self) -> list[Problem]:
        """Import everything and return every problem found (empty: the catalog is clean)."""
        return self._snapshot.problems()
