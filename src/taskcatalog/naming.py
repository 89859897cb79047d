"""Name rules: interfaces, entrypoints and customers (DESIGN 2.2).

Names are checked before any file is touched, so a hostile customer name can
never become a path.
"""

from __future__ import annotations

import keyword
import re

from .errors import InvalidName

# A customer name is also a folder name: no separators, no dot-dot, bounded.
_CUSTOMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Anything that looks like it was meant to be an entrypoint. Well-formed ones
# are ``<name>_entrypoint_v<N>`` with N a positive integer without leading
# zeros; the looser pattern lets us report the near misses instead of
# silently ignoring them.
_ENTRYPOINT_LIKE = re.compile(r"(?P<prefix>\w+?)_entrypoint_(?P<suffix>v\w*)", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"v([1-9][0-9]*)")


def is_interface_name(name: str) -> bool:
    """True when ``name`` can be an interface (a Python identifier, not a keyword)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def check_interface_name(name: object) -> str:
    if not isinstance(name, str) or not is_interface_name(name):
        raise InvalidName(
            f"invalid interface name {name!r}: it must be a Python identifier "
            "(the file is <name>.py)"
        )
    return name


def is_customer_name(name: str) -> bool:
    return _CUSTOMER.fullmatch(name) is not None and ".." not in name


def check_customer_name(name: object) -> str:
    """Return ``name`` if it is a valid customer name, else raise InvalidName."""
    if not isinstance(name, str) or not is_customer_name(name):
        raise InvalidName(
            f"invalid customer name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit, without '..' or path separators"
        )
    return name


def parse_entrypoint(attr: str, interface: str) -> tuple[int | None, str | None]:
    """Classify a module attribute of ``interfaces/<interface>.py``.

    Returns ``(version, None)`` for a well-formed entrypoint, ``(None,
    reason)`` for a near miss that must be reported, and ``(None, None)`` for
    an attribute that is not an entrypoint at all.
    """
    match = _ENTRYPOINT_LIKE.fullmatch(attr)
    if match is None:
        return None, None
    prefix, suffix = match["prefix"], match["suffix"]
    version_match = _VERSION_SUFFIX.fullmatch(suffix)
    if "_entrypoint_" not in attr or version_match is None:
        return None, (
            f"{attr!r} is not a well-formed entrypoint name: expected "
            f"{interface}_entrypoint_v<N> with N a positive integer without leading zeros"
        )
    if prefix != interface:
        return None, (
            f"{attr!r} is mislabeled: entrypoints in {interface}.py must be named "
            f"{interface}_entrypoint_v<N>"
        )
    return int(version_match[1]), None

