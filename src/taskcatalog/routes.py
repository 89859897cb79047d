"""A ``Route``: everything one call of (interface, version, customer) needs, resolved once.

The catalog memoises routes per snapshot, so a call is one dictionary lookup
and the route's precomputed attributes. Every error about a call is built
here, by ``call_error``, so each one carries the interface, version,
customer, file and line it is about.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .binding import SlotBinding, SlotTable
from .deprecation import Deprecation
from .errors import ArgumentError, CatalogError, ContractError, PluginError, brief
from .loading import Entrypoint
from .plugins import type_name

if TYPE_CHECKING:
    from .db import Connection

__all__ = ["CallHost", "Route", "call_error", "rescope", "user_frame"]

LOG = logging.getLogger("taskcatalog.catalog")

ErrorT = TypeVar("ErrorT", bound=CatalogError)

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class CallHost(Protocol):
    """What a call context needs from the catalog that made it: nested calls and databases."""

    def call(self, name: str, version: int | str | None, ctx: Any = None, /, **kwargs: Any) -> Any: ...

    def customer_database(self, customer: str) -> Connection | None: ...


def call_error(
    kind: type[ErrorT],
    message: str,
    *,
    interface: str | None,
    version: int | None,
    customer: str | None,
    path: str | None,
    line: int | None,
    cause: BaseException | None = None,
) -> ErrorT:
    """The one constructor of errors about a call: every field is named by the caller."""
    error = kind(message, interface=interface, version=version, customer=customer, path=path, line=line)
    if cause is not None:
        error.__cause__ = cause
    return error


def rescope(error: ErrorT, *, interface: str | None, version: int | None, customer: str | None) -> ErrorT:
    """A fresh copy of a stored error, with the call's fields where it had none.

    Raising the stored instance itself would grow its traceback on every call.
    """
    return call_error(
        type(error),
        error.message,
        interface=error.interface or interface,
        version=error.version if error.version is not None else version,
        customer=error.customer if error.customer is not None else customer,
        path=error.path,
        line=error.line,
        cause=error.__cause__,
    )


def user_frame() -> FrameType | None:
    """The innermost frame outside this package: the code that made the call.

    A warning or error pointing there names the executor's line, or the
    entrypoint's ``ctx.call`` line for a nested call, whatever path led here.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    return frame


