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


POSTGRES_PAGE = PAGE.with_name("postgres.md")


def test_the_postgres_page_examples_run(postgres, tmp_path, monkeypatch, capsys):
    # The page's URLs name a server of the reader's; here, two databases of the test server.
    first, second = postgres.url("shop"), postgres.url("shop_restored")
    scheme, rest = first.split("://", 1)
    user, host = rest.split("@", 1)
    text = POSTGRES_PAGE.read_text(encoding="utf-8")
    text = text.replace('"postgresql://app:secret@db.internal:5432/shop"', repr(f"{scheme}://{user}:secret@{host}"))
    text = text.replace('url.replace("/shop", "/shop_restored")', repr(second))
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_postgres"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{POSTGRES_PAGE.name} example {number}", "exec"), namespace)
    finally:
        for name in ("db", "restored"):
            if namespace.get(name) is not None:
                namespace[name].close()
    out = capsys.readouterr().out
    # Every output the page promises, in its order.
    promised = re.findall(r"print\(.*?\)\s+# (.*)", "\n".join(blocks))
    position = 0
    for shown in promised:
        # "True: never shows ..." promises "True"; a dict or list is printed whole.
        expected = shown if shown.startswith(("{", "[")) else shown.split(": ")[0]
        found = out.find(expected, position)
        assert found >= 0, f"{expected!r} not printed (after position {position}) in:\n{out}"
        position = found + len(expected)
