"""The executor's ``Context`` and the call context an entrypoint receives."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .naming import check_customer_name
from .slots import PluginCaller

_new_caller = PluginCaller.__new__

if TYPE_CHECKING:
    from .db import Connection
    from .routes import Route

__all__ = ["Context", "CallContext"]

_LOG = logging.getLogger("taskcatalog.call")


class _ReadOnlyData(Mapping[str, Any]):
    """A read-only mapping view of ``_data``: the executor's context data."""

    __slots__ = ("_data",)
    _data: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Context(_ReadOnlyData):
    """What an executor knows about a call: the customer and any data of its own.

    ``Context("customer_1", user="ann")`` reads like the classic dict
    context ``{"customer": "customer_1", "user": "ann"}``; it is a read-only
    mapping, and the customer name is checked at once.
    """

    __slots__ = ()

    def __init__(self, customer: str | None, **data: Any) -> None:
        if customer is not None:
            check_customer_name(customer)
        self._data = {"customer": customer, **data}

    @property
    def customer(self) -> str | None:
        customer: str | None = self._data["customer"]
        return customer

    def __repr__(self) -> str:
        data = ", ".join(f"{k}={v!r}" for k, v in self._data.items() if k != "customer")
        return f"Context({self.customer!r}{', ' if data else ''}{data})"


# Call ids: a per-process prefix and a counter. Cheaper than uuid4 on every
# call, unique across processes that share a telemetry database: a forked
# child gets a fresh prefix, so its ids never repeat its parent's. A call
# takes a number (one C-level ``next``); the id string is made when read.
_prefix = ""


def _new_prefix() -> None:
    global _prefix
    _prefix = os.urandom(6).hex()


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)
next_call_number = itertools.count(1).__next__


def call_id_of(number: int) -> str:
    return f"{_prefix}-{number}"


def process_prefix() -> str:
    """The prefix of this process's call ids (a forked child gets its own)."""
    return _prefix


class CallContext(_ReadOnlyData):
    """The first argument of every entrypoint and plugin during a call.

    Attributes describe the call (``customer``, ``interface``, ``version``,
    ``call_id``, ``parent_id``); ``plugins`` reaches the customer's plugin
    slots; ``db`` is the customer's own database (None without one); ``log``
    is a ``LoggerAdapter`` carrying the call's fields; ``ctx.call(...)`` runs
    another interface for the same customer as a child call. Mapping access
    reads the executor's context data (``ctx["customer"]``, ``ctx.get(k)``).
    """

    # The contract with the catalog: its call path makes each call context
    # with ``CallContext.__new__`` and fills these slots itself (no __init__
    # frame on the hot path); ``slots.py`` reads ``_route``. ``_log`` stays
    # unset until first read.
    __slots__ = ("_route", "_number", "parent_id", "_log", "_spans")
    _route: Route  # the resolved call: interface, version, customer, slot tables, host catalog
    _number: int  # this process's call counter value; ``call_id`` formats it
    parent_id: str | None  #: the call id of the call that made this one with ``ctx.call``, or None
    _log: logging.LoggerAdapter[logging.Logger]
    _spans: list[list[int]]  # when recording: [plugin key, start ns, duration ns] per plugin run

    def __init__(self) -> None:
        raise TypeError("CallContext is made by the catalog for each call; executors pass a Context")

    @property
    def call_id(self) -> str:
        return call_id_of(self._number)

    @property
    def customer(self) -> str | None:
        return self._route.customer

    @property
    def interface(self) -> str:
        return self._route.interface

    @property
    def version(self) -> int:
        return self._route.version

    @property
    def plugins(self) -> PluginCaller:
        caller = _new_caller(PluginCaller)  # no __init__ frame: read on every slot call
        caller._ctx = self
        return caller

    @property
    def db(self) -> Connection | None:
        customer = self._route.customer
        return None if customer is None else self._route.host.customer_database(customer)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        try:
            return self._log
        except AttributeError:
            fields = {
                "customer": self.customer,
                "interface": self.interface,
                "version": self.version,
                "call_id": self.call_id,
            }
            self._log = logging.LoggerAdapter(_LOG, fields)
            return self._log

    def call(self, name: str, version: int | str | None = None, /, **kwargs: Any) -> Any:
        """Call another interface for the same customer, recorded as a child call."""
        return self._route.host.call(name, version, self, **kwargs)

    def __repr__(self) -> str:
        return (
            f"<CallContext {self.interface} v{self.version} customer={self.customer!r} "
            f"call_id={self.call_id}>"
        )
