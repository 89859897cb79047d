"""Plugin slots: the markers, the contracts, and the caller behind ``ctx.plugins``.

An entrypoint declares its slots with ``@slot``; a customer's function fills
one with ``@plugin_config``. Both decorators only attach plain data to the
function and return it unchanged, so decorating costs nothing per call. The
contract of a slot is checked once, when a plugin file is bound to an
interface (``fit_problems``); the call path (``call_if_present``, which
``ctx.plugins.call`` also uses) is a dictionary lookup, the plugin call and,
when the slot declares ``returns``, one ``isinstance``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CatalogError, ContractError, PluginError

__all__ = ["plugin_config", "slot", "call_if_present", "SlotContract", "PluginConfig"]

SlotId = str | int

SLOTS_ATTR = "__taskcatalog_slots__"
PLUGIN_ATTR = "__taskcatalog_plugin__"

# PEP 484's numeric tower: where a float is expected an int will do, and so on.
_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (float, int), complex: (complex, float, int)}


def _accepted(types: tuple[type, ...]) -> tuple[type, ...]:
    out: list[type] = []
    for kind in types:
        for accepted in _PROMOTIONS.get(kind, (kind,)):
            if accepted not in out:
                out.append(accepted)
    return tuple(out)


def _type_name(kind: Any) -> str:
    if isinstance(kind, tuple):
        return " | ".join(_type_name(k) for k in kind)
    return getattr(kind, "__qualname__", None) or repr(kind)


def _check_slot_id(slot_id: object, where: str) -> SlotId:
    if isinstance(slot_id, bool) or not isinstance(slot_id, (str, int)):
        raise TypeError(f"{where}: a slot id is a str or an int, not {slot_id!r}")
    return slot_id


@dataclass(frozen=True, slots=True)
class SlotContract:
    """What a slot passes to its plugins and what it expects back."""

    id: SlotId
    args: tuple[tuple[str, Any], ...] | None = None  # (name, type) in call order
    returns: tuple[type, ...] | None = None  # as declared; None = not checked
    many: bool = False
    accepts: tuple[type, ...] | None = field(default=None, compare=False)  # for isinstance

    def describe(self) -> dict[str, Any]:
        return {
            "slot": self.id,
            "args": None if self.args is None else {n: _type_name(t) for n, t in self.args},
            "returns": None if self.returns is None else _type_name(self.returns),
            "many": self.many,
        }

    def signature(self) -> str:
        args = "..." if self.args is None else ", ".join(f"{n}: {_type_name(t)}" for n, t in self.args)
        returns = "" if self.returns is None else f" -> {_type_name(self.returns)}"
        return f"(ctx, {args}){returns}"


def slot(
    slot_id: SlotId,
    *,
    args: Mapping[str, Any] | None = None,
    returns: type | tuple[type, ...] | None = None,
    many: bool = False,
) -> Callable[[Any], Any]:
    """Declare a plugin slot on an entrypoint (a function or a ``BaseTask`` class).

    ``args`` maps each argument the entrypoint passes to its type, in the
    order it passes them; ``returns`` is the type (or tuple of types) a plugin
    must return. With ``many=True`` every plugin of the customer runs and
    ``ctx.plugins.call`` gives the list of results.
    """
    _check_slot_id(slot_id, "@slot")
    if args is not None:
        if not isinstance(args, Mapping):
            raise TypeError(f"@slot({slot_id!r}): args must be a mapping of name to type")
        for name in args:
            if not isinstance(name, str) or not name.isidentifier():
                raise TypeError(f"@slot({slot_id!r}): argument name {name!r} is not an identifier")
        arg_items: tuple[tuple[str, Any], ...] | None = tuple(args.items())
    else:
        arg_items = None
    if returns is None:
        return_types = None
    else:
        return_types = returns if isinstance(returns, tuple) else (returns,)
        if not return_types or not all(isinstance(t, type) for t in return_types):
            raise TypeError(
                f"@slot({slot_id!r}): returns must be a type or a tuple of types, not {returns!r}"
            )
    if not isinstance(many, bool):
        raise TypeError(f"@slot({slot_id!r}): many must be True or False")
    contract = SlotContract(
        slot_id, arg_items, return_types, many, None if return_types is None else _accepted(return_types)
    )

    def mark(target: Any) -> Any:
        declared = dict(getattr(target, SLOTS_ATTR, {}))
        if slot_id in declared:
            raise TypeError(f"{getattr(target, '__name__', target)!r} declares slot {slot_id!r} twice")
        # Decorators apply bottom-up; prepend so the mapping reads top-down.
        setattr(target, SLOTS_ATTR, {slot_id: contract, **declared})
        return target

    return mark


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """What ``@plugin_config`` attached to a plugin function."""

    versions: frozenset[int] | None  # None: every version declaring the slot
    slot: SlotId
    order: int


def _check_versions(version: object) -> frozenset[int] | None:
    if version is None:
        return None
    items = [version] if isinstance(version, int) else version
    if isinstance(items, (str, bytes)) or not isinstance(items, Collection):
        raise TypeError(f"@plugin_config: version must be an int or a collection of ints, not {version!r}")
    versions = frozenset(items)
    for item in versions:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"@plugin_config: version must be an int or a collection of ints, not {version!r}")
        if item < 1:
            raise ValueError(f"@plugin_config: versions start at 1, got {item!r}")
    if not versions:
        raise ValueError("@plugin_config: version is an empty collection; omit it to mean every version")
    return versions


def plugin_config(
    version: int | Collection[int] | None = None,
    slot: SlotId = 0,
    order: int = 0,
    *,
    ver: int | Collection[int] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function in ``plugins/<customer>/<interface>.py`` as filling a slot.

    ``version`` (or its synonym ``ver``) is an int, a collection of ints, or
    omitted for every version that declares the slot. Lower ``order`` runs
    first in a ``many=True`` slot.
    """
    if version is not None and ver is not None:
        raise TypeError("@plugin_config: give version= or ver=, not both")
    versions = _check_versions(version if version is not None else ver)
    _check_slot_id(slot, "@plugin_config")
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"@plugin_config: order must be an int, not {order!r}")
    config = PluginConfig(versions, slot, order)

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function):
            raise TypeError(f"@plugin_config decorates a function, not {function!r}")
        setattr(function, PLUGIN_ATTR, config)
        return function

    return mark


