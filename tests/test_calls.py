"""Resolving and calling: versions, contexts, arguments, results, nested calls."""

import logging
import threading

import pytest

from taskcatalog import (
    ArgumentError,
    CallContext,
    CatalogError,
    ConfigError,
    Context,
    InterfaceNotFound,
    InvalidName,
    PluginError,
    VersionNotFound,
)

THREE_VERSIONS = """
    def greet_entrypoint_v1(ctx, name):
        return f"hello {name}"

    def greet_entrypoint_v2(ctx, name, *, punctuation="!"):
        return f"hello {name}{punctuation}"

    def greet_entrypoint_v3(ctx, **kwargs):
        return sorted(kwargs)
"""


@pytest.fixture
def greet(layout):
    layout.interface("greet", THREE_VERSIONS)
    return layout.catalog()


def test_exact_latest_and_none(greet):
    assert greet.call("greet", 1, None, name="ann") == "hello ann"
    assert greet.call("greet", 2, None, name="ann", punctuation="?") == "hello ann?"
    assert greet.call("greet", "latest", None, x=1, y=2) == ["x", "y"]
    assert greet.call("greet", None, None, x=1) == ["x"]


def test_pins_decide_version_none(layout):
    layout.interface("greet", THREE_VERSIONS)
    catalog = layout.catalog(pins={"acme": {"greet": 1}})
    assert catalog.call("greet", None, Context("acme"), name="ann") == "hello ann"
    assert catalog.call("greet", None, Context("other"), name="ann") == ["name"]
    assert catalog.call("greet", 2, Context("acme"), name="ann") == "hello ann!"


def test_a_pin_to_a_missing_version_or_interface_is_refused_when_the_catalog_is_built(layout):
    layout.interface("greet", THREE_VERSIONS)
    with pytest.raises(ConfigError, match=r"^pin customers\.acme\.versions\.greet = 7: interface 'greet' has no version 7 \(versions: 1, 2, 3\)$"):
        layout.catalog(pins={"acme": {"greet": 7}})
    with pytest.raises(ConfigError, match=r"^pin customers\.acme\.versions\.nope = 1: there is no interface 'nope' in the catalog$"):
        layout.catalog(pins={"acme": {"nope": 1}})


def test_a_pin_that_a_deploy_made_missing_says_so_at_call_time(layout):
    layout.interface("greet", THREE_VERSIONS)
    catalog = layout.catalog(pins={"acme": {"greet": 3}})
    layout.interface("greet", "def greet_entrypoint_v1(ctx):\n    return 'one'\n")
    catalog.reload()
    with pytest.raises(VersionNotFound, match=r"has no version 3 \(customer 'acme' is pinned to it\); versions: 1"):
        catalog.call("greet", None, Context("acme"))


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ({"../x": {"greet": 1}}, "invalid customer name"),
        ({"acme": {"greet": 0}}, r"pins\['acme'\]\['greet'\] must be a positive int"),
        ({"acme": {"greet": True}}, r"must be a positive int, not True"),
        ({"acme": 1}, r"pins\['acme'\] must map interface names to versions"),
    ],
)
def test_bad_pins_are_refused(layout, pins, message):
    with pytest.raises((TypeError, ValueError), match=message):
        layout.catalog(pins=pins)


def test_unknown_interface_and_version(greet):
    with pytest.raises(InterfaceNotFound, match=r"no interface 'nope' in the catalog \(interfaces: greet; folders: .*interfaces\)") as info:
        greet.call("nope", 1, None)
    assert isinstance(info.value, LookupError) and info.value.interface == "nope"
    with pytest.raises(VersionNotFound, match=r"interface 'greet' has no version 4; versions: 1, 2, 3") as info:
        greet.call("greet", 4, None)
    assert isinstance(info.value, LookupError) and info.value.version == 4


@pytest.mark.parametrize("version", [True, 1.0, "1", "v1", 0, -1, [1]])
def test_versions_that_are_not_versions(greet, version):
    greet.call("greet", 1, None, name="warm the route cache")
    error = VersionNotFound if isinstance(version, int) and not isinstance(version, bool) else ArgumentError
    with pytest.raises(error, match="version"):
        greet.call("greet", version, None, name="ann")


