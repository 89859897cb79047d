"""``Catalog``: resolve a versioned interface for a customer and call it.

Read top to bottom: construction (scan the folders, nothing imported), the
call path (``call``, ``run`` and the shared ``_invoke``), then reload and
introspection. The call path does no file system access and no
introspection: it looks the route up in the current snapshot's table and
calls it; a miss resolves the route once (importing what it needs) and
memoises it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
from time import perf_counter, perf_counter_ns
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .batches import Batches
from .config import load_config
from .contributions import INTERFACES, PLUGINS, contributions
from .context import CallContext, Context, call_id_of, new_call_context, next_call_number, process_prefix
from .databases import CustomerDatabases, open_catalog_database
from .errors import ArgumentError, CatalogError, ConfigError, brief
from .loading import LoadedInterface
from .records import CallRecord, CallStats, TelemetryReport, Usage, since_seconds, utc
from .stores import DatabaseStore, MemoryStore
from .telemetry import Buffers, Telemetry
from .naming import check_customer_name, check_interface_name, is_customer_name
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


#: How many of the newest calls a catalog without a database keeps for stats, usage and history.
MEMORY_LIMIT = 100_000


def _wall_offset() -> float:
    """What to add to a ``perf_counter_ns()`` reading, in seconds, to get POSIX seconds."""
    return time.time() - perf_counter_ns() * 1e-9


def _unbound(exc: TypeError) -> bool:
    """Whether a TypeError caught around the entrypoint call was raised by that call itself.

    Then the arguments did not bind and the body never ran; a TypeError from
    inside the entrypoint has a deeper traceback and propagates unchanged.
    """
    return exc.__traceback__ is not None and exc.__traceback__.tb_next is None


def _optional_name(name: str | None) -> str | None:
    return None if name is None else check_interface_name(name)


def _optional_customer(customer: str | None) -> str | None:
    return None if customer is None else check_customer_name(customer)


def _asked_customer(ctx: Any) -> tuple[str | None, str | None]:
    """(customer, parent call id) of a context whose call failed before it had a route."""
    if type(ctx) is CallContext:
        return ctx.customer, ctx.call_id
    try:
        customer = ctx["customer"] if ctx is not None else None
    except Exception:  # noqa: BLE001 - a context that is no mapping: no customer to record
        return None, None
    return (customer if isinstance(customer, str) and is_customer_name(customer) else None), None


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
    with ``version=None`` gets; a pin to an interface or version that does
    not exist is refused here.

    ``database`` (a path or URL) is the catalog database: telemetry is kept
    there (with ``retention_days`` of raw call records), else in memory.
    ``customer_database`` is the template of each customer's own database
    (``ctx.db``), e.g. ``"var/customers/{customer}.sqlite3"``.
    ``telemetry=False`` records nothing. ``entry_points=True`` adds the
    interface and plugin folders installed distributions contribute through
    the entry-point groups ``taskcatalog.interfaces`` and
    ``taskcatalog.plugins`` (``from_config`` and the command line turn it on
    unless the configuration says ``entry_points = false``).
    """

    def __init__(
        self,
        interfaces: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        plugins: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = (),
        *,
        database: str | os.PathLike[str] | None = None,
        customer_database: str | None = None,
        telemetry: bool = True,
        retention_days: float = 30.0,
        reload_interval: float | None = None,
        pins: Pins | None = None,
        entry_points: bool = False,
    ) -> None:
        interface_dirs = _folders(interfaces, "interfaces")
        if not interface_dirs:
            raise ValueError("interfaces must name at least one folder")
        plugin_dirs = _folders(plugins, "plugins")
        # Folders of installed distributions (entry-point groups), after the given ones.
        self._contributions = [] if not entry_points else contributions(INTERFACES) + contributions(PLUGINS)
        for contribution in self._contributions:
            if contribution.folder is None:
                continue
            if contribution.group == INTERFACES:
                interface_dirs = _folders([*interface_dirs, contribution.folder], "interfaces")
            else:
                plugin_dirs = _folders([*plugin_dirs, contribution.folder], "plugins")
        self._interface_dirs, self._plugin_dirs = interface_dirs, plugin_dirs
        if reload_interval is not None and (
            isinstance(reload_interval, bool)
            or not isinstance(reload_interval, (int, float))
            or not math.isfinite(reload_interval)
            or reload_interval < 0
        ):
            raise ValueError(f"reload_interval must be a finite number of seconds >= 0, not {reload_interval!r}")
        if not isinstance(telemetry, bool):
            raise TypeError(f"telemetry must be True or False, not {telemetry!r}")
        if (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, (int, float))
            or not math.isfinite(retention_days)
            or retention_days <= 0
        ):
            raise ValueError(f"retention_days must be a finite number of days > 0, not {retention_days!r}")
        if customer_database is not None and (not isinstance(customer_database, str) or "{customer}" not in customer_database):
            raise ValueError(f"customer_database must be a path or URL template containing {{customer}}, not {customer_database!r}")
        self._reload_interval = reload_interval
        self._lock = threading.RLock()  # one reload (or close) at a time
        self._closed = False
        self._db = None if database is None else open_catalog_database(database)
        # Telemetry: the call path appends to buffers (bounded without a
        # database); with one, a writer thread moves them into it.
        self._buffers = None if not telemetry else Buffers(MEMORY_LIMIT if self._db is None else None)
        self._buffer = None if self._buffers is None else self._buffers.calls  # None: telemetry is off
        self._telemetry: Telemetry | None = None
        self._store: MemoryStore | DatabaseStore | None = None
        if self._buffers is not None:
            if self._db is None:
                self._store = MemoryStore(self._buffers, process_prefix, _wall_offset)
            else:
                self._store = DatabaseStore(self._db)
                self._telemetry = Telemetry(
                    self._buffers, self._store, prefix=process_prefix, retention=retention_days * 86400.0
                )
        self._customer_dbs: CustomerDatabases | None = None
        self._batches: Batches | None = None
        tree = scan(self._interface_dirs, self._plugin_dirs)
        self._swap(Snapshot(tree, _check_pins(pins), recording=self._buffers))
        for problem in self._snapshot.tree.problems:
            LOG.warning("%s", problem)
        try:
            self._check_pinned()
        except BaseException:
            self.close()  # the database and the writer thread opened above
            raise
        self._customer_dbs = None if customer_database is None else CustomerDatabases(customer_database, self._plugin_dirs)
        # Monotonic time of the next automatic disk check; None disables it.
        self._next_scan: float | None = None if reload_interval is None else time.monotonic() + reload_interval

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

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> TelemetryReport | None:
        """Flush telemetry, close the databases and release the loaded modules.

        Calls made after closing raise CatalogError. Returns what became of
        the recorded calls (None when telemetry is off); records that could
        finally not be written are counted there and logged.
        """
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._next_scan = None
            self._swap(Snapshot(self._snapshot.tree, {}))
        report = None
        if self._telemetry is not None:
            report = self._telemetry.close()
        elif self._buffer is not None:
            report = TelemetryReport(written=len(self._buffer))  # kept in memory, nothing to write
        if self._customer_dbs is not None:
            self._customer_dbs.close()
        if self._db is not None:
            self._db.close()
        return report

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **overrides: Any) -> Catalog:
        """A catalog as ``taskcatalog.toml`` at ``path`` describes it (see docs/configuration.md).

        ``overrides`` replace what the file says, by constructor argument name
        (``telemetry=False``, ``database=None``, ...).
        """
        config = load_config(path)
        arguments: dict[str, Any] = {
            "database": config.database,
            "customer_database": config.customer_database,
            "telemetry": config.telemetry,
            "retention_days": config.retention_days,
            "reload_interval": config.reload_interval,
            "pins": config.pins,
            "entry_points": config.entry_points,
        }
        unknown = sorted(set(overrides) - set(arguments))
        if unknown:
            raise TypeError(f"from_config() got unknown override(s): {', '.join(unknown)}")
        arguments.update(overrides)
        try:
            return cls(config.interfaces, config.plugins, **arguments)
        except ConfigError as exc:
            raise ConfigError(f"{config.path}: {exc.message}", path=config.path) from None

    def folders(self) -> list[dict[str, Any]]:
        """Where interfaces and plugins come from: each folder, and the distribution that installed it."""
        installed = {c.folder: c.distribution for c in self._contributions if c.folder is not None}
        return [
            {"kind": kind, "folder": folder, "distribution": installed.get(folder)}
            for kind, folders in (("interfaces", self._interface_dirs), ("plugins", self._plugin_dirs))
            for folder in folders
        ]

    def path_of(self, name: str) -> str:
        """The file of interface ``name`` (nothing is imported); InterfaceNotFound if there is none."""
        source = self._snapshot.tree.interfaces.get(name)
        if source is None:
            self._snapshot.interface(name)  # raises the error that says what is wrong
            raise AssertionError("unreachable")  # pragma: no cover
        return source.path

    def pins_of(self, name: str) -> dict[str, int]:
        """The customers pinned to a version of interface ``name``: customer -> version."""
        return {customer: versions[name] for customer, versions in self._snapshot.pins.items() if name in versions}

    def origin(self, path: str) -> str | None:
        """The distribution that installed the file at ``path``, or None for a folder of this project."""
        for contribution in self._contributions:
            folder = contribution.folder
            if folder is not None and path.startswith(folder + os.sep):
                return contribution.distribution
        return None

    def _check_pinned(self) -> None:
        """Refuse pins to interfaces or versions that do not exist (imports the pinned interfaces)."""
        for customer, versions in self._snapshot.pins.items():
            for name, version in versions.items():
                where = f"pin customers.{customer}.versions.{name} = {version}"
                if name not in self._snapshot.tree.interfaces:
                    raise ConfigError(f"{where}: there is no interface {name!r} in the catalog")
                try:
                    known = self.versions(name)
                except CatalogError as exc:
                    raise ConfigError(f"{where}: interface {name!r} does not load: {exc.message}") from exc
                if version not in known:
                    listed = ", ".join(map(str, known)) or "none"
                    raise ConfigError(f"{where}: interface {name!r} has no version {version} (versions: {listed})")

    # -- the call path ---------------------------------------------------

    def call(self, name: str, version: int | str | None, ctx: Any = None, /, **kwargs: Any) -> Any:
        """Call ``name`` at ``version`` for the customer of ``ctx``; return what it returns.

        ``version`` is an int, ``"latest"`` or None (the customer's pin, else
        latest). ``ctx`` is a ``Context``, a mapping with a ``"customer"``
        key, or None for a call without a customer. Errors of resolution are
        ``CatalogError``s; exceptions raised by the entrypoint propagate
        unchanged; a task that is not actionable returns None.
        """
        call_ctx = new_call_context()
        if self._buffer is not None:
            call_ctx._number = next_call_number()
            value = self._recorded(name, version, ctx, kwargs, call_ctx)
            return None if value is _SKIPPED else value
        # The commonest call is made here: telemetry off, no automatic reload,
        # a dict or a Context, a route already resolved to a plain function.
        # That spares it _invoke's frame and general dispatch (3 to 6% of the
        # call in bench/dispatch.py). _invoke makes such calls the same way,
        # for run and nested calls, and makes every other call.
        kind = type(ctx)
        data: Mapping[str, Any] | None = ctx if kind is dict else ctx._data if kind is Context else None
        if data is not None and self._next_scan is None:
            try:
                route = self._routes[(name, version, data["customer"], type(version))]
            except (KeyError, TypeError):  # _invoke says what is wrong, or resolves the route
                route = None
            if route is not None and route.plain:
                call_ctx._route, call_ctx._data, call_ctx.parent_id = route, data, None
                try:
                    return route.target(call_ctx, **kwargs)
                except TypeError as exc:
                    if _unbound(exc):
                        raise route.argument_error(kwargs) from None
                    raise
        value = self._invoke(name, version, ctx, kwargs, call_ctx)
        return None if value is _SKIPPED else value

    def run(self, name: str, version: int | str | None, ctx: Any = None, /, **kwargs: Any) -> CallResult:
        """Like ``call``, but never raises for a failure: returns a ``CallResult``."""
        return CallResult(*self._outcome(name, version, ctx, kwargs))

    def _outcome(
        self, name: str, version: int | str | None, ctx: Any, kwargs: dict[str, Any]
    ) -> tuple[str, Any, BaseException | None, str, float]:
        """What ``run`` returns, as a tuple: (status, value, error, call id, seconds).

        Batches take it as it is, for every row: building the frozen
        ``CallResult`` would be a tenth of a cheap row's Python time.
        """
        call_ctx = new_call_context()
        call_ctx._number = number = next_call_number()
        start = perf_counter()
        try:
            if self._buffer is None:
                value = self._invoke(name, version, ctx, kwargs, call_ctx)
            else:
                value = self._recorded(name, version, ctx, kwargs, call_ctx)
        except Exception as exc:
            return "error", None, exc, call_id_of(number), perf_counter() - start
        if value is _SKIPPED:
            return "skipped", None, None, call_id_of(number), perf_counter() - start
        return "ok", value, None, call_id_of(number), perf_counter() - start

    def _recorded(self, name: str, version: Any, ctx: Any, kwargs: dict[str, Any], call_ctx: CallContext) -> Any:
        """``_invoke``, timed, and recorded into the telemetry buffer whatever happens.

        ``call_ctx`` comes with its call number. The record is one flat
        tuple of plain values, its plugin spans (key and duration per plugin
        run) appended to it, in the short form for a call made by an
        executor that returned (see telemetry.RawCall): the collector
        stops tracking such a tuple the first time it meets it, where a
        nested tuple is untracked one level per collection (a record would
        be promoted, and counted towards full collections, for as long as it
        waits in the buffer), and a list would stay tracked.
        """
        call_ctx._spans = ()  # the slot calls add each plugin run's span
        start = perf_counter_ns()  # integers: cheap to hand to the store in bulk
        try:
            value = self._invoke(name, version, ctx, kwargs, call_ctx)
        except BaseException as exc:
            self._record_failure(call_ctx, name, version, ctx, start, perf_counter_ns() - start, exc)
            raise
        duration = perf_counter_ns() - start
        parent = call_ctx.parent_id
        record: tuple[Any, ...]
        if parent is None and value is not _SKIPPED:
            record = (call_ctx._number, call_ctx._route.key, start, duration)
        else:
            status = "skipped" if value is _SKIPPED else "ok"
            record = (call_ctx._number, call_ctx._route.key + 1, start, duration, status, parent, None, None)
        self._buffer.append(record + call_ctx._spans)  # type: ignore[union-attr]
        return value

    def _record_failure(
        self, call_ctx: CallContext, name: Any, version: Any, ctx: Any, start: int, duration: int, exc: BaseException
    ) -> None:
        """Record a call that raised: under its route when it got one, else under what was asked."""
        assert self._buffers is not None
        route: Route | None = getattr(call_ctx, "_route", None)
        if route is not None:
            key, parent = route.key, call_ctx.parent_id
        else:
            customer, parent = _asked_customer(ctx)
            key = self._buffers.call_keys(
                name if isinstance(name, str) else brief(repr(name), 100),
                version if type(version) is int else None,
                customer,
            )
        self._buffers.calls.append((
            call_ctx._number, key + 1, start, duration, "error", parent, type(exc).__name__, brief(exc),
        ) + call_ctx._spans)

    def _invoke(self, name: str, version: Any, ctx: Any, kwargs: dict[str, Any], call_ctx: CallContext) -> Any:
        """Resolve and run one call: the path of ``run``, of nested calls, of recorded calls, and of
        every call ``call`` does not make itself.

        ``call_ctx`` is new (with its call number and spans when recorded);
        this fills in the route, the data and the parent. A route not
        resolved yet, or deprecated, goes through ``_resolve``.
        """
        if self._next_scan is not None and time.monotonic() >= self._next_scan:
            self._poll()
        customer: Any
        data: Mapping[str, Any]
        parent: str | None
        if type(ctx) is dict:  # the classic dict context, the commonest case
            data, parent = ctx, None
            try:
                customer = ctx["customer"]
            except KeyError:
                customer = _MISSING
        elif type(ctx) is Context:  # its data is a dict with the customer (see Context)
            data, parent = ctx._data, None
            customer = data["customer"]
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
        key: RouteKey = (name, version, customer, type(version))
        try:
            route = self._routes[key]
        except (KeyError, TypeError):  # not resolved yet, or unhashable: _resolve says what is wrong
            route = None
        if route is None or route.deprecation is not None:
            route = self._resolve(key, route, data)
        if route.check_args:
            keys = kwargs.keys()
            if not (keys >= route.required and (route.var_kw or keys <= route.params)) or (
                route.entrypoint.context_param in keys
            ):
                raise route.argument_error(kwargs)
        call_ctx._route, call_ctx._data, call_ctx.parent_id = route, data, parent
        if route.is_task:
            task = route.target()
            if not task.is_actionable(call_ctx, **kwargs):
                return _SKIPPED
            return task.execute(call_ctx, **kwargs)
        try:
            return route.target(call_ctx, **kwargs)
        except TypeError as exc:
            if _unbound(exc):
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
        """The customer's own database (``ctx.db``), opened and migrated on first use; None
        when the catalog has no ``customer_database`` template."""
        check_customer_name(customer)
        if self._customer_dbs is None:
            return None
        if self._closed:
            raise CatalogError(f"{self!r} is closed")
        return self._customer_dbs.get(customer)

    @property
    def database(self) -> Connection | None:
        """The catalog database (telemetry, batches), or None."""
        return self._db

    @property
    def batches(self) -> Batches:
        """The batches of the catalog database (docs/batches.md); CatalogError without a database."""
        if self._db is None:
            raise CatalogError("batches live in the catalog database: give the catalog one (database=..., or "
                               "[catalog] database in taskcatalog.toml)")
        if self._closed:
            raise CatalogError(f"{self!r} is closed")
        if self._batches is None:
            self._batches = Batches(self, self._db)
        return self._batches

    # -- telemetry -----------------------------------------------------------

    def _recorded_store(self) -> MemoryStore | DatabaseStore:
        if self._store is None:
            raise CatalogError("telemetry is off for this catalog (telemetry=False): nothing was recorded")
        if self._telemetry is not None:
            self._telemetry.flush()  # what this process recorded so far is in the answer
        return self._store

    def stats(
        self, interface: str | None = None, customer: str | None = None, since: dt.datetime | str | None = None
    ) -> list[CallStats]:
        """Calls, errors, p50, p95 and max (seconds) per (interface, version, customer).

        ``since`` (a datetime, naive meaning UTC, or an ISO 8601 string) counts
        calls from the start of the hour it falls in.
        """
        return self._recorded_store().stats(_optional_name(interface), _optional_customer(customer), since_seconds(since))

    def usage(self, interface: str | None = None, customer: str | None = None) -> list[Usage]:
        """Calls, first and last call per (interface, version, customer), with the version's
        deprecation and sunset: who still calls a version, and since when not."""
        rows = self._recorded_store().usage(_optional_name(interface), _optional_customer(customer))
        found = []
        for name, version, who, calls, first, last in rows:
            advice, sunset = self._deprecation(name, version)
            found.append(Usage(name, version, who, calls, utc(first), utc(last), advice, sunset))
        return found

    def history(
        self,
        interface: str | None = None,
        customer: str | None = None,
        since: dt.datetime | str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[CallRecord]:
        """The newest call records first, with their parent links and plugin invocations."""
        if status is not None and status not in ("ok", "error", "skipped"):
            raise ValueError(f"status must be 'ok', 'error' or 'skipped', not {status!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, not {limit!r}")
        store = self._recorded_store()
        return store.history(_optional_name(interface), _optional_customer(customer), since_seconds(since), status, limit)

    def report(
        self, path: str | os.PathLike[str], since: dt.datetime | str | None = None, interface: str | None = None
    ) -> str:
        """Write the HTML report (one self-contained page) to ``path``; return the path written.

        ``since`` (default: 14 days ago) limits the latency, error and plugin
        figures; ``interface`` limits the whole page to one interface.
        """
        from .report_data import gather
        from .report_page import render

        if interface is not None:
            check_interface_name(interface)
            self.path_of(interface)  # InterfaceNotFound before anything is written
        page = render(gather(self, since, interface))
        target = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        temporary = f"{target}.tmp-{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(page)
        os.replace(temporary, target)  # never a half-written report
        return target

    def _deprecation(self, name: str, version: int | None) -> tuple[str | None, dt.date | None]:
        if version is None:
            return None, None
        loaded = self._snapshot.interfaces.get(name)
        if loaded is None and name in self._snapshot.tree.interfaces:
            try:
                loaded = self._snapshot.interface(name)
            except CatalogError:
                return None, None
        entry = loaded.entrypoints.get(version) if isinstance(loaded, LoadedInterface) else None
        if entry is None or entry.deprecation is None:
            return None, None
        return entry.deprecation.message, entry.deprecation.sunset

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
            if self._customer_dbs is not None:
                self._customer_dbs.forget_failures()  # a fixed migration gets its chance
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
                "context_parameter": entry.context_param,
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
        broken = [c.problem for c in self._contributions if c.problem is not None]
        return broken + self._snapshot.problems()
