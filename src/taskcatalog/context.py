"""The executor's ``Context`` and the call context an entrypoint receives."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from abc import ABCMeta
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .naming import check_customer_name
from .slots import PluginCaller

if TYPE_CHECKING:
    from .db import Connection
    from .routes import Route

__all__ = ["Context", "CallContext", "new_call_context"]

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

    ``_data`` is a dict holding ``"customer"`` and never changes after
    ``__init__``: the catalog's call path reads it directly (a ``Context``,
    not a subclass), sparing each call and each ``ctx[key]`` inside it the
    ``Mapping`` methods' frames.
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
# takes a number (one C-level ``next``) when it is recorded, when ``run``
# reports it, or else when its id is first read; the id string is made when
# read. Most unrecorded calls never need one.
_prefix = ""


def _new_prefix() -> None:
    global _prefix
    _prefix = os.urandom(6).hex()


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)
next_call_number = itertools.count(1).__next__
_numbering = threading.Lock()  # a call context's first call_id read, in two threads at once


def call_id_of(number: int) -> str:
    return f"{_prefix}-{number}"


def process_prefix() -> str:
    """The prefix of this process's call ids (a forked child gets its own)."""
    return _prefix


class _MadeByTheCatalog(ABCMeta):
    """The metaclass of ``CallContext``: calling the class is refused, with what to do instead.

    The catalog makes call contexts with ``new_call_context``, the ordinary
    construction underneath this refusal. (Refusing in ``__init__`` would
    leave the catalog ``object.__new__(CallContext)``, which builds an
    argument tuple, on every call: about 20 ns more.)
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("CallContext is made by the catalog for each call; executors pass a Context")


class CallContext(_ReadOnlyData, metaclass=_MadeByTheCatalog):
    """The first argument of every entrypoint and plugin during a call.

    Attributes describe the call (``customer``, ``interface``, ``version``,
    ``call_id``, ``parent_id``); ``plugins`` reaches the customer's plugin
    slots; ``db`` is the customer's own database (None without one); ``log``
    is a ``LoggerAdapter`` carrying the call's fields; ``ctx.call(...)`` runs
    another interface for the same customer as a child call. Mapping access
    reads the executor's context data (``ctx["customer"]``, ``ctx.get(k)``).
    """

    # The contract with the catalog: its call path makes each call context
    # with ``new_call_context()`` and fills these slots itself (no __init__
    # frame on the hot path); ``slots.py`` reads ``_route`` and adds to
    # ``_spans``. ``_number`` is set by the catalog when it records the call
    # or reports its id (``run``), else by ``call_id`` on first read; ``_log``
    # stays unset until first read.
    __slots__ = ("_route", "_number", "parent_id", "_log", "_spans")
    _route: Route  # the resolved call: interface, version, customer, slot tables, host catalog
    _number: int  # this process's call counter value; ``call_id`` formats it
    parent_id: str | None  #: the call id of the call that made this one with ``ctx.call``, or None
    _log: logging.LoggerAdapter[logging.Logger]
    # When recording: (plugin key, duration ns) per plugin run, in a flat
    # tuple, which the collector can stop tracking (see Catalog._recorded).
    _spans: tuple[int, ...]

    @property
    def call_id(self) -> str:
        try:
            number = self._number
        except AttributeError:  # the first read, in a call that is neither recorded nor run
            with _numbering:
                try:
                    number = self._number
                except AttributeError:
                    number = self._number = next_call_number()
        return call_id_of(number)

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
        caller = PluginCaller()  # read on every ctx.plugins.call: no __init__ frame
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


#: A new, empty call context, for the catalog: ``type.__call__`` bound to the
#: class, which constructs it as calling a class without ``__init__`` does.
new_call_context: Callable[[], CallContext] = type.__call__.__get__(CallContext)