@pytest.mark.parametrize("name", ["../greet", "greet.py", "", "class", 3])
def test_interface_names_that_are_not_names(greet, name):
    with pytest.raises(InvalidName, match="invalid interface name"):
        greet.call(name, 1, None)


def test_unexpected_keyword_is_argument_error_before_the_body_runs(layout):
    layout.interface(
        "count",
        """
        CALLS = []

        def count_entrypoint_v1(ctx, a, b=2):
            CALLS.append(a)
            return a + b
        """,
    )
    catalog = layout.catalog()
    with pytest.raises(ArgumentError, match=r"count v1 \(.*count\.py:\d+\): unexpected keyword argument\(s\) 'c'; it accepts: a, b") as info:
        catalog.call("count", 1, None, a=1, c=3)
    assert isinstance(info.value, TypeError)
    with pytest.raises(ArgumentError, match=r"no value for required argument\(s\) 'a'; it accepts: a, b"):
        catalog.call("count", 1, None, b=3)
    with pytest.raises(ArgumentError, match=r"unexpected keyword argument\(s\) 'ctx'"):
        catalog.call("count", 1, None, a=1, ctx=2)
    interface = catalog._snapshot.interface("count")
    module_calls = interface.entrypoints[1].target.__globals__["CALLS"]
    assert module_calls == []  # the body never ran
    assert catalog.call("count", 1, None, a=1) == 3


def test_exceptions_from_the_entrypoint_propagate_unchanged(layout):
    layout.interface(
        "boom",
        """
        def boom_entrypoint_v1(ctx, kind):
            if kind == "type":
                return len(5)
            raise KeyError(kind)
        """,
    )
    catalog = layout.catalog()
    with pytest.raises(TypeError, match="has no len") as info:
        catalog.call("boom", 1, None, kind="type")
    assert not isinstance(info.value, CatalogError)
    with pytest.raises(KeyError, match="other"):
        catalog.call("boom", 1, None, kind="other")


def test_run_returns_results_and_never_raises(greet):
    ok = greet.run("greet", 1, None, name="ann")
    assert (ok.status, ok.value, ok.error) == ("ok", "hello ann", None)
    assert ok.duration >= 0 and ok.call_id
    failed = greet.run("greet", 9, None)
    assert failed.status == "error" and isinstance(failed.error, VersionNotFound)
    assert failed.to_dict()["error"] == {"type": "VersionNotFound", "message": str(failed.error)}
    assert greet.run("greet", 1, None, name="b").call_id != ok.call_id


def test_contexts_dict_context_mapping_and_none(layout):
    layout.interface(
        "who",
        """
        def who_entrypoint_v1(ctx):
            return ctx.customer, ctx.get("user"), ctx["customer"], dict(ctx)
        """,
    )
    catalog = layout.catalog()
    assert catalog.call("who", 1, {"customer": "acme", "user": "ann"}) == (
        "acme", "ann", "acme", {"customer": "acme", "user": "ann"})
    assert catalog.call("who", 1, Context("acme", user="bob")) == (
        "acme", "bob", "acme", {"customer": "acme", "user": "bob"})
    assert catalog.call("who", 1, None) == (None, None, None, {"customer": None})
    assert catalog.call("who", 1, {"customer": None}) == (None, None, None, {"customer": None})


@pytest.mark.parametrize(
    ("ctx", "error", "message"),
    [
        ({"user": "ann"}, ArgumentError, "the context mapping has no 'customer' key"),
        (["acme"], ArgumentError, "ctx must be a Context, a mapping with a 'customer' key, or None; got list"),
        ("acme", ArgumentError, "got str"),
        ({"customer": "../etc"}, InvalidName, r"invalid customer name '\.\./etc'"),
        ({"customer": "a/b"}, InvalidName, "invalid customer name 'a/b'"),
        ({"customer": "a..b"}, InvalidName, "without '..'"),
        ({"customer": ""}, InvalidName, "invalid customer name ''"),
        ({"customer": ["x"]}, InvalidName, r"invalid customer name \['x'\]"),
        ({"customer": "x" * 65}, InvalidName, "1-64 characters"),
    ],
)
def test_bad_contexts(greet, ctx, error, message):
    with pytest.raises(error, match=message):
        greet.call("greet", 1, ctx, name="ann")


def test_context_validates_at_once():
    with pytest.raises(InvalidName, match="invalid customer name 'a b'"):
        Context("a b")
    with pytest.raises(TypeError):
        Context("acme", customer="other")
    assert repr(Context("acme", user="ann")) == "Context('acme', user='ann')"


