"""interface_a: combine two numbers, the way each customer wants.

Three versions live side by side; executors choose one per call.
"""

from taskcatalog import call_if_present, slot


@slot(0, args={"a": int, "b": float}, returns=float)
def interface_a_entrypoint_v1(ctx, arg1: int, arg2: int, **kwargs):
    """Combine ``arg1 * 2`` with 8.0 in slot 0; add ``arg1`` to a plugin's answer.

    Without a plugin the result is ``arg1``.
    """
    a = arg1 * 2
    b = 8.0
    found, result = call_if_present(ctx, 0, a, b)
    return result + arg1 if found else arg1


@slot("scale", args={"a": int, "b": float}, returns=float)
def interface_a_entrypoint_v2(ctx, arg1: int, arg2: int, **kwargs):
    """Like v1, but the second number is ``arg2`` and the slot has a name."""
    found, result = ctx.plugins.call("scale", a=arg1 * 2, b=float(arg2))
    return result + arg1 if found else arg1


@slot("scale", args={"a": int, "b": float}, returns=float)
def interface_a_entrypoint_v3(ctx, *, arg1: int, arg2: int = 8, digits: int = 2):
    """v2 with keyword-only arguments, a default ``arg2`` and the result rounded."""
    found, result = ctx.plugins.call("scale", a=arg1 * 2, b=float(arg2))
    ctx.log.debug("slot 'scale' answered: %s", found)
    return round(result + arg1 if found else arg1, digits)
