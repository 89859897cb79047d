"""Shared fixtures: a catalog laid out in a temporary folder, file by file."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskcatalog import Catalog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src"


class Layout:
    """A catalog tree under ``root``: ``interfaces/`` and ``plugins/<customer>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.interfaces = root / "interfaces"
        self.plugins = root / "plugins"
        self.interfaces.mkdir()
        self.plugins.mkdir()
        self._generation = 0

    def write(self, relative: str, source: str) -> Path:
        """Write a file the way a deploy should: beside, then renamed over (atomic)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self._generation += 1
        temporary = path.with_name(f".{path.name}.{self._generation}.tmp")
        temporary.write_text(textwrap.dedent(source))
        os.replace(temporary, path)
        return path

    def interface(self, name: str, source: str) -> Path:
        return self.write(f"interfaces/{name}.py", source)

    def plugin(self, customer: str, name: str, source: str) -> Path:
        return self.write(f"plugins/{customer}/{name}.py", source)

    def catalog(self, **options) -> Catalog:
        return Catalog(self.interfaces, self.plugins, **options)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


SCALE = """
    from taskcatalog import slot

    @slot("scale", args={"a": int, "b": float}, returns=float)
    def scale_entrypoint_v1(ctx, x: int):
        found, value = ctx.plugins.call("scale", a=x, b=2.0)
        return value if found else float(x)
"""


@pytest.fixture
def scale(layout: Layout) -> Layout:
    """An interface ``scale`` with one slot, and customer ``acme`` doubling."""
    layout.interface("scale", SCALE)
    layout.plugin(
        "acme",
        "scale",
        """
        from taskcatalog import plugin_config

        @plugin_config(version=1, slot="scale")
        def times(ctx, a: int, b: float) -> float:
            return a * b
        """,
    )
    return layout


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` (a file or a folder) made read-only for this process, for real.

    Root writes through permissions, so as root it is made immutable
    (``chattr +i``, which binds root too); anyone else loses the write bits.
    Where root cannot (no chattr, or a file system without the attribute),
    the test is skipped with the reason.
    """
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        made = None if chattr is None else subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
        if made is None or made.returncode:
            pytest.skip(f"as root, {path} cannot be made read-only: "
                        f"{'no chattr' if made is None else made.stderr.strip() or 'chattr +i failed'}")
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)  # type: ignore[list-item]
    else:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)


# The database engines of the contract tests (tests/db_engines.py): `engine`
# runs a test on SQLite and on PostgreSQL, `postgres` on PostgreSQL only.
from db_engines import _postgres_databases, engine, postgres  # noqa: E402,F401