def test_call_context_attributes_and_log(layout, caplog):
    layout.interface(
        "info",
        """
        def info_entrypoint_v2(ctx):
            ctx.log.info("inside")
            return (ctx.customer, ctx.interface, ctx.version, ctx.call_id, ctx.parent_id,
                    ctx.db, ctx.plugins.slots(), type(ctx).__name__)
        """,
    )
    catalog = layout.catalog()
    with caplog.at_level(logging.INFO, logger="taskcatalog.call"):
        customer, interface, version, call_id, parent, db, slots, kind = catalog.call("info", 2, Context("acme"))
    assert (customer, interface, version, parent, db, slots, kind) == ("acme", "info", 2, None, None, [], "CallContext")
    record = next(r for r in caplog.records if r.getMessage() == "inside")
    assert (record.customer, record.interface, record.version, record.call_id) == ("acme", "info", 2, call_id)


def test_nested_call_keeps_customer_and_records_parent(scale):
    scale.interface(
        "outer",
        """
        def outer_entrypoint_v1(ctx, x):
            inner = ctx.call("scale", 1, x=x)
            return inner, ctx.call_id

        def outer_entrypoint_v2(ctx):
            return ctx.call("parent", None)
        """,
    )
    scale.interface(
        "parent",
        """
        def parent_entrypoint_v1(ctx):
            return ctx.parent_id, ctx.customer, ctx.get("user")
        """,
    )
    catalog = scale.catalog()
    assert catalog.call("outer", 1, Context("acme"), x=3)[0] == 6.0
    assert catalog.call("outer", 1, None, x=3)[0] == 3.0
    parent_id, customer, user = catalog.call("outer", 2, Context("acme", user="ann"))
    assert (customer, user) == ("acme", "ann") and parent_id


def test_a_plugin_recursing_through_ctx_call_gives_a_bounded_message(scale):
    scale.plugin("acme", "scale", """
        from taskcatalog import plugin_config

        @plugin_config(version=1, slot="scale")
        def again(ctx, a, b):
            return ctx.call("scale", 1, x=a)
        """)
    catalog = scale.catalog()
    with pytest.raises(PluginError) as info:
        catalog.call("scale", 1, Context("acme"), x=1)
    message = str(info.value)
    assert message.startswith("customer 'acme', scale v1, slot 'scale': plugin again (")
    assert len(message) < 1000 and "\n" not in message
    depth, cause = 0, info.value
    while cause is not None:  # the whole story stays available as the chain of causes
        depth, cause = depth + 1, cause.__cause__
    assert depth > 50
    assert catalog.call("scale", 1, Context("other"), x=2) == 2.0  # and the catalog is fine


def test_closed_catalog_refuses_calls(greet):
    assert greet.call("greet", 1, None, name="a") == "hello a"
    greet.close()
    with pytest.raises(CatalogError, match="is closed"):
        greet.call("greet", 1, None, name="a")
    with pytest.raises(CatalogError, match="is closed"):
        greet.reload()


def test_context_manager_closes(layout):
    layout.interface("greet", THREE_VERSIONS)
    with layout.catalog() as catalog:
        assert catalog.call("greet", 1, None, name="a") == "hello a"
    with pytest.raises(CatalogError, match="is closed"):
        catalog.call("greet", 1, None, name="a")


def test_calls_from_many_threads_agree(scale):
    catalog = scale.catalog()
    results = []

    def work():
        results.extend(catalog.call("scale", 1, Context("acme"), x=n) for n in range(200))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(float(2 * n) for n in range(200) for _ in range(8))


def test_callcontext_is_a_mapping(scale):
    catalog = scale.catalog()
    scale.interface(
        "peek",
        """
        def peek_entrypoint_v1(ctx):
            return len(ctx), list(ctx), "customer" in ctx, repr(ctx)
        """,
    )
    catalog.reload()
    length, keys, has, text = catalog.call("peek", 1, {"customer": "acme", "k": 1})
    assert (length, keys, has) == (2, ["customer", "k"], True)
    assert text.startswith("<CallContext peek v1 customer='acme' call_id=")
    with pytest.raises(TypeError, match="CallContext is made by the catalog for each call; executors pass a Context"):
        CallContext()
