"""Folders contributed by installed distributions (DESIGN 2.14): entry-point groups.

A distribution declares, in its ``setup.cfg``::

    [options.entry_points]
    taskcatalog.interfaces =
        billing = acme_billing.interfaces
    taskcatalog.plugins =
        acme = acme_billing.plugins

The value names a package (its folder is the folder of interface files, or
of ``<customer>/`` plugin folders) or ``module:attribute``, an attribute
holding a folder path. Folders are found with ``importlib.metadata``; the
files in them are loaded by the same rules as any folder. A contribution
that cannot be resolved is a problem of that distribution, reported by
``check()``; it never stops the catalog.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from .errors import brief
from .results import Problem

__all__ = ["Contribution", "INTERFACES", "PLUGINS", "contributions"]

INTERFACES = "taskcatalog.interfaces"
PLUGINS = "taskcatalog.plugins"


@dataclass(frozen=True, slots=True)
class Contribution:
    """One folder an installed distribution contributes (``folder`` None when it cannot be found)."""

    group: str
    name: str  # the entry point's name
    distribution: str
    value: str
    folder: str | None
    problem: Problem | None = None


def _distribution(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return str(dist.name) if dist is not None and getattr(dist, "name", None) else "(unknown distribution)"


def _folder(entry: EntryPoint) -> str:
    """The folder an entry point names; raises what finding it raised."""
    module, _, attribute = entry.value.partition(":")
    module, attribute = module.strip(), attribute.strip()
    if attribute:
        value = getattr(importlib.import_module(module), attribute)
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{entry.value} is a {type(value).__name__}, not a folder path")
        return os.path.abspath(os.fspath(value))
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"no module named {module!r}")
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise TypeError(f"{module} is a module, not a package: name a package (its folder) or module:attribute")
    return os.path.abspath(locations[0])


def contributions(group: str) -> list[Contribution]:
    """The folders of ``group`` that installed distributions declare, sorted by distribution and name."""
    found = []
    for entry in entry_points(group=group):
        distribution = _distribution(entry)
        try:
            folder: str | None = _folder(entry)
            problem = None
        except Exception as exc:  # noqa: BLE001 - a broken package is a problem of that package
            folder = None
            problem = Problem(
                entry.value, None, "folder",
                f"distribution {distribution!r}: entry point {entry.name!r} in {group} ({entry.value}) "
                f"cannot be found: {type(exc).__name__}: {brief(exc)}",
            )
        found.append(Contribution(group, entry.name, distribution, entry.value, folder, problem))
    return sorted(found, key=lambda c: (c.distribution, c.name))