@dataclass(frozen=True, slots=True)
class Plugin:
    """A plugin function found in a customer's file, with where it lives."""

    function: Callable[..., Any]
    config: PluginConfig
    name: str
    path: str
    line: int | None

    @property
    def where(self) -> str:
        return f"{self.name} ({self.path}:{self.line})" if self.line else f"{self.name} ({self.path})"


def _subclass(inner: Any, outer: Any) -> bool | None:
    """issubclass with the numeric tower, or None when either is not a plain class."""
    if not isinstance(inner, type) or not isinstance(outer, type):
        return None
    return issubclass(inner, _accepted((outer,)))


def fit_problems(plugin: Plugin, contract: SlotContract) -> list[str]:
    """Reasons why ``plugin`` cannot fill a slot with ``contract`` (empty: it fits)."""
    try:
        signature = inspect.signature(plugin.function)
    except (TypeError, ValueError) as exc:
        return [f"its signature cannot be read: {exc}"]
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in (*positional, inspect.Parameter.VAR_POSITIONAL):
        return ["its first parameter must take the call context"]
    if contract.args is None:
        return []
    names = [name for name, _ in contract.args]
    problems = []
    try:
        signature.bind(None, **dict.fromkeys(names))
    except TypeError as exc:
        problems.append(f"it cannot take the slot's arguments by name: {exc}")
    try:
        bound = signature.bind(None, *names).arguments
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
                f"parameter {name!r} is annotated {_type_name(hints[name])} "
                f"but the slot passes {_type_name(declared)}"
            )
    if contract.returns is not None and "return" in hints:
        fits = [_subclass(hints["return"], kind) for kind in contract.returns]
        if None not in fits and not any(fits):
            problems.append(
                f"it is annotated to return {_type_name(hints['return'])} "
                f"but the slot expects {_type_name(contract.returns)}"
            )
    return problems


