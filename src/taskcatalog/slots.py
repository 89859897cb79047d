"""Calling the plugins of a slot, on the path of every plugin call.

``call_if_present(ctx, slot, ...)`` is the classic helper and the one
implementation behind ``ctx.plugins.call``: a dictionary lookup in the
route's slot table, the plugin call and, when the slot declares ``returns``,
one ``isinstance``. Everything it reads was precomputed by ``binding.py``;
errors are built by the route, so they name the whole call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plugins import SlotId

if TYPE_CHECKING:
    from .context import CallContext

__all__ = ["call_if_present", "PluginCaller"]

_NOT_FOUND: tuple[bool, Any] = (False, None)


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
        route = ctx._route
        binding = route.slots[slot_id]
    except (KeyError, TypeError):
        raise route.undeclared_slot(slot_id) from None
    except AttributeError:  # not a CallContext: a stand-in in someone's unit test
        return ctx.plugins.call(slot_id, *args, **kwargs)  # type: ignore[no-any-return]
    single = binding.single
    if single is not None:
        try:
            value = single(ctx, *args, **kwargs)
        except Exception as exc:
            raise route.plugin_failed(binding, 0, exc) from exc
        if binding.accepts is not None and not isinstance(value, binding.accepts):
            raise route.plugin_returned(binding, 0, value)
        return True, value
    if not binding.many:
        return _NOT_FOUND
    functions = binding.functions
    accepts = binding.accepts
    values: list[Any] = []
    for index, function in enumerate(functions):
        try:
            value = function(ctx, *args, **kwargs)
        except Exception as exc:
            raise route.plugin_failed(binding, index, exc) from exc
        if accepts is not None and not isinstance(value, accepts):
            raise route.plugin_returned(binding, index, value)
        values.append(value)
    return bool(functions), values


class PluginCaller:
    """``ctx.plugins``: the slots of the running entrypoint, for its customer."""

    __slots__ = ("_ctx",)

    _ctx: CallContext

    def __init__(self, ctx: CallContext) -> None:
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

