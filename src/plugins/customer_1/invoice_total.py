"""customer_1's invoice adjustments: a loyalty discount, then shipping."""

from taskcatalog import plugin_config


@plugin_config(version=2, slot="adjustments", order=0)
def loyalty_discount(ctx, subtotal: float, lines: list) -> float:
    """Five percent off."""
    return -0.05 * subtotal


@plugin_config(version=2, slot="adjustments", order=1)
def shipping(ctx, subtotal: float, lines: list) -> float:
    """Free shipping from 50.00 on."""
    return 0.0 if subtotal >= 50 else 4.90
