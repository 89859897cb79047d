"""Slots and plugins: contracts checked at load, fail closed, isolation, call-time checks."""

import pytest

from taskcatalog import (
    CatalogError,
    Context,
    ContractError,
    LoadError,
    PluginError,
    call_if_present,
    plugin_config,
    slot,
)

PLUGIN_HEADER = "from taskcatalog import plugin_config\n"


def acme(layout, body):
    layout.plugin("acme", "scale", PLUGIN_HEADER + body)
    return layout.catalog()


def test_slot_call_with_and_without_plugin(scale):
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=3) == 6.0
    assert catalog.call("scale", 1, Context("nobody"), x=3) == 3.0
    assert catalog.call("scale", 1, None, x=3) == 3.0


@pytest.mark.parametrize(
    ("plugin", "reason"),
    [
        (
            "@plugin_config(version=1, slot='scale')\ndef f(ctx, a, c):\n    return 1.0\n",
            "cannot take the slot's arguments by name: missing a required argument: 'c'",
        ),
        (
            "@plugin_config(version=1, slot='scale')\ndef f(ctx, b, a):\n    return 1.0\n",
            "argument 'a' is not its parameter 'a' in position",
        ),
        (
            "@plugin_config(version=1, slot='scale')\ndef f(ctx, **kwargs):\n    return 1.0\n",
            "cannot take the slot's arguments by position",
        ),
        (
            "@plugin_config(version=1, slot='scale')\ndef f(*, a, b):\n    return 1.0\n",
            "its first parameter must take the call context",
        ),
        (
            "@plugin_config(version=1, slot='scale')\ndef f(ctx, a: str, b):\n    return 1.0\n",
            "parameter 'a' is annotated str but the slot passes int",
        ),
        (
            "@plugin_config(version=1, slot='scale')\ndef f(ctx, a, b) -> str:\n    return 'x'\n",
            "it is annotated to return str but the slot expects float",
        ),
    ],
)
def test_plugins_that_do_not_fit_the_contract(scale, plugin, reason):
    scale.plugin("bad", "scale", PLUGIN_HEADER + plugin)
    catalog = scale.catalog()
    with pytest.raises(ContractError, match="customer 'bad' cannot call 'scale'") as info:
        catalog.call("scale", 1, Context("bad"), x=1)
    assert reason in str(info.value)
    assert isinstance(info.value, PluginError)
    assert info.value.path.endswith("bad/scale.py") and info.value.line == 2
    assert "slot 'scale' of scale v1, which calls plugins as (ctx, a: int, b: float) -> float" in str(info.value)
    # Everyone else keeps working.
    assert catalog.call("scale", 1, Context("acme"), x=1) == 2.0
    assert catalog.call("scale", 1, None, x=1) == 1.0
    [problem] = catalog.check()
    assert (problem.kind, problem.customer, problem.interface, problem.line) == ("contract", "bad", "scale", 2)


def test_plugins_that_fit(scale):
    catalog = acme(
        scale,
        "@plugin_config(version=1, slot='scale')\n"
        "def f(ctx, *args, **kwargs) -> float:\n"
        "    return float(len(args) + len(kwargs))\n",
    )
    assert catalog.call("scale", 1, Context("acme"), x=1) == 2.0  # a=, b= by keyword
    catalog = acme(
        scale,
        "@plugin_config(version=1, slot='scale')\n"
        "def f(ctx, a: float, b: object, extra=None) -> int:\n"
        "    return 7\n",
    )
    # a: float accepts the slot's int; an int return satisfies returns=float.
    assert catalog.call("scale", 1, Context("acme"), x=1) == 7


def test_slot_the_version_does_not_declare(scale):
    catalog = acme(scale, "@plugin_config(version=1, slot='other')\ndef f(ctx, a, b):\n    return 1.0\n")
    with pytest.raises(ContractError, match=r"plugin f fills slot 'other', which scale v1 does not declare \(declared: 'scale'\)"):
        catalog.call("scale", 1, Context("acme"), x=1)


def test_slot_no_version_declares(scale):
    catalog = acme(scale, "@plugin_config(slot='other')\ndef f(ctx, a, b):\n    return 1.0\n")
    with pytest.raises(ContractError, match="plugin f fills slot 'other', which no version of 'scale' declares"):
        catalog.call("scale", 1, Context("acme"), x=1)


def test_version_that_does_not_exist(scale):
    catalog = acme(scale, "@plugin_config(version=(1, 9), slot='scale')\ndef f(ctx, a, b):\n    return 1.0\n")
    with pytest.raises(ContractError, match=r"plugin f targets scale v9, which does not exist \(versions: 1\)"):
        catalog.call("scale", 1, Context("acme"), x=1)


