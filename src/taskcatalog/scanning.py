"""Finding interface and plugin files: one scan of the folders, no imports.

Scanning only looks at the tree (``os.scandir`` and its cached ``stat``) and
returns a ``Tree``: every interface file and every customer's plugin file
with a stamp that changes when the file does, plus the problems of the
layout itself (missing folders, bad names, duplicates). Importing happens
later, one file at a time, when a call first needs it (``loading.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .naming import is_customer_name, is_interface_name
from .results import Problem

__all__ = ["SourceFile", "Tree", "PluginKey", "FileKey", "scan"]

Stamp = tuple[int, int, int]  # (inode, size, mtime_ns): a rename-over changes the inode


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file as one scan saw it: its absolute path and its stamp."""

    path: str  # absolute
    stamp: Stamp


PluginKey = tuple[str, str]  # (customer, interface)
FileKey = str | PluginKey  # an interface name, or a (customer, interface) plugin file


@dataclass(frozen=True, slots=True)
class Tree:
    """What the folders held at one scan: file paths and stamps, no imports."""

    interfaces: Mapping[str, SourceFile] = field(default_factory=dict)
    plugins: Mapping[PluginKey, SourceFile] = field(default_factory=dict)
    # An interface name or plugin key found in more than one folder: every path.
    duplicates: Mapping[FileKey, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    unreadable: frozenset[str] = frozenset()  # folders that could not be listed
    interface_dirs: tuple[str, ...] = ()

    def customers(self) -> list[str]:
        return sorted({customer for customer, _ in self.plugins})

    def files(self) -> dict[str, SourceFile]:
        """Every file by path, for comparing two scans."""
        out = {s.path: s for s in self.interfaces.values()}
        out.update((s.path, s) for s in self.plugins.values())
        return out


# Folders are opened and then read through their descriptor (scandir on the
# fd, stat relative to it): a folder renamed away and back while it is read is
# still read whole, so a race with a deploy can never make files look deleted.
_BY_FD = os.scandir in os.supports_fd and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


@contextmanager
def _listing(
    folder: str, role: str, problems: list[Problem], unreadable: set[str], parent: int | None = None
) -> Iterator[tuple[list[os.DirEntry[str]], int | None]]:
    """The folder's entries sorted by name, and its descriptor (None where not used).

    ``parent`` is the open descriptor of the folder's parent, which the
    folder is then opened relative to. A folder that cannot be listed is
    added to ``unreadable`` (its files are carried over from the previous
    scan) and gives no entries. Entries must be stat'ed inside the block.
    """
    fd = None
    try:
        if _BY_FD:
            fd = os.open(folder if parent is None else os.path.basename(folder), _FOLDER_FLAGS, dir_fd=parent)
        with os.scandir(folder if fd is None else fd) as it:
            entries = sorted(it, key=lambda entry: entry.name)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        if isinstance(exc, FileNotFoundError):
            message = f"{role} folder {folder} does not exist"
        elif isinstance(exc, NotADirectoryError):
            message = f"{role} folder {folder} is not a folder"
        else:
            message = f"cannot read {role} folder {folder}: {exc.strerror or exc}"
        problems.append(Problem(folder, None, "folder", message))
        unreadable.add(folder)
        yield [], None
        return
    try:
        yield entries, fd
    finally:
        if fd is not None:
            os.close(fd)


def _python_files(
    folder: str, entries: Iterable[os.DirEntry[str]], what: str, problems: list[Problem]
) -> list[tuple[str, SourceFile]]:
    """``(stem, SourceFile)`` for each ``<identifier>.py``; private and hidden names are skipped."""
    found = []
    for entry in entries:
        if not entry.name.endswith(".py") or entry.name.startswith(("_", ".")):
            continue
        path = os.path.join(folder, entry.name)
        stem = entry.name[:-3]
        if not is_interface_name(stem):
            problems.append(
                Problem(path, None, "name", f"{what} file name {entry.name!r} is not <identifier>.py; it is ignored")
            )
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            try:
                entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted since the listing: it is simply not there
            problems.append(Problem(path, None, "import", f"cannot read {path}: it is a symbolic link to nothing"))
            continue
        except OSError as exc:
            problems.append(Problem(path, None, "import", f"cannot read {path}: {exc.strerror or exc}"))
            continue
        found.append((stem, SourceFile(path, (st.st_ino, st.st_size, st.st_mtime_ns))))
    return found


def _keep(found: dict[Any, list[SourceFile]], key: Any, source: SourceFile) -> None:
    found.setdefault(key, []).append(source)


def scan(interface_dirs: Iterable[str], plugin_dirs: Iterable[str], previous: Tree | None = None) -> Tree:
    """List the interface and plugin files of the folders.

    When ``previous`` is given, files of a folder that cannot be read now are
    carried over from it: a folder that vanishes for a moment during a deploy
    must not take the catalog down (the failure is still reported).
    """
    interface_dirs = tuple(interface_dirs)
    problems: list[Problem] = []
    unreadable: set[str] = set()
    interfaces: dict[str, list[SourceFile]] = {}
    plugins: dict[PluginKey, list[SourceFile]] = {}

    for folder in interface_dirs:
        with _listing(folder, "interface", problems, unreadable) as (entries, _):
            found = _python_files(folder, entries, "interface", problems)
        if not found and folder not in unreadable:
            problems.append(Problem(folder, None, "folder", f"interface folder {folder} holds no interface files"))
        for name, source in found:
            _keep(interfaces, name, source)

    for folder in plugin_dirs:
        with _listing(folder, "plugin", problems, unreadable) as (customers, parent):
            for entry in customers:
                if entry.name.startswith(("_", ".")) or not entry.is_dir():
                    continue
                path = os.path.join(folder, entry.name)
                if not is_customer_name(entry.name):
                    problems.append(Problem(
                        path, None, "name", f"plugin folder name {entry.name!r} is not a valid customer name; it is ignored"
                    ))
                    continue
                role = f"customer {entry.name!r} plugin"
                with _listing(path, role, problems, unreadable, parent) as (entries, _):
                    for name, source in _python_files(path, entries, "plugin", problems):
                        _keep(plugins, (entry.name, name), source)

    if previous is not None and unreadable:
        def lost(path: str) -> bool:
            return any(path.startswith(folder + os.sep) for folder in unreadable)

        for name, source in previous.interfaces.items():
            if name not in interfaces and lost(source.path):
                interfaces[name] = [source]
        for key, source in previous.plugins.items():
            if key not in plugins and lost(source.path):
                plugins[key] = [source]

    duplicates: dict[FileKey, tuple[str, ...]] = {}
    everything: list[tuple[FileKey, list[SourceFile]]] = [*interfaces.items(), *plugins.items()]
    for file_key, sources in everything:
        if len(sources) > 1:
            paths = tuple(s.path for s in sources)
            duplicates[file_key] = paths
            what = f"interface {file_key!r}" if isinstance(file_key, str) else f"customer {file_key[0]!r} plugin file for {file_key[1]!r}"
            for path in paths:
                problems.append(
                    Problem(
                        path,
                        None,
                        "duplicate",
                        f"{what} is defined in more than one folder: {', '.join(paths)}",
                        interface=file_key if isinstance(file_key, str) else file_key[1],
                        customer=None if isinstance(file_key, str) else file_key[0],
                    )
                )
    return Tree(
        interfaces={k: v[0] for k, v in interfaces.items()},
        plugins={k: v[0] for k, v in plugins.items()},
        duplicates=duplicates,
        problems=tuple(problems),
        unreadable=frozenset(unreadable),
        interface_dirs=interface_dirs,
    )


