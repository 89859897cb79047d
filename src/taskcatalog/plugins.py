"""Plugin slots as plain data: the ``@slot`` and ``@plugin_config`` markers.

An entrypoint declares its slots with ``@slot``; a customer's function fills
one with ``@plugin_config``. Both decorators only attach plain data to the
function and return it unchanged, so decorating costs nothing per call.
Checking a plugin against its slot's contract happens once, when a plugin
file is bound to an interface (``binding.py``); calling the plugins of a
slot is ``slots.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import location

__all__ = ["plugin_config", "slot", "slot_config", "SlotContract", "PluginConfig", "Plugin", "SlotId"]

SlotId = str | int

SLOTS_ATTR = "__taskcatalog_slots__"
PLUGIN_ATTR = "__taskcatalog_plugin__"

# PEP 484's numeric tower: where a float is expected an int will do, and so on.
_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (float, int), complex: (complex, float, int)}


def accepted_types(types: tuple[type, ...]) -> tuple[type, ...]:
    """The classes ``isinstance`` must accept for declared ``types`` (the numeric tower applied)."""
    out: list[type] = []
    for kind in types:
        for accepted in _PROMOTIONS.get(kind, (kind,)):
            if accepted not in out:
                out.append(accepted)
    return tuple(out)


def type_name(kind: Any) -> str:
    """How messages name a type or a tuple of types: ``int``, ``int | float``."""
    if isinstance(kind, tuple):
        return " | ".join(type_name(k) for k in kind)
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
    context: bool = True  # plugins take the call context first (False: the POC's include_ctx=False)

    def describe(self) -> dict[str, Any]:
        return {
            "slot": self.id,
            "args": None if self.args is None else {n: type_name(t) for n, t in self.args},
            "returns": None if self.returns is None else type_name(self.returns),
            "many": self.many,
            "context": self.context,
        }

    def signature(self) -> str:
        args = "..." if self.args is None else ", ".join(f"{n}: {type_name(t)}" for n, t in self.args)
        returns = "" if self.returns is None else f" -> {type_name(self.returns)}"
        return f"({'ctx, ' if self.context else ''}{args}){returns}"


def slot(
    slot_id: SlotId,
    *,
    args: Mapping[str, Any] | None = None,
    returns: type | tuple[type, ...] | None = None,
    many: bool = False,
    context: bool = True,
) -> Callable[[Any], Any]:
    """Declare a plugin slot on an entrypoint (a function or a ``BaseTask`` class).

    ``args`` maps each argument the entrypoint passes to its type, in the
    order it passes them; ``returns`` is the type (or tuple of types) a plugin
    must return. With ``many=True`` every plugin of the customer runs and
    ``ctx.plugins.call`` gives the list of results. ``context=False`` (for
    catalogs ported from the task-catalog POC) calls plugins without the call
    context as first argument.
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
    if not isinstance(context, bool):
        raise TypeError(f"@slot({slot_id!r}): context must be True or False")
    contract = SlotContract(
        slot_id, arg_items, return_types, many, None if return_types is None else accepted_types(return_types), context
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
        return f"{self.name} ({location(self.path, self.line)})"




# The keys of a slot in the task-catalog POC's @slot_config(config={...}).
_POC_KEYS = ("include_ctx", "include_kwargs", "mandatory_args", "returns", "return_type")


def slot_config(config: Mapping[SlotId, Mapping[str, Any]]) -> Callable[[Any], Any]:
    """The task-catalog POC's way to declare slots, mapped onto ``@slot``.

    ``config`` maps each slot id to ``include_ctx`` (plugins take the call
    context: ``@slot(context=...)``), ``include_kwargs`` (accepted; the
    arguments a plugin gets are what the entrypoint passes),
    ``mandatory_args`` (``args``), ``returns`` and ``return_type`` (the
    return type is checked when ``returns`` is true and a type is given).
    See docs/migrating-from-the-poc.md.
    """
    if not isinstance(config, Mapping) or not config:
        raise TypeError("@slot_config: config must be a non-empty mapping of slot id to its settings")
    marks = []
    for slot_id, options in config.items():
        if not isinstance(options, Mapping):
            raise TypeError(f"@slot_config: the settings of slot {slot_id!r} must be a mapping, not {options!r}")
        unknown = sorted(set(options) - set(_POC_KEYS), key=str)
        if unknown:
            raise TypeError(
                f"@slot_config: slot {slot_id!r} has unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(_POC_KEYS)}"
            )
        include_ctx = options.get("include_ctx", True)
        returns = options.get("return_type") if options.get("returns", True) else None
        marks.append(slot(slot_id, args=options.get("mandatory_args"), returns=returns, context=include_ctx))

    def mark(target: Any) -> Any:
        for apply in reversed(marks):  # declared top-down, as @slot lines would be
            target = apply(target)
        return target

    return mark
