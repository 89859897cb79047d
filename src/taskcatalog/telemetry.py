"""Recording every call off the call path: two buffers, a writer thread, and what ends them.

A call appends one tuple of plain values to ``calls`` (``deque.append`` is
atomic and takes no lock), its plugin runs in a tuple inside it. Without a
database that is all: the deques are bounded and ``stores.MemoryStore``
reads them. With one, ``Telemetry`` runs a writer thread that wakes every
``flush_interval`` seconds, or as soon as ``flush_size`` calls wait (it
looks every ``POLL`` seconds: counting on the call path would cost every
call), takes what is waiting and hands it to the store in batches of at
most ``batch_size``.

The writer shares the GIL with the calls, so what it does in Python is taken
from them: about 250 ns a record (packing, in C, and the aggregates,
``stores.aggregate``), against one or two microseconds for the call itself.
Small batches, written often, keep few records alive (the garbage collector
walks every live one) and leave little to write when ``close()`` comes. A
batch's records reach the database as one value in one statement: with
``executemany``, the GIL would be given up around every row, and while calls
keep it busy, getting it back takes up to the switch interval (5 ms) each
time.

A write that fails or waits (locked file, full disk, read-only file) never
reaches a call: the batch stays pending and is retried with a growing
pause, the failure is logged and counted, and ``close()`` reports what could
finally not be written.

``close()``, interpreter exit and the end of a ``multiprocessing`` worker
flush what is left: workers end with ``os._exit`` and never run ``atexit``,
but they do run ``multiprocessing.util.Finalize`` callbacks, which is how
the final flush is registered (again in each forked child, whose copy of
the parent's buffers is dropped: the parent writes those records itself; and
once more in a ``multiprocessing`` child, whose bootstrap empties the
finalizer registry after the fork). A fork waits for a write in progress, so
no child starts with SQLite caught in the middle of one.
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing import util as mp_util
from typing import Any, NamedTuple, Protocol

from .errors import brief
from .records import TelemetryReport

__all__ = ["Telemetry", "Buffers", "Keys", "Batch", "CallWriter", "RawCall", "RawSpan", "POLL"]

LOG = logging.getLogger("taskcatalog.telemetry")

#: What every call appends, one flat tuple, in one of two forms:
#:
#: * ``(number, call key, start, duration, *runs)``: a call made by an
#:   executor that returned (the common one);
#: * ``(number, call key + 1, start, duration, status, parent call id, error
#:   type, error, *runs)``: any other (failed, skipped, or made by another
#:   call with ``ctx.call``).
#:
#: Start is a ``perf_counter_ns()`` reading, durations are nanoseconds, runs
#: are (plugin key, duration) per plugin run. Call keys are even, so the
#: parity of the second value tells the forms apart. Flat and short, since
#: every value is work for the collector (which stops tracking such a tuple
#: the first time it meets it, see Catalog._recorded), for the pickler and
#: for freeing it; ``stores.unpack`` gives both forms one shape.
RawCall = tuple[Any, ...]
#: One plugin run, as the call's record holds it: (plugin key, duration ns).
RawSpan = tuple[int, int]

#: How often (seconds) the writer looks whether ``flush_size`` calls are waiting.
POLL = 0.02


# Key numbers are unique in the process, not only per ``Keys``: the store files
# keys under the process's call id prefix, which every catalog of the process
# shares, so two catalogs writing to one database (one after the other, or at
# once) must never give one number to two different tuples.
_next_key = itertools.count(2, 2).__next__  # even: see RawCall


class Keys:
    """Small integers standing for the tuples records repeat, unique in the process.

    A call record carries the key of its (interface, version, customer) and
    a plugin run the key of its (slot, plugin) instead of the strings: fewer
    values to pass per record. ``new`` holds ``(key, *values)`` not yet
    written to a store.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[Any, ...], int] = {}
        self.values: dict[int, tuple[Any, ...]] = {}
        self.new: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()

    def __call__(self, *values: Any) -> int:
        key = self._ids.get(values)
        if key is None:
            with self._lock:
                key = self._ids.get(values)
                if key is None:
                    key = _next_key()
                    self.values[key] = values
                    self.new.append((key, *values))
                    # Published last: a thread that finds the key without the
                    # lock finds it in ``values`` and ``new`` too.
                    self._ids[values] = key
        return key

    def _after_fork(self) -> None:
        # The child writes under a process id of its own: every key is new there.
        self._lock = threading.Lock()
        self.new.clear()
        self.new.extend((key, *values) for key, values in self.values.items())


