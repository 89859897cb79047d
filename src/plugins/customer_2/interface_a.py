"""customer_2 divides."""

from taskcatalog import plugin_config


@plugin_config(version=1, slot=0)
def divide(ctx, a: int, b: float, **kwargs) -> float:
    return a / b
