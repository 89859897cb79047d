"""@deprecated: a warning and a log record until the sunset, VersionRetired after it."""

import datetime as dt
import logging
import sys

import pytest

from taskcatalog import VersionNotFound, VersionRetired, deprecated

VERSIONS = """
    from taskcatalog import deprecated

    @deprecated("use v2", sunset="2000-01-31")
    def old_entrypoint_v1(ctx):
        return 1

    @deprecated("use v3", sunset="2999-12-31")
    def old_entrypoint_v2(ctx):
        return 2

    @deprecated("use v2 instead; v3 was a mistake", sunset={sunset!r})
    def old_entrypoint_v3(ctx):
        return 3
"""


def test_deprecated_warns_and_logs(layout, caplog):
    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    catalog = layout.catalog()
    with caplog.at_level(logging.WARNING, logger="taskcatalog"):
        with pytest.warns(DeprecationWarning, match=r"^old v2 is deprecated \(retired after 2999-12-31\): use v3$") as caught:
            assert catalog.call("old", 2, None) == 2
    assert caught[0].filename == __file__  # points at the caller
    assert "old v2 is deprecated" in caplog.records[-1].getMessage()
    with pytest.warns(DeprecationWarning):
        assert catalog.call("old", 2, None) == 2  # every call, also from the memoised route


def test_a_nested_call_of_a_deprecated_version_warns_at_the_ctx_call_line(layout):
    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    caller = layout.interface(
        "caller",
        """
        def caller_entrypoint_v1(ctx):
            value = 0
            value += ctx.call("old", 2)
            return value
        """,
    )
    catalog = layout.catalog()
    for run in (catalog.call, catalog.run):
        with pytest.warns(DeprecationWarning, match=r"^old v2 is deprecated") as caught:
            run("caller", 1, {"customer": "acme"})
        assert (caught[0].filename, caught[0].lineno) == (str(caller), 4)


def test_run_of_a_deprecated_version_warns_at_the_callers_line(layout):
    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    catalog = layout.catalog()
    with pytest.warns(DeprecationWarning) as caught:
        result = catalog.run("old", 2, None); line = sys._getframe().f_lineno  # noqa: E702
    assert result.value == 2
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def test_a_huge_sunset_date_loads_and_never_retires(layout):
    layout.interface(
        "far",
        """
        from taskcatalog import deprecated

        @deprecated("use v2", sunset="9999-12-31")
        def far_entrypoint_v1(ctx):
            return 1

        def far_entrypoint_v2(ctx):
            return 2
        """,
    )
    catalog = layout.catalog()
    with pytest.warns(DeprecationWarning, match=r"retired after 9999-12-31"):
        assert catalog.call("far", 1, None) == 1
    assert catalog.call("far", "latest", None) == 2
    assert catalog.describe("far")["versions"][0]["deprecated"] == {
        "message": "use v2", "sunset": "9999-12-31", "retired": False,
    }
    assert catalog.check() == []


def test_after_the_sunset_the_version_is_retired(layout):
    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    catalog = layout.catalog()
    with pytest.raises(VersionRetired, match=r"old v1 was retired after 2000-01-31: use v2 \(.*old\.py:4\)") as info:
        catalog.call("old", 1, None)
    assert (info.value.interface, info.value.version, info.value.line) == ("old", 1, 4)
    assert catalog.versions("old") == [1, 2, 3]  # still listed, and described as retired
    described = {v["version"]: v["deprecated"] for v in catalog.describe("old")["versions"]}
    assert described[1] == {"message": "use v2", "sunset": "2000-01-31", "retired": True}
    assert described[2]["retired"] is False


def test_latest_never_picks_a_retired_version(layout):
    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    catalog = layout.catalog()
    with pytest.warns(DeprecationWarning, match="old v2 is deprecated"):
        assert catalog.call("old", "latest", None) == 2
    with pytest.warns(DeprecationWarning):
        assert catalog.call("old", None, None) == 2


def test_every_version_retired(layout):
    layout.interface("gone", """
        from taskcatalog import deprecated

        @deprecated("no replacement", sunset="2001-01-01")
        def gone_entrypoint_v1(ctx):
            return 1
    """)
    catalog = layout.catalog()
    with pytest.raises(VersionRetired, match=r"every version of 'gone' is retired \(versions: 1\)"):
        catalog.call("gone", "latest", None)


def test_sunset_boundary_is_the_end_of_the_day_utc():
    info = deprecated("x", sunset="2027-06-30")(lambda ctx: None).__taskcatalog_deprecated__
    assert info.retire_at == dt.datetime(2027, 7, 1, tzinfo=dt.timezone.utc).timestamp()
    assert deprecated("x")(lambda ctx: None).__taskcatalog_deprecated__.retire_at is None


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("",), {}, TypeError, "needs a message"),
        (("x",), {"sunset": "30/06/2027"}, ValueError, "is not an ISO date like 2027-06-30"),
        (("x",), {"sunset": 2027}, TypeError, "sunset must be an ISO date string or a date"),
    ],
)
def test_bad_deprecations(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        deprecated(*args, **kwargs)


def test_retired_version_is_not_a_missing_version(layout):
    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    catalog = layout.catalog()
    with pytest.raises(VersionNotFound, match="has no version 4; versions: 1, 2, 3"):
        catalog.call("old", 4, None)


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_a_deprecated_call_from_python_c_or_stdin_warns(layout, how):
    """Code run by ``python -c`` or read from stdin has a ``__main__`` whose loader cannot give
    its source: the warning still shows, at that code's line, and the call answers."""
    import subprocess

    from conftest import ROOT

    layout.interface("old", VERSIONS.format(sunset="1999-01-01"))
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from taskcatalog import Catalog\n"
        f"print(Catalog({str(layout.interfaces)!r}, []).call('old', 2, None))\n"
    )
    command = [sys.executable, "-c", code] if how == "-c" else [sys.executable, "-"]
    process = subprocess.run(command, input=None if how == "-c" else code, capture_output=True, text=True,
                             env={"PYTHONPATH": str(ROOT / "src")}, timeout=60)
    assert (process.returncode, process.stdout) == (0, "2\n"), process.stderr
    where = "<string>" if how == "-c" else "<stdin>"
    assert f"{where}:3: DeprecationWarning: old v2 is deprecated (retired after 2999-12-31): use v3" in process.stderr
