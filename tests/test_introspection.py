"""interfaces(), versions(), customers(), describe() and check()."""

import json
import pickle

import pytest

from taskcatalog import (
    ArgumentError,
    BatchFrozen,
    BatchNotFound,
    CatalogError,
    ContractError,
    InterfaceNotFound,
    InvalidName,
    LoadError,
    MigrationError,
    PluginError,
    Problem,
    SchemaError,
    VersionNotFound,
    VersionRetired,
    errors,
)


def test_listing_needs_no_imports(scale):
    scale.interface("zeta", "raise RuntimeError('not imported by listing')\n")
    catalog = scale.catalog()
    assert catalog.interfaces() == ["scale", "zeta"]
    assert catalog.customers() == ["acme"]
    assert catalog.versions("scale") == [1]
    with pytest.raises(LoadError):
        catalog.versions("zeta")
    with pytest.raises(InterfaceNotFound):
        catalog.versions("nope")


def test_describe(scale):
    scale.interface("scale", """
        from taskcatalog import slot, deprecated

        @deprecated("use v2", sunset="2999-01-01")
        @slot("scale", args={"a": int, "b": float}, returns=float)
        def scale_entrypoint_v1(ctx, x: int):
            '''Scale x.'''
            return ctx.plugins.call("scale", a=x, b=2.0)[1]

        def scale_entrypoint_v2(ctx, x: int, *, y: int = 0, **extra):
            return x
    """)
    description = scale.catalog().describe("scale")
    assert json.loads(json.dumps(description)) == description  # plain data
    assert description["name"] == "scale" and description["path"].endswith("scale.py")
    assert description["customers"] == ["acme"] and description["problems"] == []
    v1, v2 = description["versions"]
    assert v1 == {
        "version": 1,
        "kind": "function",
        "signature": "scale_entrypoint_v1(ctx, x: int)",
        "parameters": ["x"],
        "required": ["x"],
        "accepts_any_keyword": False,
        "context_parameter": "ctx",
        "doc": "Scale x.",
        "line": 4,
        "deprecated": {"message": "use v2", "sunset": "2999-01-01", "retired": False},
        "slots": [{"slot": "scale", "args": {"a": "int", "b": "float"}, "returns": "float", "many": False, "context": True,
                   "customers": [{"customer": "acme", "plugins": ["times"]}]}],
    }
    assert v2["parameters"] == ["x", "y"] and v2["accepts_any_keyword"] is True and v2["slots"] == []


def test_describe_lists_plugin_problems(scale):
    scale.plugin("bad", "scale", "from taskcatalog import plugin_config\n\n"
                 "@plugin_config(slot='scale')\ndef f(ctx):\n    return 1.0\n")
    description = scale.catalog().describe("scale")
    [problem] = description["problems"]
    assert problem["kind"] == "contract" and problem["customer"] == "bad" and problem["line"] == 3


def test_check_is_sorted_plain_data(layout):
    layout.interface("b", "def b_entrypoint_v0(ctx):\n    pass\n")
    layout.interface("a", "import nowhere_to_be_found\n")
    problems = layout.catalog().check()
    assert [p.path.rsplit("/", 1)[1] for p in problems] == ["a.py", "b.py"]
    assert all(isinstance(p, Problem) for p in problems)
    assert problems[0].to_dict() == {
        "path": problems[0].path, "line": 1, "kind": "import",
        "message": problems[0].message, "interface": "a", "customer": None,
    }
    assert str(problems[0]).startswith(f"{problems[0].path}:1: import: cannot load interface 'a'")


def test_error_hierarchy():
    for error in (InvalidName, LoadError, InterfaceNotFound, VersionNotFound, VersionRetired, ArgumentError,
                  PluginError, SchemaError, MigrationError, BatchFrozen, BatchNotFound):
        assert issubclass(error, CatalogError)
    assert issubclass(ContractError, PluginError)
    assert issubclass(InvalidName, ValueError) and issubclass(ArgumentError, TypeError)
    for lookup in (InterfaceNotFound, VersionNotFound, BatchNotFound):
        assert issubclass(lookup, LookupError)
    assert set(errors.__all__) <= set(dir(__import__("taskcatalog")))


def test_errors_carry_fields_and_pickle():
    error = VersionNotFound("no v9", interface="a", version=9, customer="acme", path="/x.py", line=3)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is VersionNotFound and str(copy) == "no v9" and copy.message == "no v9"
    assert (copy.interface, copy.version, copy.customer, copy.path, copy.line) == ("a", 9, "acme", "/x.py", 3)
    assert CatalogError("plain").interface is None
