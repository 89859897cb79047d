"""What a SQLite database's schema holds: its tables, views and columns, read from SQLite itself.

``load_schema`` feeds the name checks of ``Connection`` (a ``TableInfo`` per
table or view); ``tables`` lists the tables that hold rows, for the
migration runner and ``wipe``. Both take the backend's ``execute`` so they
run in the calling thread's session like any other statement.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ..base import TableInfo
from ..migrations import BOOKKEEPING_TABLE

__all__ = ["load_schema", "tables"]

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

# PRAGMA table_list (SQLite 3.37) tells WITHOUT ROWID tables (column wr) and
# shadow tables apart; older versions fall back to reading sqlite_master.sql.
_HAS_TABLE_LIST = sqlite3.sqlite_version_info >= (3, 37)
# For that fallback: string literals, quoted names and comments, which may
# hold any text, including "WITHOUT ROWID" and parentheses.
_NOT_CODE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)""", re.DOTALL)
_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)


def load_schema(execute: Execute) -> dict[str, TableInfo]:
    """Every table and view (SQLite's own and the bookkeeping table left out), with its columns."""
    rows = execute(
        "SELECT m.name, m.type, m.sql, p.name"
        " FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p"
        " WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        " AND m.name != ? ORDER BY m.name, p.cid",
        [BOOKKEEPING_TABLE],
    )
    columns: dict[str, list[str]] = {}
    views = set()
    without_rowid = set()
    for table, kind, sql, column in rows:
        if table not in columns:
            columns[table] = []
            if kind == "view":
                views.add(table)
            elif not _HAS_TABLE_LIST and _declares_without_rowid(sql):
                without_rowid.add(table)
        columns[table].append(column)
    if _HAS_TABLE_LIST:  # SQLite's own answer rather than reading the CREATE text
        without_rowid = {name for (name,) in execute("SELECT name FROM pragma_table_list WHERE schema = 'main' AND wr", [])}
    return {
        table: TableInfo(tuple(names), view=table in views, without_rowid=table in without_rowid)
        for table, names in columns.items()
    }


def tables(execute: Execute) -> set[str]:
    """Tables that hold rows, the bookkeeping table included: not SQLite's own, not FTS shadows."""
    if _HAS_TABLE_LIST:  # pragma_table_list knows shadow tables
        rows = execute("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual')", [])
    else:
        rows = execute("SELECT name FROM sqlite_master WHERE type = 'table'", [])
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def _declares_without_rowid(sql: str | None) -> bool:
    """Whether a CREATE TABLE statement ends in WITHOUT ROWID (SQLite < 3.37 only).

    Table options follow the last parenthesis once strings, quoted names and
    comments are blanked out, so no column default or comment can fool it.
    """
    if not sql:
        return False
    code = _NOT_CODE.sub(lambda m: " " if m.group(0)[0] in "-/" else "x", sql)
    return _WITHOUT_ROWID.search(code, code.rfind(")") + 1) is not None