@dataclass(frozen=True, slots=True)
class Route:
    """Everything a call of (interface, version, customer) needs, resolved once."""

    entrypoint: Entrypoint
    customer: str | None
    slots: SlotTable
    host: CallHost
    key: int = 0  # telemetry: the key of (interface, version, customer) in this process (0: not recorded)
    # Copied from the entrypoint so the call path reads one attribute each.
    interface: str = field(init=False)
    version: int = field(init=False)
    target: Callable[..., Any] = field(init=False)
    is_task: bool = field(init=False)
    params: frozenset[str] = field(init=False)
    required: frozenset[str] = field(init=False)
    var_kw: bool = field(init=False)
    check_args: bool = field(init=False)  # see Entrypoint.check_args
    deprecation: Deprecation | None = field(init=False)
    retire_at: float | None = field(init=False)
    # A plain function, not deprecated: the call path calls it at once.
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        entry = self.entrypoint
        values: Mapping[str, Any] = {
            "interface": entry.interface,
            "version": entry.version,
            "target": entry.target,
            "is_task": entry.is_task,
            "params": frozenset(entry.params),
            "required": entry.required,
            "var_kw": entry.var_kw,
            "check_args": entry.check_args,
            "deprecation": entry.deprecation,
            "retire_at": entry.deprecation.retire_at if entry.deprecation else None,
            "plain": not (entry.check_args or entry.is_task or entry.deprecation),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    # -- errors of this call -----------------------------------------------

    def error(
        self,
        kind: type[ErrorT],
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        cause: BaseException | None = None,
    ) -> ErrorT:
        """An error about this call; the file and line are the entrypoint's unless given."""
        entry = self.entrypoint
        return call_error(
            kind,
            message,
            interface=self.interface,
            version=self.version,
            customer=self.customer,
            path=entry.path if path is None else path,
            line=entry.line if path is None else line,
            cause=cause,
        )

    def argument_error(self, kwargs: Mapping[str, Any]) -> ArgumentError:
        entry = self.entrypoint
        unexpected = sorted(set(kwargs) - self.params) if not self.var_kw else []
        if entry.context_param in kwargs and entry.context_param not in unexpected:
            unexpected.append(entry.context_param)  # it would collide with the context
        missing = sorted(self.required - set(kwargs))
        parts = []
        if unexpected:
            parts.append(f"unexpected keyword argument(s) {', '.join(map(repr, unexpected))}")
        if missing:
            parts.append(f"no value for required argument(s) {', '.join(map(repr, missing))}")
        accepted = ", ".join([*entry.params, *(["**kwargs"] if self.var_kw else [])]) or "no arguments"
        return self.error(ArgumentError, f"{entry.label} ({entry.where}): {'; '.join(parts)}; it accepts: {accepted}")

    def plugin_failed(self, binding: SlotBinding, index: int, exc: Exception) -> PluginError:
        """A plugin of this call raised ``exc`` (its ``__cause__``)."""
        plugin = binding.plugins[index]
        return self.error(
            PluginError,
            f"customer {self.customer!r}, {self.entrypoint.label}, slot {binding.contract.id!r}: "
            f"plugin {plugin.where} raised {type(exc).__name__}: {brief(exc)}",
            path=plugin.path,
            line=plugin.line,
            cause=exc,
        )

    def plugin_returned(self, binding: SlotBinding, index: int, value: Any) -> ContractError:
        """A plugin of this call returned a value its slot's contract does not accept."""
        plugin = binding.plugins[index]
        try:
            shown = f"{value!r:.80}"
        except Exception:  # a hostile __repr__ must not hide the real problem
            shown = "(unrepresentable)"
        return self.error(
            ContractError,
            f"customer {self.customer!r}, {self.entrypoint.label}, slot {binding.contract.id!r}: "
            f"plugin {plugin.where} returned {type(value).__name__} {shown}, "
            f"expected {type_name(binding.contract.returns)}",
            path=plugin.path,
            line=plugin.line,
        )

    def undeclared_slot(self, slot_id: object) -> CatalogError:
        """The entrypoint of this call asked for a slot it does not declare."""
        entry = self.entrypoint
        declared = ", ".join(repr(s) for s in self.slots) or "none"
        return self.error(
            CatalogError,
            f"{entry.label} ({entry.where}) calls slot {slot_id!r} but does not declare it "
            f"(declared: {declared}); add @slot({slot_id!r}, ...) to the entrypoint [customer {self.customer!r}]",
        )

    # -- deprecation -------------------------------------------------------

    def warn_deprecated(self) -> None:
        """Warn that this version is deprecated, at the line of the code that called it."""
        assert self.deprecation is not None
        sunset = self.deprecation.sunset
        until = f" (retired after {sunset.isoformat()})" if sunset else ""
        message = f"{self.entrypoint.label} is deprecated{until}: {self.deprecation.message}"
        frame = user_frame()
        if frame is None:  # called from inside the package only (no user frame): rare
            warnings.warn(message, DeprecationWarning, stacklevel=2)
        else:
            module_globals = frame.f_globals
            # No module_globals=: warn_explicit would ask the module's loader for its source,
            # and the loader of code run by ``python -c`` or from stdin raises ImportError.
            warnings.warn_explicit(
                message,
                DeprecationWarning,
                frame.f_code.co_filename,
                frame.f_lineno,
                module=module_globals.get("__name__", "<unknown>"),
                registry=module_globals.setdefault("__warningregistry__", {}),
            )
        LOG.warning("%s [customer=%s]", message, self.customer)