def test_two_plugins_in_a_single_slot(scale):
    catalog = acme(
        scale,
        "@plugin_config(version=1, slot='scale')\ndef f(ctx, a, b):\n    return 1.0\n\n"
        "@plugin_config(ver=1, slot='scale')\ndef g(ctx, a, b):\n    return 2.0\n",
    )
    with pytest.raises(ContractError, match=r"plugins f \(.*:2\) and g \(.*:6\) both fill single slot 'scale' of scale v1; keep one, or declare the slot with many=True") as info:
        catalog.call("scale", 1, Context("acme"), x=1)
    assert info.value.line == 6
    [problem] = catalog.check()
    assert problem.kind == "conflict"


def test_plugin_exception_becomes_plugin_error(scale):
    catalog = acme(scale, "@plugin_config(version=1, slot='scale')\ndef f(ctx, a, b):\n    raise RuntimeError('no stock')\n")
    with pytest.raises(PluginError, match=r"customer 'acme', scale v1, slot 'scale': plugin f \(.*acme/scale\.py:2\) raised RuntimeError: no stock") as info:
        catalog.call("scale", 1, Context("acme"), x=1)
    assert type(info.value) is PluginError
    assert isinstance(info.value.__cause__, RuntimeError) and str(info.value.__cause__) == "no stock"


@pytest.mark.parametrize(
    ("body", "error"),
    [("raise RuntimeError('no stock')", PluginError), ("return 'x'", ContractError)],
)
def test_a_failing_plugin_error_carries_every_field_of_the_call(scale, body, error):
    catalog = acme(scale, f"@plugin_config(version=1, slot='scale')\ndef f(ctx, a, b):\n    {body}\n")
    with pytest.raises(error) as info:
        catalog.call("scale", "latest", {"customer": "acme"}, x=1)
    fields = {k: getattr(info.value, k) for k in ("interface", "version", "customer", "path", "line")}
    assert fields == {
        "interface": "scale",
        "version": 1,
        "customer": "acme",
        "path": str(scale.plugins / "acme" / "scale.py"),
        "line": 2,
    }


def test_a_plugin_file_that_fails_closed_names_the_version_called(scale):
    catalog = acme(scale, "@plugin_config(version=1, slot='nope')\ndef f(ctx, a, b):\n    return 1.0\n")
    with pytest.raises(ContractError, match=r"customer 'acme' cannot call 'scale': .*acme/scale\.py:2: plugin f fills slot 'nope'") as info:
        catalog.call("scale", 1, Context("acme"), x=1)
    assert (info.value.interface, info.value.version, info.value.customer, info.value.line) == ("scale", 1, "acme", 2)


def test_a_long_plugin_error_message_is_quoted_briefly_on_one_line(scale):
    catalog = acme(scale, "@plugin_config(version=1, slot='scale')\ndef f(ctx, a, b):\n    raise ValueError('line one\\n' + 'x' * 5000)\n")
    with pytest.raises(PluginError) as info:
        catalog.call("scale", 1, Context("acme"), x=1)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert message.endswith("raised ValueError: line one " + "x" * (300 - len("line one ") - 1) + "\u2026")
    assert len(str(info.value.__cause__)) == len("line one \n") + 5000 - 1  # the cause keeps everything


def test_wrong_return_type_is_contract_error_at_call_time(scale):
    catalog = acme(scale, "@plugin_config(version=1, slot='scale')\ndef f(ctx, a, b):\n    return str(a)\n")
    with pytest.raises(ContractError, match=r"plugin f \(.*\) returned str '1', expected float"):
        catalog.call("scale", 1, Context("acme"), x=1)


MANY = """
    from taskcatalog import slot, call_if_present

    @slot("checks", args={"order": dict}, returns=str, many=True)
    def review_entrypoint_v1(ctx, order):
        found, notes = ctx.plugins.call("checks", order=order)
        return found, notes

    @slot("checks", args={"order": dict}, returns=str, many=True)
    @slot(0, args={"x": int, "y": int})
    def review_entrypoint_v2(ctx, order):
        found, total = call_if_present(ctx, 0, 2, 3)
        return ctx.plugins.has(0), total, ctx.plugins.call("checks", order)
"""


