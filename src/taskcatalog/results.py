"""Plain-data records the catalog hands back: problems, call results, reload reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Problem", "CallResult", "ReloadReport"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a file of the catalog, as ``check()`` lists it.

    ``kind`` is one of: ``folder`` (missing or unreadable folder), ``name``
    (a file, folder or entrypoint breaking the naming rules), ``duplicate``
    (the same interface or plugin file in two folders), ``import`` (the file
    does not import), ``entrypoint`` (an entrypoint that cannot be called),
    ``contract`` (a plugin that does not fit its slot), ``conflict`` (two
    plugins in a single slot), ``orphan`` (a plugin file for an interface
    that does not exist).
    """

    path: str
    line: int | None
    kind: str
    message: str
    interface: str | None = None
    customer: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.kind}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of ``Catalog.run``: never an exception, always a record."""

    status: str  # "ok", "error" or "skipped"
    value: Any
    error: BaseException | None
    call_id: str
    duration: float  # seconds

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        error = None
        if self.error is not None:
            error = {"type": type(self.error).__name__, "message": str(self.error)}
        return {
            "status": self.status,
            "value": self.value,
            "error": error,
            "call_id": self.call_id,
            "duration": self.duration,
        }


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What ``Catalog.reload`` found: file paths added, changed and removed;
    ``recovered``, files unchanged on disk that failed for a file-system
    reason (vanished, unreadable) and load now; and the problems of files
    whose new version failed (the last good version keeps running where
    there was one)."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        """True when anything changed, failed or recovered."""
        return bool(self.added or self.changed or self.removed or self.failed or self.recovered)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
            "failed": [p.to_dict() for p in self.failed],
            "recovered": list(self.recovered),
        }
