"""``BaseTask``: an entrypoint that decides whether it has work before doing it."""

from __future__ import annotations

from typing import Any

__all__ = ["BaseTask"]


class BaseTask:
    """Subclass and assign the class as an entrypoint::

        class SyncOrders(BaseTask):
            def is_actionable(self, ctx, **kwargs):
                return bool(kwargs.get("orders"))

            def execute(self, ctx, orders, **kwargs):
                ...

        interface_b_entrypoint_v1 = SyncOrders

    The catalog makes one instance per call (so a task may keep state on
    ``self`` during the call), runs ``is_actionable`` and then ``execute``
    only when it returned true. A call that is not actionable is recorded as
    ``"skipped"``: ``Catalog.run`` reports that status, ``Catalog.call``
    returns None. The keyword arguments the task accepts are those of
    ``execute``.
    """

    def is_actionable(self, ctx: Any, **kwargs: Any) -> bool:
        """Return False when there is nothing to do; the default always acts."""
        return True

    def execute(self, ctx: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define execute(self, ctx, ...)")
