"""``taskcatalog batch create|add|list|show|execute|export``: batches from the terminal (docs/batches.md)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
from typing import Any

from ..batches import BATCH_STATUSES, ROW_STATUSES, Batch, BatchProgress
from ..errors import CatalogError, brief
from .app import COMMANDS, Command, Session, open_catalog
from .catalog_commands import parse_assignment
from .output import PROG, Failure, Progress, UsageError, table, to_json

#: The most worker processes ``batch execute --workers`` starts, and how often (seconds) it shows their progress.
MOST_WORKERS = 64
WORKER_POLL = 0.5


def rows_from_file(path: str) -> list[dict[str, Any]]:
    """The rows of a .csv (values are strings), .json (a list of objects) or .jsonl (one object a line) file."""
    kind = os.path.splitext(path)[1].lower()
    if kind not in (".csv", ".json", ".jsonl"):
        raise UsageError(f"--rows takes a .csv, .json or .jsonl file, not {path!r}")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        # utf-8-sig: spreadsheet programs start a UTF-8 CSV with a byte order mark, which
        # would otherwise stick to the first column's name.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = data[: exc.start].count(b"\n") + 1
        raise Failure(f"{path}:{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if kind == ".csv":
        return _csv_rows(path, text)
    if kind == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Failure(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(loaded, list):
            raise Failure(f"{path}: a .json rows file holds a list of objects, not a {type(loaded).__name__}")
        for index, row in enumerate(loaded, 1):
            if not isinstance(row, dict):
                raise Failure(f"{path}: item {index} of the list is a {type(row).__name__}, not an object")
        return loaded
    rows = []
    # Lines end at \n only: str.splitlines() would also split at U+2028, U+0085 and other
    # characters a JSON string may hold unescaped.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Failure(f"{path}:{number}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict):
            raise Failure(f"{path}:{number}: a line of a .jsonl file is one object, not a {type(row).__name__}")
        rows.append(row)
    return rows


def _csv_rows(path: str, text: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        if len(set(header)) != len(header) or not all(header):
            raise Failure(f"{path}:1: the header needs distinct, non-empty column names: {header}")
        rows = []
        for values in reader:
            if not values:
                continue
            if len(values) != len(header):
                raise Failure(
                    f"{path}:{reader.line_num}: {len(values)} value(s), but the header has {len(header)} column(s)"
                )
            rows.append(dict(zip(header, values)))
        return rows
    except csv.Error as exc:
        raise Failure(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None


def _rows_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.rows and args.arguments:
        raise UsageError("give rows with --rows FILE or as key=value words, not both")
    if args.rows:
        return rows_from_file(args.rows)
    if args.arguments:
        return [dict(parse_assignment(item) for item in args.arguments)]
    return []


def _batch(session: Session) -> Batch:
    return session.catalog.batches.get(session.args.id)


def _header_line(batch: Batch) -> str:
    counts = ", ".join(f"{count} {status}" for status, count in batch.counts().items() if count)
    who = f"{batch.customer}" if batch.customer else "no customer"
    return f"batch {batch.id}: {batch.interface} v{batch.version} for {who}, {batch.status} ({counts or 'no rows'})"


def _add_rows_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", metavar="FILE", help="rows from a .csv (values are strings), .json or .jsonl file")
    parser.add_argument("arguments", nargs="*", metavar="key=value", help="one row's keyword arguments")


def _add_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="interface name")
    parser.add_argument("version", type=int, help="the version every row calls")
    parser.add_argument("--customer", help="the customer the calls are for")
    parser.add_argument("--description", default="", help="what the batch is for")
    parser.add_argument("--depends-on", type=int, action="append", default=[], metavar="ID",
                        help="a batch that must be executed first (repeatable)")
    _add_rows_options(parser)


def run_create(session: Session) -> int:
    args = session.args
    batch = session.catalog.batches.create(
        args.name, args.version, customer=args.customer, rows=_rows_of(args),
        description=args.description, depends_on=args.depends_on,
    )
    if session.json:
        session.emit(batch.to_dict())
    else:
        print(f"created {_header_line(batch)}", file=session.out)
    return 0


def _add_add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the batch")
    _add_rows_options(parser)


def run_add(session: Session) -> int:
    batch = _batch(session)
    rows = _rows_of(session.args)
    if not rows:
        raise UsageError("no rows given: --rows FILE or key=value words")
    numbers = batch.add_rows(rows)
    if session.json:
        session.emit({"batch": batch.id, "added": numbers})
    else:
        print(f"added row(s) {numbers[0]}-{numbers[-1]} to {_header_line(batch)}", file=session.out)
    return 0


def _add_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", choices=BATCH_STATUSES, help="only batches with this status")


def run_list(session: Session) -> int:
    batches = session.catalog.batches.list(session.args.status)
    if session.json:
        session.emit([b.to_dict() for b in batches])
        return 0
    rows = []
    for batch in batches:
        counts = batch.counts()
        rows.append([batch.id, batch.interface, batch.version, batch.customer, batch.status, sum(counts.values()),
                     counts["ok"], counts["error"], counts["skipped"], counts["pending"], batch.created_at,
                     batch.description])
    table(["id", "interface", "version", "customer", "status", "rows", "ok", "error", "skipped", "pending",
           "created", "description"], rows, session.out, empty="no batches")
    return 0


def _add_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the batch")
    parser.add_argument("--status", choices=ROW_STATUSES, help="only rows with this status")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")
    parser.add_argument("--offset", type=int, default=0, help="skip this many rows")


def run_show(session: Session) -> int:
    args = session.args
    batch = _batch(session)
    rows = batch.rows(args.status, args.offset, args.limit)
    if session.json:
        session.emit({**batch.to_dict(), "row_list": [r.to_dict() for r in rows]})
        return 0
    print(_header_line(batch), file=session.out)
    header = batch.to_dict()
    print(f"created {header['created_at']} by {header['created_by']}"
          + (f"; executed {header['executed_at']} by {header['executed_by']}" if header["executed_at"] else "")
          + (f"; depends on {', '.join(map(str, header['depends_on']))}" if header["depends_on"] else "")
          + (f"; {batch.description}" if batch.description else ""), file=session.out)
    table(["row", "status", "args", "value", "error"],
          [[r.number, r.status, to_json(r.args), None if r.status != "ok" else (r.value if r.value_is_repr else to_json(r.value)),
            r.error and f"{r.error_type}: {r.error}"] for r in rows],
          session.out, empty="no rows")
    return 0


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MOST_WORKERS:
        raise argparse.ArgumentTypeError(f"a number of worker processes from 1 to {MOST_WORKERS}, not {text!r}")
    return int(text)


def _add_execute(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the batch")
    parser.add_argument("--workers", type=_workers, default=1, metavar="N",
                        help="run the rows in N worker processes on this host (default: 1, this process)")


def run_execute(session: Session) -> int:
    batch = _batch(session)
    reason = batch.why_not_execute()
    if reason is not None:
        raise Failure(reason)
    before = batch.counts()
    total = sum(before.values())
    # Made before the first row, knowing the rows done by earlier runs: its rate is this run's own.
    progress = Progress(total, f"batch {batch.id}", session.err, initial=total - before["pending"])

    def report(step: BatchProgress) -> None:
        progress.update(step.done, step.errors)

    if session.args.workers > 1:
        counts = _execute_in_workers(session, batch, progress)
    else:
        counts = batch.execute(progress=report)
    progress.update(total - counts["pending"], counts["error"], final=True)
    if session.json:
        session.emit(batch.to_dict())
    else:
        print(_header_line(batch), file=session.out)
    return 1 if counts["error"] else 0


def _work(options: dict[str, Any], batch_id: int, number: int) -> None:
    """One worker process of ``batch execute --workers``: the catalog the command line named, one execute()."""
    catalog = None
    try:
        catalog = open_catalog(argparse.Namespace(**options), recording=True)
        catalog.batches.get(batch_id).execute()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (CatalogError, OSError) as exc:
        print(f"{PROG}: worker {number}: error: {type(exc).__name__}: {brief(exc, 500)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        if catalog is not None:
            catalog.close()


def _execute_in_workers(session: Session, batch: Batch, progress: Progress) -> dict[str, int]:
    """Run ``batch`` in ``--workers`` processes of this host, showing progress as the rows' outcomes arrive.

    Workers are started with "spawn" (nothing of this process, its threads
    or its connections, is inherited) and open the catalog as this command
    did. They share the rows as any executors of a batch do; one that fails
    leaves its row to the others (or to the next ``batch execute``).
    """
    args = session.args
    options = {"interfaces": args.interfaces, "plugins": args.plugins, "config": args.config}
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_work, args=(options, batch.id, number), name=f"taskcatalog-worker-{number}")
        for number in range(1, args.workers + 1)
    ]
    try:
        for worker in workers:
            worker.start()
        running = [worker.sentinel for worker in workers]
        while running:
            for ended in multiprocessing.connection.wait(running, timeout=WORKER_POLL):
                running.remove(ended)  # type: ignore[arg-type]
            counts = batch.counts()
            progress.update(sum(counts.values()) - counts["pending"], counts["error"])
    except BaseException:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        raise
    finally:
        for worker in workers:
            worker.join()
    failed = [f"worker {number} (exit code {worker.exitcode})"
              for number, worker in enumerate(workers, 1) if worker.exitcode != 0]
    counts = batch.counts()
    if failed and counts["pending"]:
        raise Failure(f"batch {batch.id}: {', '.join(failed)} failed; {counts['pending']} row(s) still pending: "
                      f"run 'taskcatalog batch execute {batch.id}' again to resume")
    if failed:
        print(f"{PROG}: warning: batch {batch.id}: {', '.join(failed)} failed; the other workers ran its rows",
              file=session.err)
    return counts


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the batch")
    parser.add_argument("--format", choices=("csv", "json"), default="json", help="csv or json (default)")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")


def run_export(session: Session) -> int:
    args = session.args
    batch = _batch(session)
    rows = [r.to_dict() for r in batch.rows()]
    if args.format == "json":
        text = json.dumps({**batch.to_dict(), "row_list": rows}, ensure_ascii=False, default=str) + "\n"
    else:
        buffer = io.StringIO()
        columns = ["number", "status", "args", "value", "value_is_repr", "error_type", "error", "call_id",
                   "duration", "finished_at"]
        writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "args": json.dumps(row["args"]),
                             "value": row["value"] if row["value_is_repr"] else json.dumps(row["value"])})
        text = buffer.getvalue()
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        if session.json:
            session.emit({"batch": batch.id, "rows": len(rows), "format": args.format, "out": args.out})
        else:
            print(f"wrote {len(rows)} row(s) of batch {batch.id} to {args.out}", file=session.out)
    else:
        session.out.write(text)
    return 0


COMMANDS["batch"] = Command(
    "prepare calls as rows, review them, execute once, keep the record",
    "taskcatalog batch create interface_a 1 --customer customer_1 --rows rows.csv",
    subcommands={
        "create": Command("a new batch, from a rows file or one row of key=value words",
                          "taskcatalog batch create interface_a 1 --customer customer_1 --rows rows.jsonl",
                          _add_create, run_create, recording=True, assignments=True),
        "add": Command("add rows to a pending batch", "taskcatalog batch add 3 arg1=2 arg2=21",
                       _add_add, run_add, recording=True, assignments=True),
        "list": Command("the batches, newest first", "taskcatalog batch list --status pending",
                        _add_list, run_list, recording=True),
        "show": Command("a batch and its rows", "taskcatalog batch show 3 --status error",
                        _add_show, run_show, recording=True),
        "execute": Command("run a batch's pending rows (exit 1 when some fail)", "taskcatalog batch execute 3 --workers 4",
                           _add_execute, run_execute, recording=True),
        "export": Command("a batch and its rows as CSV or JSON", "taskcatalog batch export 3 --format csv",
                          _add_export, run_export, recording=True),
    },
)
