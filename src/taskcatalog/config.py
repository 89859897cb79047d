"""``taskcatalog.toml``: find, read and validate the configuration file (DESIGN 2.9).

``load_config`` turns the file into a ``CatalogConfig`` of plain values with
absolute paths, so nothing downstream depends on the working directory;
``find_config`` is how the command line chooses the file; and
``customer_database_for`` turns the customer database template into one
customer's path or URL. Nothing here imports or opens the catalog.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

from .errors import ConfigError, InvalidName, brief, location
from .naming import check_customer_name, is_interface_name

__all__ = [
    "CatalogConfig",
    "ConfigError",
    "load_config",
    "find_config",
    "customer_database_for",
    "CONFIG_NAME",
    "CONFIG_ENV",
]

CONFIG_NAME = "taskcatalog.toml"
CONFIG_ENV = "TASKCATALOG_CONFIG"
PLACEHOLDER = "{customer}"
MEMORY = ":memory:"

_TOP_KEYS = ("catalog", "customers")
_CATALOG_KEYS = (
    "interfaces",
    "plugins",
    "database",
    "customer_database",
    "reload_interval",
    "telemetry",
    "retention_days",
    "entry_points",
)
_CUSTOMER_KEYS = ("versions",)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # what TOML writes without quotes
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")  # as db.backends reads a URL
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")  # a format field, or a lone brace
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_SEPARATORS = re.compile(r"[\\/]")


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    """The validated contents of a ``taskcatalog.toml``; every path is absolute.

    ``pins`` maps customer -> interface -> version, read-only (a
    ``MappingProxyType`` of ``MappingProxyType``s); customers without a
    ``versions`` table map to an empty mapping.
    """

    path: str
    interfaces: tuple[str, ...]
    plugins: tuple[str, ...] = ()
    database: str | None = None
    customer_database: str | None = None
    reload_interval: float | None = None
    telemetry: bool = True
    retention_days: float = 30.0
    entry_points: bool = True
    pins: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))


# -- reading -------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> CatalogConfig:
    """Read and validate the configuration file at ``path``; ConfigError naming file and key if it cannot be used."""
    file = os.path.abspath(os.fspath(path))
    return _Reader(file).config(_parse(file))


def _parse(file: str) -> dict[str, Any]:
    """The TOML document at ``file``, each way of failing told apart in one line."""
    # Checked first: opening a folder is IsADirectoryError on POSIX but
    # PermissionError on Windows.
    if os.path.isdir(file):
        raise ConfigError(f"{file}: is a folder, not a configuration file", path=file)
    try:
        with open(file, "rb") as stream:
            raw = stream.read()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ConfigError(f"{file}: the configuration file does not exist", path=file) from exc
    except OSError as exc:
        raise ConfigError(
            f"{file}: cannot read the configuration file: {exc.strerror or exc}", path=file
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{location(file, line)}: the configuration file is not UTF-8 text "
            f"(byte 0x{raw[exc.start]:02x} at offset {exc.start}); TOML files must be UTF-8",
            path=file,
            line=line,
        ) from None
    # Editors on Windows may start UTF-8 files with a byte order mark, which
    # tomllib rejects as an "Invalid statement": accept it.
    text = text.removeprefix("\ufeff")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)  # "... (at line L, column C)" or "... (at end of document)"
        match = _TOML_LINE.search(message)
        line = int(match[1]) if match else text.count("\n") + (0 if text.endswith("\n") else 1) or 1
        raise ConfigError(
            f"{location(file, line)}: invalid TOML: {message}", path=file, line=line
        ) from None


class _Reader:
    """Validates one parsed file; every error names the file and the dotted key."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.base = os.path.dirname(file)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {message}", path=self.file)

    def wrong(self, key: str, expected: str, found: object) -> NoReturn:
        raise self.error(f"{key} must be {expected}, not {_show(found)}")

    def config(self, data: dict[str, Any]) -> CatalogConfig:
        self.known_keys(data, _TOP_KEYS, "")
        if "catalog" not in data:
            raise self.error(
                'the [catalog] table is missing; it needs at least interfaces = ["<folder>"]'
            )
        catalog = data["catalog"]
        if not isinstance(catalog, dict):
            self.wrong("catalog", "a table ([catalog])", catalog)
        self.known_keys(catalog, _CATALOG_KEYS, "catalog")
        if "interfaces" not in catalog:
            raise self.error(
                'catalog.interfaces is missing: name the folder(s) of interface files, '
                'e.g. interfaces = ["src/interfaces"]'
            )
        get = catalog.get
        return CatalogConfig(
            path=self.file,
            interfaces=self.folders("catalog.interfaces", catalog["interfaces"], required=True),
            plugins=self.folders("catalog.plugins", get("plugins", []), required=False),
            database=None if "database" not in catalog else self.database(catalog["database"]),
            customer_database=(
                None
                if "customer_database" not in catalog
                else self.template(catalog["customer_database"])
            ),
            reload_interval=(
                None
                if "reload_interval" not in catalog
                else self.number("catalog.reload_interval", catalog["reload_interval"], "seconds >= 0", 0.0)
            ),
            telemetry=self.flag("catalog.telemetry", get("telemetry", True)),
            retention_days=self.number("catalog.retention_days", get("retention_days", 30.0), "days > 0", None),
            entry_points=self.flag("catalog.entry_points", get("entry_points", True)),
            pins=self.pins(data.get("customers", {})),
        )

    def known_keys(self, table: Mapping[str, object], known: tuple[str, ...], prefix: str) -> None:
        """Refuse the first key of ``table`` not in ``known``, suggesting the close ones."""
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=3)
            if close:
                hint = "did you mean " + " or ".join(_dotted(prefix, k) for k in close) + "?"
            else:
                where = f"[{prefix}]" if prefix else "the top level"
                hint = f"the keys of {where} are {', '.join(known)}"
            raise self.error(f"unknown key {_dotted(prefix, key)}; {hint}")

    def folders(self, key: str, value: object, *, required: bool) -> tuple[str, ...]:
        expected = "a folder path or a list of folder paths (strings)"
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.wrong(key, expected, value)
        if required and not items:
            raise self.error(f"{key} is empty: name at least one folder")
        folders = []
        for index, item in enumerate(items):
            where = key if isinstance(value, str) else f"{key}[{index}]"
            if not isinstance(item, str) or not item:
                self.wrong(where, "a folder path (a non-empty string)", item)
            folders.append(_absolute(self.base, item))
        return tuple(folders)

    def database(self, value: object) -> str:
        key = "catalog.database"
        if not isinstance(value, str) or not value:
            self.wrong(key, "a path or a database URL (a non-empty string)", value)
        return self.location(key, value)

    def template(self, value: object) -> str:
        key = "catalog.customer_database"
        if not isinstance(value, str):
            self.wrong(key, "a path or URL template (a string) containing {customer}", value)
        count = value.count(PLACEHOLDER)
        if count != 1:
            how = "" if count == 0 else f" exactly once (it appears {count} times)"
            raise self.error(
                f"{key} must contain {{customer}}{how}, so that each customer gets its own "
                f"database; found {_show(value)}"
            )
        stray = _BRACES.search(value.replace(PLACEHOLDER, ""))
        if stray is not None:
            raise self.error(
                f"{key} may contain no field or brace other than {{customer}}; "
                f"found {stray[0]} in {_show(value)}"
            )
        inside = _file_part(value)
        if inside is not None and ".." in _SEPARATORS.split(inside.partition(PLACEHOLDER)[2]):
            # Resolving would fold "{customer}/.." away, and at run time the
            # customer's database would land outside the customers' folder.
            raise self.error(f"{key} must not go up with '..' after {{customer}}; found {_show(value)}")
        return self.location(key, value)

    def location(self, key: str, value: str) -> str:
        """A database path or URL made absolute against the file's folder; other URLs unchanged."""
        if value == MEMORY:
            return value
        scheme = _scheme(value)
        if scheme is None:
            return _absolute(self.base, value)
        if scheme != "sqlite":
            return value
        rest = value[len("sqlite:"):]
        if rest in ("//", "///" + MEMORY):
            return value
        if not rest.startswith("///") or len(rest) == 3:
            raise self.error(
                f"{key} is not a SQLite URL this library reads: {_show(value)}; use "
                "sqlite:///relative/path, sqlite:////absolute/path or sqlite:///:memory:"
            )
        inner = rest[3:]
        # On POSIX the absolute path starts with "/": sqlite:////abs/path.
        return value if os.path.isabs(inner) else "sqlite:///" + _absolute(self.base, inner)

    def number(self, key: str, value: object, unit: str, minimum: float | None) -> float:
        """A finite int or float (not a bool) >= ``minimum``, or > 0 when ``minimum`` is None."""
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or (value <= 0 if minimum is None else value < minimum)
        ):
            self.wrong(key, f"a finite number of {unit}", value)
        return float(value)

    def flag(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.wrong(key, "true or false", value)
        return value

    def pins(self, value: object) -> Mapping[str, Mapping[str, int]]:
        """``[customers.<name>.versions]``: customer -> interface -> positive version."""
        if not isinstance(value, dict):
            self.wrong("customers", "a table of customers ([customers.<name>.versions])", value)
        pins: dict[str, Mapping[str, int]] = {}
        for customer, table in value.items():
            where = _dotted("customers", customer)
            try:
                check_customer_name(customer)
            except InvalidName as exc:
                raise self.error(f"{where}: {exc.message}") from None
            if not isinstance(table, dict):
                self.wrong(where, f"a table ([{where}.versions])", table)
            self.known_keys(table, _CUSTOMER_KEYS, where)
            versions = table.get("versions", {})
            if not isinstance(versions, dict):
                self.wrong(f"{where}.versions", "a table of interface = version", versions)
            checked: dict[str, int] = {}
            for name, version in versions.items():
                key = _dotted(f"{where}.versions", name)
                if not is_interface_name(name):
                    raise self.error(
                        f"{key}: {name!r} is not a valid interface name: it must be a "
                        "Python identifier (the file is <name>.py)"
                    )
                if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                    self.wrong(key, "a positive integer version", version)
                checked[name] = version
            pins[customer] = MappingProxyType(checked)
        return MappingProxyType(pins)


def _dotted(prefix: str, key: str) -> str:
    """``prefix.key`` as TOML would write it: a key that is not bare is quoted."""
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def _show(value: object) -> str:
    """A value as it was written in TOML, shortened, for 'expected X, not Y' messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return brief(json.dumps(value, ensure_ascii=False), 80)
    if isinstance(value, (int, float)):
        return repr(value)  # inf and nan read the same in TOML
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return brief("[" + ", ".join(_show(item) for item in value) + "]", 80)
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    return brief(repr(value), 80)


def _absolute(base: str, path: str) -> str:
    """``path`` relative to ``base`` made absolute; an absolute path is kept as written."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _scheme(value: str) -> str | None:
    """The URL scheme (lower case) of ``value``, or None for a plain path (as ``db.connect`` decides)."""
    match = _SCHEME.match(value)
    # "C:\\data" has a one-letter "scheme": a Windows drive, so a path.
    if match is None or len(match[1]) == 1:
        return None
    scheme = match[1].lower()
    return None if scheme != "sqlite" and "://" not in value else scheme


def _file_part(value: str) -> str | None:
    """The file path a path or SQLite URL names; None for other URLs and memory databases."""
    scheme = _scheme(value)
    if scheme is None:
        return None if value == MEMORY else value
    if scheme != "sqlite":
        return None
    rest = value[len("sqlite:"):]
    return rest[3:] if rest.startswith("///") and rest[3:] not in ("", MEMORY) else None


# -- customer databases --------------------------------------------------


def customer_database_for(template: str, customer: str) -> str:
    """The path or URL of ``customer``'s own database, from a template holding ``{customer}``.

    The name is checked before it is substituted (``str.replace``, so no other
    brace is interpreted), and a path result must stay inside the folder the
    template names before ``{customer}``; else InvalidName.
    """
    check_customer_name(customer)
    if PLACEHOLDER not in template:
        # Without it every customer would share one database.
        raise ConfigError(f"the customer database template {template!r} does not contain {{customer}}")
    result = template.replace(PLACEHOLDER, customer)
    inside = _file_part(template)
    if inside is not None:
        before = inside.partition(PLACEHOLDER)[0]
        folder = os.path.realpath(os.path.dirname(before) or os.curdir)
        target = os.path.realpath(inside.replace(PLACEHOLDER, customer))
        if os.path.commonpath([folder, target]) != folder:
            raise InvalidName(
                f"customer {customer!r}: its database {target} would lie outside {folder}, "
                f"the folder of the template {template!r}",
                customer=customer,
            )
    return result


# -- finding the file (command line) ------------------------------------


def find_config(explicit: str | None, environ: Mapping[str, str], cwd: str) -> str | None:
    """The configuration file the command line uses, as an absolute path, or None.

    In order: ``--config FILE`` (``explicit``), the ``TASKCATALOG_CONFIG``
    environment variable, ``<cwd>/taskcatalog.toml``. A file named by the
    first two must exist (ConfigError); None means the caller falls back to
    the example catalog of a checkout.
    """
    if explicit is not None:
        return _named_file(explicit, cwd, f"--config {explicit}" if explicit else "--config")
    named = environ.get(CONFIG_ENV)
    if named:
        return _named_file(named, cwd, f"{CONFIG_ENV}={named}")
    candidate = os.path.abspath(os.path.join(cwd, CONFIG_NAME))
    return candidate if os.path.isfile(candidate) else None


def _named_file(name: str, cwd: str, where: str) -> str:
    if not name:
        raise ConfigError(f"{where}: the file name is empty")
    full = os.path.abspath(os.path.join(cwd, name))
    shown = "" if full == name else f" ({full})"
    if os.path.isdir(full):
        raise ConfigError(f"{where}: is a folder{shown}, not a configuration file", path=full)
    if not os.path.isfile(full):
        raise ConfigError(f"{where}: no such configuration file{shown}", path=full)
    return full