class Buffers:
    """Where the call path puts records, and the keys they use.

    ``limit`` bounds the deque of calls (the oldest go first): memory-only telemetry.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.calls: deque[RawCall] = deque(maxlen=limit)
        self.call_keys = Keys()  # (interface, version, customer)
        self.span_keys = Keys()  # (slot, plugin)
        _LIVE_BUFFERS.add(self)

    def _after_fork(self) -> None:
        # Emptied, not replaced: the catalog appends to this very object.
        self.calls.clear()
        self.call_keys._after_fork()
        self.span_keys._after_fork()


class Batch(NamedTuple):
    """What one write stores: new keys, then records (in one transaction)."""

    call_keys: list[tuple[Any, ...]]  # (key, interface, version, customer)
    span_keys: list[tuple[Any, ...]]  # (key, slot, plugin)
    calls: Sequence[RawCall]


class CallWriter(Protocol):
    """What the writer hands batches to (``stores.DatabaseStore``)."""

    def write(self, batch: Batch, prefix: str, wall_offset: float) -> None:
        """Store a batch in one transaction (all or nothing); raise on failure."""

    def prune(self, before: float) -> int:
        """Drop raw records that started before POSIX time ``before``; keep aggregates."""

    def close(self) -> None:
        """Release what the store holds for writing (called once the writer has stopped)."""


def _drain(source: deque[Any], into: list[Any]) -> None:
    """Move what ``source`` holds now to ``into``; appends made meanwhile stay for next time."""
    into.extend(map(operator.call, itertools.repeat(source.popleft, len(source))))  # in C: no loop in Python


class Telemetry:
    """The writer thread that moves recorded calls from the buffers into a database store."""

    def __init__(
        self,
        buffers: Buffers,
        store: CallWriter,
        *,
        prefix: Callable[[], str],
        flush_interval: float = 0.5,
        flush_size: int = 20_000,
        batch_size: int = 50_000,
        max_pending: int = 2_000_000,
        retention: float | None = None,
    ) -> None:
        self.buffers = buffers
        self.store = store
        self._prefix = prefix
        self.flush_interval = flush_interval
        self.flush_size = flush_size
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.retention = retention  # seconds of raw records to keep; None keeps all
        # Taken from the buffers, not written yet (a failed batch waits here).
        self._pending: tuple[list[tuple[Any, ...]], ...] = tuple([] for _ in Batch._fields)
        self._wake = threading.Event()
        self._flushing = threading.Lock()  # one writer at a time: the thread, close(), exit
        self._closed = False
        self._next_prune = 0.0
        self._retry_at = 0.0
        self._pause = 0.0
        self.written = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._finalizer: mp_util.Finalize | None = None
        self._start()
        _LIVE_WRITERS.add(self)
        # A multiprocessing child clears the finalizers it inherited, and so
        # the one _after_fork registered; this registers it again after that.
        mp_util.register_after_fork(self, Telemetry._finalize_again)

    # -- lifecycle -----------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="taskcatalog-telemetry", daemon=True)
        self._thread.start()
        self._register_final_flush()

    def _register_final_flush(self) -> None:
        """Flush at interpreter exit and at the end of a ``multiprocessing`` worker, which skips ``atexit``."""
        self._finalizer = mp_util.Finalize(self, Telemetry._final_flush, args=(weakref.ref(self),), exitpriority=10)

    def _finalize_again(self) -> None:
        """In a ``multiprocessing`` child, after its ``Process._bootstrap`` emptied the finalizer registry."""
        if not self._closed and (self._finalizer is None or not self._finalizer.still_active()):
            self._register_final_flush()

    @staticmethod
    def _final_flush(ref: weakref.ref[Telemetry]) -> None:
        telemetry = ref()
        if telemetry is not None and not telemetry._closed:
            telemetry.close(timeout=5.0)

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's records and start a writer of its own."""
        for pending in self._pending:
            pending.clear()
        self._wake = threading.Event()
        self._flushing = threading.Lock()
        self.written = self.failures = self.dropped = 0
        self.last_error = None
        self._retry_at = self._pause = 0.0  # the parent's failures are not the child's
        if not self._closed:
            self._start()

    def close(self, timeout: float = 10.0) -> TelemetryReport:
        """Stop the writer and write what is left, trying for up to ``timeout`` seconds.

        A write waits at most the store's lock wait for the database (see
        ``stores.LOCK_WAIT``), so this returns within about ``timeout`` plus
        that wait, and never while the writer thread is still using the store:
        the catalog closes the database next, and a sqlite3 connection closed
        under a thread still using it can crash the process.
        """
        if self._closed:
            return self.report()
        self._closed = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        thread = None if self._thread is threading.current_thread() else self._thread
        if thread is not None:
            thread.join(timeout)
        while True:
            self._retry_at = 0.0  # no pause: the deadline bounds the tries
            if self.flush() or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if thread is not None:
            # It ends after the write or prune it is in, which waits at most
            # the lock wait (the flush above could only start once a write ended).
            thread.join()
        if self._finalizer is not None:
            self._finalizer.cancel()
        self.store.close()
        report = self.report()
        if report.unwritten:
            LOG.error(
                "telemetry: %d call record(s) could not be written (%s)", report.unwritten, report.error or "unknown error"
            )
        return report

    def report(self) -> TelemetryReport:
        unwritten = len(self._pending[2]) + len(self.buffers.calls) + self.dropped
        return TelemetryReport(self.written, unwritten, self.failures, self.last_error)

    # -- the writer ------------------------------------------------------------

    def _running(self) -> bool:
        return not self._closed

    def _run(self) -> None:
        due = time.monotonic() + self.flush_interval
        while self._running():
            self._wake.wait(POLL)
            self._wake.clear()
            if not self._running():  # close() writes what is left itself
                break
            now = time.monotonic()
            if now < due and len(self.buffers.calls) < self.flush_size:
                continue
            due = now + self.flush_interval
            try:
                self.flush()
                if self._running():
                    self._maybe_prune()
            except Exception:  # noqa: BLE001 - the writer must outlive any failure
                LOG.exception("telemetry writer failed; it carries on")

    def flush(self) -> bool:
        """Write everything waiting; True when nothing is left pending."""
        with self._flushing:
            buffers = self.buffers
            # Calls first, then keys: a call's key is made before the call is
            # recorded, so every call taken here has its key taken with it (or
            # before). The other way round, a key made between the two drains
            # would miss the batch of its first call, and the aggregates of
            # that batch, which join records to keys, would lose the call.
            pending_keys, pending_spans, pending_calls = self._pending
            _drain(buffers.calls, pending_calls)
            _drain(buffers.call_keys.new, pending_keys)
            _drain(buffers.span_keys.new, pending_spans)
            calls = self._pending[2]
            overflow = len(calls) - self.max_pending
            if overflow > 0:  # the store has been failing for long: keep memory bounded
                del calls[:overflow]
                self.dropped += overflow
            if not any(self._pending):
                return True
            if time.monotonic() < self._retry_at:
                return False
            while any(self._pending):
                # Keys go whole with the first batch; records in slices, as a
                # tuple: the collector stops tracking a tuple of untracked
                # records the first time it meets it, where a list would be
                # walked whole by every collection the calls set off while the
                # batch is written.
                batch = Batch(pending_keys[:], pending_spans[:], tuple(pending_calls[:self.batch_size]))
                try:
                    self.store.write(batch, self._prefix(), time.time() - time.perf_counter_ns() * 1e-9)
                except Exception as exc:  # noqa: BLE001 - any failure of the store is retried
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {brief(exc)}"
                    self._pause = min(5.0, max(0.05, self._pause * 2))
                    self._retry_at = time.monotonic() + self._pause
                    log = LOG.warning if self.failures == 1 or self.failures % 100 == 0 else LOG.debug
                    log("telemetry: writing %d record(s) failed (%s); will retry", len(batch.calls), self.last_error)
                    return False
                for pending, written in zip(self._pending, batch):
                    del pending[:len(written)]
                self.written += len(batch.calls)
                self._pause = 0.0
            return True

    def _maybe_prune(self) -> None:
        if self.retention is None:
            return
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + 60.0
        try:
            with self._flushing:  # like a write: no fork happens in the middle of it
                removed = self.store.prune(time.time() - self.retention)
        except Exception as exc:  # noqa: BLE001 - pruning is retried at the next round
            LOG.warning("telemetry: pruning old call records failed (%s: %s)", type(exc).__name__, brief(exc))
            return
        if removed:
            LOG.info("telemetry: pruned %d call record(s) older than the retention", removed)


