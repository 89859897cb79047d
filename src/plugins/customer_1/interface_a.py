"""customer_1 multiplies."""

from taskcatalog import plugin_config


@plugin_config(version=1, slot=0)
def multiply(ctx, a: int, b: float, **kwargs) -> float:
    return a * b


@plugin_config(ver=(2, 3), slot="scale")
def multiply_named(ctx, a: int, b: float, **kwargs) -> float:
    return a * b