def test_many_slot_runs_all_in_order(layout):
    layout.interface("review", MANY)
    layout.plugin(
        "acme",
        "review",
        """
        from taskcatalog import plugin_config

        @plugin_config(slot="checks", order=2)
        def late(ctx, order):
            return "late"

        @plugin_config(slot="checks", order=-1)
        def early(ctx, order):
            return "early:" + ctx.customer

        @plugin_config(slot="checks")
        def middle(ctx, order):
            return "middle"

        @plugin_config(version=2, slot=0)
        def add(ctx, x, y):
            return x + y
        """,
    )
    catalog = layout.catalog()
    assert catalog.call("review", 1, Context("acme"), order={}) == (True, ["early:acme", "middle", "late"])
    assert catalog.call("review", 1, Context("zed"), order={}) == (False, [])
    assert catalog.call("review", 2, Context("acme"), order={}) == (True, 5, (True, ["early:acme", "middle", "late"]))
    assert catalog.call("review", 2, None, order={}) == (False, None, (False, []))
    described = catalog.describe("review")
    v2_slots = {s["slot"]: s for s in described["versions"][1]["slots"]}
    assert v2_slots["checks"]["customers"] == [{"customer": "acme", "plugins": ["early", "middle", "late"]}]
    assert v2_slots[0] == {"slot": 0, "args": {"x": "int", "y": "int"}, "returns": None, "many": False, "context": True,
                           "customers": [{"customer": "acme", "plugins": ["add"]}]}


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ("raise ValueError('bad order')", PluginError,
         r"customer 'acme', review v1, slot 'checks': plugin second \(.*acme/review\.py:8\) raised ValueError: bad order"),
        ("return 3", ContractError, r"plugin second \(.*acme/review\.py:8\) returned int 3, expected str"),
    ],
)
def test_a_failing_plugin_in_a_many_slot_is_named(layout, body, error, message):
    layout.interface("review", MANY)
    layout.plugin("acme", "review", f"""
        from taskcatalog import plugin_config

        @plugin_config(slot="checks")
        def first(ctx, order):
            return "fine"

        @plugin_config(slot="checks", order=1)
        def second(ctx, order):
            {body}
        """)
    with pytest.raises(error, match=message) as info:
        layout.catalog().call("review", 1, Context("acme"), order={})
    assert info.value.line == 8 and info.value.customer == "acme"


def test_entrypoint_calling_an_undeclared_slot(layout):
    layout.interface(
        "loose",
        """
        from taskcatalog import call_if_present

        def loose_entrypoint_v1(ctx):
            return call_if_present(ctx, "nowhere")
        """,
    )
    catalog = layout.catalog()
    with pytest.raises(CatalogError, match=r"loose v1 \(.*loose\.py:4\) calls slot 'nowhere' but does not declare it \(declared: none\); add @slot\('nowhere', \.\.\.\) to the entrypoint \[customer 'acme'\]") as info:
        catalog.call("loose", 1, Context("acme"))
    assert (info.value.interface, info.value.version, info.value.line) == ("loose", 1, 4)


def test_plugins_only_run_for_their_customer(layout):
    layout.interface(
        "tag",
        """
        from taskcatalog import slot

        @slot("tag", returns=str)
        def tag_entrypoint_v1(ctx):
            return ctx.plugins.call("tag")[1]
        """,
    )
    for customer in ("a", "b", "c"):
        layout.plugin(customer, "tag", f"""
            from taskcatalog import plugin_config

            @plugin_config(slot="tag")
            def tag(ctx):
                assert ctx.customer == {customer!r}
                return {customer!r}
            """)
    catalog = layout.catalog()
    assert [catalog.call("tag", 1, Context(c)) for c in ("a", "b", "c", "d")] == ["a", "b", "c", None]


@pytest.mark.parametrize(
    ("decorator", "error", "message"),
    [
        ("plugin_config(version=0)", ValueError, "versions start at 1"),
        ("plugin_config(version='1')", TypeError, "version must be an int or a collection of ints"),
        ("plugin_config(version=True)", TypeError, "version must be an int"),
        ("plugin_config(version=[])", ValueError, "empty collection"),
        ("plugin_config(version=1, ver=2)", TypeError, "give version= or ver=, not both"),
        ("plugin_config(slot=1.5)", TypeError, "a slot id is a str or an int"),
        ("plugin_config(order='x')", TypeError, "order must be an int"),
        ("slot([])", TypeError, "a slot id is a str or an int"),
        ("slot('s', args=['a'])", TypeError, "args must be a mapping"),
        ("slot('s', args={'a b': int})", TypeError, "is not an identifier"),
        ("slot('s', returns='float')", TypeError, "returns must be a type or a tuple of types"),
        ("slot('s', many=1)", TypeError, "many must be True or False"),
    ],
)
def test_decorator_arguments_are_checked(decorator, error, message):
    with pytest.raises(error, match=message):
        eval(decorator, {"plugin_config": plugin_config, "slot": slot})


def test_a_slot_declared_twice():
    with pytest.raises(TypeError, match="'f' declares slot 's' twice"):
        @slot("s")
        @slot("s")
        def f(ctx):
            pass


def test_bad_decorator_in_a_plugin_file_is_a_load_problem(scale):
    scale.plugin("acme", "scale", PLUGIN_HEADER + "\n@plugin_config(version=0, slot='scale')\ndef f(ctx, a, b):\n    return 1.0\n")
    catalog = scale.catalog()
    with pytest.raises(PluginError, match=r"ValueError at import: @plugin_config: versions start at 1, got 0") as info:
        catalog.call("scale", 1, Context("acme"), x=1)
    assert isinstance(info.value.__cause__, LoadError) and info.value.line == 3


def test_call_if_present_passes_a_stand_in_context_through():
    class StandIn:
        class plugins:
            @staticmethod
            def call(slot_id, *args, **kwargs):
                return True, (slot_id, args, kwargs)

    assert call_if_present(StandIn(), 0, 1, b=2) == (True, (0, (1,), {"b": 2}))
