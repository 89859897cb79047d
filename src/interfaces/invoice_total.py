"""invoice_total: the total of an invoice's lines.

Shows a deprecated version, a ``BaseTask`` entrypoint and a ``many=True``
slot where every plugin of the customer adds an adjustment.
"""

from taskcatalog import BaseTask, deprecated, slot


@deprecated("use v2, which applies the customer's adjustments", sunset="2030-12-31")
def invoice_total_entrypoint_v1(ctx, lines: list):
    """Sum of quantity times price, rounded to cents."""
    return round(sum(line["qty"] * line["price"] for line in lines), 2)


@slot("adjustments", args={"subtotal": float, "lines": list}, returns=float, many=True)
class ComputeInvoice(BaseTask):
    """Subtotal plus every adjustment the customer's plugins return, in order.

    An invoice without lines is not actionable: the call is recorded as
    skipped and returns None.
    """

    def is_actionable(self, ctx, lines, **kwargs):
        return bool(lines)

    def execute(self, ctx, lines: list, currency: str = "EUR"):
        subtotal = float(sum(line["qty"] * line["price"] for line in lines))
        _, adjustments = ctx.plugins.call("adjustments", subtotal=subtotal, lines=lines)
        return {
            "subtotal": round(subtotal, 2),
            "adjustments": [round(value, 2) for value in adjustments],
            "total": round(subtotal + sum(adjustments), 2),
            "currency": currency,
        }


invoice_total_entrypoint_v2 = ComputeInvoice
