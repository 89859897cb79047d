"""Calling the plugins of a slot, on the path of every plugin call.

``call_if_present(ctx, slot, ...)`` is the classic helper and the one
implementation behind ``ctx.plugins.call``: a dictionary lookup in the
route's slot table, the plugin call and, when the slot declares ``returns``,
one ``isinstance``. Everything it reads was precomputed by ``binding.py``;
errors are built by the route, so they name the whole call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from .binding import SlotBinding, SlotTable
from .plugins import SlotId
from .telemetry import Buffers

if TYPE_CHECKING:
    from .context import CallContext
    from .routes import Route

__all__ = ["call_if_present", "PluginCaller", "timed_table"]

_NOT_FOUND: tuple[bool, Any] = (False, None)


def call_if_present(ctx: Any, slot_id: SlotId, /, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run the customer's plugins in slot ``slot_id`` of the running entrypoint.

    Returns ``(found, value)``: for a single slot ``value`` is the plugin's
    result (``(False, None)`` without a plugin); for a ``many=True`` slot it is
    the list of results, and ``found`` says whether there was any plugin.

    The classic helper; ``ctx.plugins.call`` does the same. Both are on the
    path of every plugin call, so each runs a filled single slot itself (the
    lines below, repeated in ``PluginCaller.call``: a shared helper would cost
    every plugin call one more frame) and leaves the rest to ``_other_slot``.
    """
    try:
        route = ctx._route
        binding = route.slots[slot_id]
    except (KeyError, TypeError):
        raise route.undeclared_slot(slot_id) from None
    except AttributeError:  # not a CallContext: a stand-in in someone's unit test
        return ctx.plugins.call(slot_id, *args, **kwargs)  # type: ignore[no-any-return]
    single = binding.single
    if single is None:
        return _other_slot(ctx, route, binding, args, kwargs)
    try:
        value = single(ctx, *args, **kwargs)
    except Exception as exc:
        raise route.plugin_failed(binding, 0, exc) from exc
    if binding.accepts is not None and not isinstance(value, binding.accepts):
        raise route.plugin_returned(binding, 0, value)
    return True, value


def _other_slot(
    ctx: CallContext, route: Route, binding: SlotBinding, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """A single slot nobody fills, or a ``many=True`` slot: every plugin in order, results in a list."""
    if not binding.many:
        return _NOT_FOUND
    accepts = binding.accepts
    values: list[Any] = []
    for index, function in enumerate(binding.functions):
        try:
            value = function(ctx, *args, **kwargs)
        except Exception as exc:
            raise route.plugin_failed(binding, index, exc) from exc
        if accepts is not None and not isinstance(value, accepts):
            raise route.plugin_returned(binding, index, value)
        values.append(value)
    return bool(values), values


class PluginCaller:
    """``ctx.plugins``: the slots of the running entrypoint, for its customer."""

    __slots__ = ("_ctx",)

    _ctx: CallContext

    def __init__(self, ctx: CallContext) -> None:
        self._ctx = ctx

    def call(self, slot_id: SlotId, /, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Run the plugins in ``slot_id``; return ``(found, value)`` (see ``call_if_present``)."""
        ctx = self._ctx
        route = ctx._route
        try:
            binding = route.slots[slot_id]
        except (KeyError, TypeError):
            raise route.undeclared_slot(slot_id) from None
        single = binding.single
        if single is None:
            return _other_slot(ctx, route, binding, args, kwargs)
        try:
            value = single(ctx, *args, **kwargs)
        except Exception as exc:
            raise route.plugin_failed(binding, 0, exc) from exc
        if binding.accepts is not None and not isinstance(value, binding.accepts):
            raise route.plugin_returned(binding, 0, value)
        return True, value

    def slots(self) -> list[SlotId]:
        """The slots the running entrypoint declares."""
        return list(self._ctx._route.slots)

    def has(self, slot_id: SlotId) -> bool:
        """True when the customer has at least one plugin in ``slot_id``."""
        binding = self._ctx._route.slots.get(slot_id)
        return bool(binding and binding.functions)


def _timed(function: Callable[..., Any], key: int) -> Callable[..., Any]:
    """``function``, adding [plugin key, start, duration] (ns) to the call's spans as it returns or raises."""

    def timed(ctx: CallContext, *args: Any, **kwargs: Any) -> Any:
        start = perf_counter_ns()
        try:
            return function(ctx, *args, **kwargs)
        finally:
            ctx._spans.append([key, start, perf_counter_ns() - start])

    return timed


def timed_table(table: SlotTable, recording: Buffers) -> SlotTable:
    """The slot table of a route whose plugin runs are recorded (telemetry on).

    The wrapping happens once per route, so a catalog without telemetry pays
    nothing for it and one with telemetry pays one frame per plugin run.
    """
    timed = {}
    for slot_id, binding in table.items():
        functions = tuple(
            _timed(function, recording.span_keys(slot_id, plugin.name))
            for function, plugin in zip(binding.functions, binding.plugins)
        )
        copy = dataclasses.replace(binding)
        object.__setattr__(copy, "functions", functions)
        object.__setattr__(copy, "single", functions[0] if binding.single is not None else None)
        timed[slot_id] = copy
    return timed