@dataclass(frozen=True, slots=True)
class SlotBinding:
    """One slot of one (customer, interface, version): the plugins that fill it."""

    contract: SlotContract
    label: str  # "interface_a v1" for messages
    customer: str | None
    plugins: tuple[Plugin, ...] = ()
    # Copied out of ``contract`` and ``plugins`` so the call path reads one attribute each.
    functions: tuple[Callable[..., Any], ...] = field(init=False)
    many: bool = field(init=False)
    accepts: tuple[type, ...] | None = field(init=False)
    single: Callable[..., Any] | None = field(init=False)  # the plugin of a filled single slot

    def __post_init__(self) -> None:
        object.__setattr__(self, "functions", tuple(p.function for p in self.plugins))
        object.__setattr__(self, "many", self.contract.many)
        object.__setattr__(self, "accepts", self.contract.accepts)
        single = self.functions[0] if self.functions and not self.many else None
        object.__setattr__(self, "single", single)

    def failed(self, plugin: Plugin, exc: BaseException) -> PluginError:
        return PluginError(
            f"customer {self.customer!r}, {self.label}, slot {self.contract.id!r}: "
            f"plugin {plugin.where} raised {type(exc).__name__}: {exc}",
            customer=self.customer,
            path=plugin.path,
            line=plugin.line,
        )

    def wrong_type(self, plugin: Plugin, value: Any) -> ContractError:
        return ContractError(
            f"customer {self.customer!r}, {self.label}, slot {self.contract.id!r}: "
            f"plugin {plugin.where} returned {type(value).__name__} {value!r:.80}, "
            f"expected {_type_name(self.contract.returns)}",
            customer=self.customer,
            path=plugin.path,
            line=plugin.line,
        )


_NOT_FOUND = (False, None)


def call_if_present(ctx: Any, slot_id: SlotId, /, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run the customer's plugins in slot ``slot_id`` of the running entrypoint.

    Returns ``(found, value)``: for a single slot ``value`` is the plugin's
    result (``(False, None)`` without a plugin); for a ``many=True`` slot it is
    the list of results, and ``found`` says whether there was any plugin.

    The classic helper, and the one implementation behind
    ``ctx.plugins.call``. It is on the path of every plugin call, so it reads
    only precomputed attributes of the ``SlotBinding``.
    """
    try:
        binding = ctx._route.slots[slot_id]
    except (KeyError, TypeError):
        raise _undeclared(ctx, slot_id) from None
    except AttributeError:  # not a CallContext: a stand-in in someone's unit test
        return ctx.plugins.call(slot_id, *args, **kwargs)
    single = binding.single
    if single is not None:
        try:
            value = single(ctx, *args, **kwargs)
        except Exception as exc:
            raise binding.failed(binding.plugins[0], exc) from exc
        if binding.accepts is not None and not isinstance(value, binding.accepts):
            raise binding.wrong_type(binding.plugins[0], value)
        return True, value
    if not binding.many:
        return _NOT_FOUND
    functions = binding.functions
    accepts = binding.accepts
    values = []
    for index, function in enumerate(functions):
        try:
            value = function(ctx, *args, **kwargs)
        except Exception as exc:
            raise binding.failed(binding.plugins[index], exc) from exc
        if accepts is not None and not isinstance(value, accepts):
            raise binding.wrong_type(binding.plugins[index], value)
        values.append(value)
    return bool(functions), values


def _undeclared(ctx: Any, slot_id: object) -> CatalogError:
    route = ctx._route
    declared = ", ".join(repr(s) for s in route.slots) or "none"
    return route.error(
        CatalogError,
        f"{route.entrypoint.label} ({route.entrypoint.where}) calls slot {slot_id!r} but does not declare it "
        f"(declared: {declared}); add @slot({slot_id!r}, ...) to the entrypoint [customer {ctx.customer!r}]",
    )


class PluginCaller:
    """``ctx.plugins``: the slots of the running entrypoint, for its customer."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def call(self, slot_id: SlotId, /, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Run the plugins in ``slot_id``; return ``(found, value)`` (see ``call_if_present``)."""
        return call_if_present(self._ctx, slot_id, *args, **kwargs)

    def slots(self) -> list[SlotId]:
        """The slots the running entrypoint declares."""
        return list(self._ctx._route.slots)

    def has(self, slot_id: SlotId) -> bool:
        """True when the customer has at least one plugin in ``slot_id``."""
        binding = self._ctx._route.slots.get(slot_id)
        return bool(binding and binding.functions)

