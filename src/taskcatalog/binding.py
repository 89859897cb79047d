"""Binding a customer's plugin file to an interface: contracts checked once, at load time.

``bind()`` takes a loaded interface and one customer's loaded plugin file and
returns a ``Binding``: for each version, each declared slot and the plugins
filling it (``SlotBinding``), or the problems that fail the file closed. The
call path never checks a contract; it reads what was bound here.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CatalogError, ContractError, PluginError, brief, location
from .loading import Broken, LoadedInterface, LoadedPlugins, not_synchronous
from .plugins import Plugin, SlotContract, SlotId, accepted_types, type_name
from .results import Problem

__all__ = ["Binding", "SlotBinding", "SlotTable", "bind", "fit_problems"]


@dataclass(frozen=True, slots=True)
class SlotBinding:
    """One slot of one (customer, interface, version): the plugins that fill it."""

    contract: SlotContract
    plugins: tuple[Plugin, ...] = ()
    # Copied out of ``contract`` and ``plugins`` so the call path reads one attribute each.
    functions: tuple[Callable[..., Any], ...] = field(init=False)
    many: bool = field(init=False)
    accepts: tuple[type, ...] | None = field(init=False)
    single: Callable[..., Any] | None = field(init=False)  # the plugin of a filled single slot

    def __post_init__(self) -> None:
        functions = tuple(p.function if self.contract.context else _without_context(p.function) for p in self.plugins)
        object.__setattr__(self, "functions", functions)
        object.__setattr__(self, "many", self.contract.many)
        object.__setattr__(self, "accepts", self.contract.accepts)
        object.__setattr__(self, "single", functions[0] if functions and not self.contract.many else None)


SlotTable = Mapping[SlotId, SlotBinding]


def _without_context(function: Callable[..., Any]) -> Callable[..., Any]:
    """A plugin of a ``context=False`` slot, callable like the others (context first)."""

    def call(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


@dataclass(frozen=True, slots=True)
class Binding:
    """A customer's plugins bound to one interface: slot tables per version, or problems.

    ``error`` is what a call raises when there are problems (the route adds
    the version asked for); ``tables`` is empty then.
    """

    tables: Mapping[int, SlotTable]
    problems: tuple[Problem, ...] = ()
    error: CatalogError | None = None

    def slot_users(self) -> dict[tuple[int, SlotId], list[str]]:
        return {
            (version, slot_id): [p.name for p in binding.plugins]
            for version, table in self.tables.items()
            for slot_id, binding in table.items()
            if binding.plugins
        }


def _subclass(inner: Any, outer: Any) -> bool | None:
    """issubclass with the numeric tower, or None when either is not a plain class."""
    if not isinstance(inner, type) or not isinstance(outer, type):
        return None
    return issubclass(inner, accepted_types((outer,)))


def fit_problems(plugin: Plugin, contract: SlotContract) -> list[str]:
    """Reasons why ``plugin`` cannot fill a slot with ``contract`` (empty: it fits).

    Reading a signature may run the plugin's own code (a ``__signature__``
    property): whatever that raises is a reason, not a crash.
    """
    try:
        return _fit_problems(plugin, contract)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return [f"reading it raised {type(exc).__name__}: {brief(exc)}"]


def _fit_problems(plugin: Plugin, contract: SlotContract) -> list[str]:
    what = not_synchronous(plugin.function)
    if what is not None:
        return [f"it is {what}; async is not supported yet"]
    try:
        signature = inspect.signature(plugin.function)
    except (TypeError, ValueError) as exc:
        return [f"its signature cannot be read: {exc}"]
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if contract.context and (not params or params[0].kind not in (*positional, inspect.Parameter.VAR_POSITIONAL)):
        return ["its first parameter must take the call context"]
    if contract.args is None:
        return []
    names = [name for name, _ in contract.args]
    lead = (None,) if contract.context else ()  # the context, when the slot passes one
    problems = []
    try:
        signature.bind(*lead, **dict.fromkeys(names))
    except TypeError as exc:
        problems.append(f"it cannot take the slot's arguments by name: {exc}")
    try:
        bound = signature.bind(*lead, *names).arguments
    except TypeError as exc:
        problems.append(f"it cannot take the slot's arguments by position: {exc}")
    else:
        var_positional = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
        for name in names:
            if bound.get(name) != name and not (var_positional and name in bound.get(var_positional, ())):
                problems.append(f"argument {name!r} is not its parameter {name!r} in position")
                break
    try:
        hints = typing.get_type_hints(plugin.function)
    except Exception:  # unresolvable string annotations: nothing to compare
        hints = {}
    for name, declared in contract.args:
        if name in hints and _subclass(declared, hints[name]) is False:
            problems.append(
                f"parameter {name!r} is annotated {type_name(hints[name])} "
                f"but the slot passes {type_name(declared)}"
            )
    if contract.returns is not None and "return" in hints:
        fits = [_subclass(hints["return"], kind) for kind in contract.returns]
        if None not in fits and not any(fits):
            problems.append(
                f"it is annotated to return {type_name(hints['return'])} "
                f"but the slot expects {type_name(contract.returns)}"
            )
    return problems


def _unfilled(interface: LoadedInterface) -> dict[int, SlotTable]:
    return {
        version: {sid: SlotBinding(contract) for sid, contract in entry.slots.items()}
        for version, entry in interface.entrypoints.items()
    }


def bind(interface: LoadedInterface, plugins: LoadedPlugins | Broken | None, customer: str | None) -> Binding:
    """Check a customer's plugin file against the interface and build its slot tables.

    Any problem fails the whole file closed: the customer's calls of this
    interface raise instead of running with a plugin silently left out.
    """
    name = interface.name
    if plugins is None:
        return Binding(_unfilled(interface))
    assert customer is not None
    if isinstance(plugins, Broken):
        problem = plugins.problem(name, customer)
        error = PluginError(
            f"customer {customer!r} cannot call {name!r}: {plugins.error.message}",
            interface=name,
            customer=customer,
            path=plugins.source.path,
            line=plugins.error.line,
        )
        error.__cause__ = plugins.error
        return Binding({}, (problem,), error)

    entries = interface.entrypoints
    chosen: dict[int, dict[SlotId, list[Plugin]]] = {v: {s: [] for s in e.slots} for v, e in entries.items()}
    problems: list[Problem] = []

    def refuse(plugin: Plugin, kind: str, message: str) -> None:
        problems.append(Problem(plugin.path, plugin.line, kind, message, name, customer))

    for plugin in plugins.plugins:
        config = plugin.config
        slot_name = repr(config.slot)
        if config.versions is None:
            targets = sorted(v for v, e in entries.items() if config.slot in e.slots)
            if not targets:
                refuse(plugin, "contract", f"plugin {plugin.name} fills slot {slot_name}, which no version of {name!r} declares")
        else:
            targets = sorted(config.versions)
        for version in targets:
            entry = entries.get(version)
            if entry is None:
                known = ", ".join(map(str, entries)) or "none"
                refuse(plugin, "contract", f"plugin {plugin.name} targets {name} v{version}, which does not exist (versions: {known})")
                continue
            contract = entry.slots.get(config.slot)
            if contract is None:
                declared = ", ".join(repr(s) for s in entry.slots) or "none"
                refuse(
                    plugin, "contract",
                    f"plugin {plugin.name} fills slot {slot_name}, which {entry.label} does not declare (declared: {declared})",
                )
                continue
            reasons = fit_problems(plugin, contract)
            if reasons:
                refuse(
                    plugin, "contract",
                    f"plugin {plugin.name} does not fit slot {slot_name} of {entry.label}, "
                    f"which calls plugins as {contract.signature()}: {'; '.join(reasons)}",
                )
                continue
            chosen[version][config.slot].append(plugin)
    for version, slots in chosen.items():
        for slot_id, members in slots.items():
            if len(members) > 1 and not entries[version].slots[slot_id].many:
                names = " and ".join(p.where for p in members)
                refuse(
                    members[1], "conflict",
                    f"plugins {names} both fill single slot {slot_id!r} of {entries[version].label}; "
                    "keep one, or declare the slot with many=True",
                )
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more; run 'taskcatalog check')" if len(problems) > 1 else ""
        error = ContractError(
            f"customer {customer!r} cannot call {name!r}: {location(first.path, first.line)}: {first.message}{more}",
            interface=name,
            customer=customer,
            path=first.path,
            line=first.line,
        )
        return Binding({}, tuple(problems), error)
    tables = {
        version: {sid: SlotBinding(contract, tuple(chosen[version][sid])) for sid, contract in entries[version].slots.items()}
        for version in entries
    }
    return Binding(tables)
