"""CRUD callbacks: what a callback receives, and the registry a connection keeps.

``Callbacks`` holds every callback of one connection in one object. ``on()``
registers under a lock; the write path reads without one: per operation a
dict maps a table to a ``(before, after)`` pair of tuples, and a pair is
replaced whole, never changed in place. Running the callbacks, and rolling
the session back when one raises, is the backend's business: it owns the
session.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Connection

__all__ = ["EVENTS", "Callback", "Callbacks", "CrudEvent", "Pair"]

EVENTS = (
    "before_create",
    "after_create",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
)


@dataclass(frozen=True, slots=True)
class CrudEvent:
    """What a CRUD callback receives: one argument, the same shape for every event.

    ``values`` is the row (create) or the new values (update), ``where`` the
    filter (update, delete), ``result`` is None before the change and the new
    row id (create) or the number of rows changed (update, delete) after it.
    In ``before_create`` and ``before_update`` callbacks ``values`` is a fresh
    dict: what the callback leaves in it is what gets written.
    """

    event: str
    table: str
    values: dict[str, Any] | None
    where: dict[str, Any] | None
    result: int | None
    db: Connection


Callback = Callable[[CrudEvent], object]
#: The callbacks of one table and operation: those run before the change, those run after it.
Pair = tuple[tuple[Callback, ...], tuple[Callback, ...]]


class Callbacks:
    """The callbacks of one connection, by operation and table.

    ``create``, ``update`` and ``delete`` map a table to its ``Pair``; a
    table without callbacks is absent, so the write path's test is one
    ``dict.get``. The dicts themselves are never replaced, so a backend may
    keep references to them.
    """

    __slots__ = ("create", "update", "delete", "_by_operation", "_lock", "__weakref__")

    def __init__(self) -> None:
        self.create: dict[str, Pair] = {}
        self.update: dict[str, Pair] = {}
        self.delete: dict[str, Pair] = {}
        self._by_operation = {"create": self.create, "update": self.update, "delete": self.delete}
        self._lock = threading.Lock()
        _LIVE.add(self)

    def on(self, event: str, table: str, callback: Callback) -> None:
        """Add ``callback`` for ``event`` on ``table``, after those already there."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; events are: {', '.join(EVENTS)}")
        if not callable(callback):
            raise TypeError(f"callback for {event} on {table!r} must be callable, not {type(callback).__name__}")
        when, operation = event.split("_")
        pairs = self._by_operation[operation]
        with self._lock:
            before, after = pairs.get(table, ((), ()))
            if when == "before":
                before += (callback,)
            else:
                after += (callback,)
            pairs[table] = (before, after)

    def _after_fork(self) -> None:
        # Another thread may have held the lock inside on() at the fork; in
        # the child that thread is gone and would never release it.
        self._lock = threading.Lock()


# Every Callbacks object of this process, so a forked child can replace their locks.
_LIVE: weakref.WeakSet[Callbacks] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for callbacks in list(_LIVE):
        callbacks._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
