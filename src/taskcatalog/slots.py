"""Calling the plugins of a slot, on the path of every plugin call.

``call_if_present(ctx, slot, ...)`` is the classic helper, and it is
``ctx.plugins.call`` too (``PluginCaller.call`` is the same function): one
slot call path, whichever way an entrypoint spells it. It is a dictionary
lookup in the route's slot table, the plugin call and, when the slot
declares ``returns``, one ``isinstance``. Everything it reads was
precomputed by ``binding.py``; errors are built by the route, so they name
the whole call.

When telemetry records a route, its slot table holds ``RecordedSlot``s (made
once per route by ``timed_table``), which carry each plugin's span key:
a plugin run then adds its span key and duration ns to the call's spans,
one flat tuple of ints (see ``Catalog._recorded``). The timing is
written into the slot call rather than wrapped around each plugin, since a
wrapper costs every recorded plugin run a frame and a second forwarding of
its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from .binding import SlotBinding, SlotTable
from .plugins import SlotId
from .telemetry import Buffers

if TYPE_CHECKING:
    from .context import CallContext
    from .routes import Route

__all__ = ["call_if_present", "PluginCaller", "RecordedSlot", "timed_table"]

_NOT_FOUND: tuple[bool, Any] = (False, None)


@dataclass(frozen=True, slots=True)
class RecordedSlot(SlotBinding):
    """A slot of a route whose calls telemetry records: the span key of each plugin, in order."""

    span_keys: tuple[int, ...] = ()


def call_if_present(ctx: Any, slot_id: SlotId, /, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run the customer's plugins in slot ``slot_id`` of the running entrypoint.

    Returns ``(found, value)``: for a single slot ``value`` is the plugin's
    result (``(False, None)`` without a plugin); for a ``many=True`` slot it is
    the list of results, and ``found`` says whether there was any plugin.

    Called as ``ctx.plugins.call(...)``, ``ctx`` is the ``PluginCaller``.
    The plugin is called in the form its caller used (positional arguments,
    keywords, or both): forwarding an empty ``*args`` or ``**kwargs`` would
    still build a tuple or copy a dict, which costs more than the test.
    """
    if type(ctx) is PluginCaller:
        ctx = ctx._ctx
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
    recorded = binding if type(binding) is RecordedSlot else None
    start = 0 if recorded is None else perf_counter_ns()
    try:
        if not kwargs:
            value = single(ctx, *args)
        elif not args:
            value = single(ctx, **kwargs)
        else:
            value = single(ctx, *args, **kwargs)
    except Exception as exc:
        raise route.plugin_failed(binding, 0, exc) from exc
    finally:
        if recorded is not None:
            ctx._spans += (recorded.span_keys[0], perf_counter_ns() - start)
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
    recorded = binding if type(binding) is RecordedSlot else None
    values: list[Any] = []
    for index, function in enumerate(binding.functions):
        start = 0 if recorded is None else perf_counter_ns()
        try:
            value = function(ctx, *args, **kwargs)
        except Exception as exc:
            raise route.plugin_failed(binding, index, exc) from exc
        finally:
            if recorded is not None:
                ctx._spans += (recorded.span_keys[index], perf_counter_ns() - start)
        if accepts is not None and not isinstance(value, accepts):
            raise route.plugin_returned(binding, index, value)
        values.append(value)
    return bool(values), values


class PluginCaller:
    """``ctx.plugins``: the slots of the running entrypoint, for its customer.

    The call context makes one per ``ctx.plugins`` read, by calling the class
    with no arguments (no ``__init__`` frame) and setting ``_ctx``.
    """

    __slots__ = ("_ctx",)

    _ctx: CallContext

    #: ``call(slot_id, /, *args, **kwargs)``: run the plugins in ``slot_id`` and
    #: return ``(found, value)``. It is ``call_if_present`` itself, which takes
    #: the context from the caller.
    call = call_if_present

    def slots(self) -> list[SlotId]:
        """The slots the running entrypoint declares."""
        return list(self._ctx._route.slots)

    def has(self, slot_id: SlotId) -> bool:
        """True when the customer has at least one plugin in ``slot_id``."""
        binding = self._ctx._route.slots.get(slot_id)
        return bool(binding and binding.functions)


def timed_table(table: SlotTable, recording: Buffers) -> SlotTable:
    """The slot table of a route whose calls telemetry records: each slot with its plugins' span keys.

    Made once per route, so a catalog without telemetry pays nothing for it.
    """
    return {
        slot_id: RecordedSlot(
            binding.contract,
            binding.plugins,
            tuple(recording.span_keys(slot_id, plugin.name) for plugin in binding.plugins),
        )
        for slot_id, binding in table.items()
    }
