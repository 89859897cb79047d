"""The examples of docs/database.md run as written, top to bottom, in an empty folder."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "database.md"


def test_the_database_page_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_database"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{PAGE.name} example {number}", "exec"), namespace)
    finally:
        db = namespace.get("db")
        if db is not None:
            db.close()
    out = capsys.readouterr().out
    # A few outputs the page promises, in the order it shows them.
    promised = [
        "['0001_orders', '0002_audit']",
        "{'id': 1, 'sku': 'A-1', 'qty': 2}",
        "[{'id': 3, 'sku': 'C-3', 'qty': 4}, {'id': 1, 'sku': 'A-1', 'qty': 2}]",
        "no table 'orders; DROP TABLE orders' in var/shop.sqlite3; tables: 'audit', 'notes', 'orders'",
        "cannot store the value for column 'qty' of table 'orders' in var/shop.sqlite3: NaN, which SQLite would "
        "store as NULL, losing the value; store None, or the number as text",
        "['E-5']",
        "0 True",
        "no deletes on orders",
        "the database var/shop.sqlite3 is locked",
        "{'audit': 1, 'notes': 0, 'orders': 5}",
        "DatabaseError the connection to var/shop.sqlite3 is closed",
        "var/notes.txt is not a SQLite database, or is damaged (file is not a database)",
    ]
    position = 0
    for text in promised:
        found = out.find(text, position)
        assert found >= 0, f"{text!r} not printed (after position {position}) in:\n{out}"
        position = found + len(text)