# Alive in this process, so a forked child can reset them.
_LIVE_BUFFERS: weakref.WeakSet[Buffers] = weakref.WeakSet()
_LIVE_WRITERS: weakref.WeakSet[Telemetry] = weakref.WeakSet()


# A fork copies memory, not threads: a writer thread caught inside SQLite at
# the fork may hold one of SQLite's process-wide mutexes (memory statistics,
# the file's lock table), and the child's first use of SQLite would then wait
# for it forever. So a fork waits until no writer is in the middle of a write
# or prune (at most the store's lock wait plus the write itself). The wait is
# bounded all the same: a thread forking from inside a flush (a logging
# handler that forks) would otherwise wait for itself.
_held_at_fork: list[threading.Lock] = []
FORK_WAIT = 10.0


def _before_fork() -> None:
    for telemetry in list(_LIVE_WRITERS):
        lock = telemetry._flushing
        if lock.acquire(timeout=FORK_WAIT):
            _held_at_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        _held_at_fork.pop().release()


def _reset_after_fork() -> None:
    _held_at_fork.clear()  # the child's writers get new locks
    for buffers in list(_LIVE_BUFFERS):
        buffers._after_fork()
    for telemetry in list(_LIVE_WRITERS):
        telemetry._after_fork()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_reset_after_fork)
