"""A catalog written for the task-catalog POC runs with only its import lines changed."""

import pytest

from taskcatalog import ContractError, Context, slot_config

POC_INTERFACE = """
    from taskcatalog import call_if_present, slot_config

    @slot_config(config={0: {"include_ctx": True, "include_kwargs": True,
                             "mandatory_args": {"a": int, "b": float},
                             "returns": False, "return_type": None}})
    def interface_a_entrypoint_v1(ctx, arg1, arg2, **kwargs):
        found, result = call_if_present(ctx, 0, arg1 * 2, 8.0)
        return result + arg1 if found else arg1

    @slot_config(config={"total": {"include_ctx": False, "mandatory_args": {"amount": float},
                                   "returns": True, "return_type": float}})
    def interface_a_entrypoint_v2(ctx, amount, **kwargs):
        found, result = call_if_present(ctx, "total", amount)
        return result if found else amount
"""


def test_a_poc_interface_and_its_plugins_run(layout):
    layout.interface("interface_a", POC_INTERFACE)
    layout.plugin("customer_1", "interface_a", """
        from taskcatalog import plugin_config

        @plugin_config(ver=1, slot=0)
        def multiply(ctx, a, b, **kwargs):
            return a * b

        @plugin_config(ver=2, slot="total")
        def with_tax(amount):
            return amount * 1.25
        """)
    catalog = layout.catalog()
    assert catalog.check() == []
    assert catalog.call("interface_a", 1, {"customer": "customer_1"}, arg1=2, arg2=21) == 34.0
    assert catalog.call("interface_a", 2, {"customer": "customer_1"}, amount=8.0) == 10.0
    assert catalog.call("interface_a", 1, {"customer": "nobody"}, arg1=2, arg2=21) == 2
    slots = {s["slot"]: s for v in catalog.describe("interface_a")["versions"] for s in v["slots"]}
    assert slots[0] == {"slot": 0, "args": {"a": "int", "b": "float"}, "returns": None, "many": False,
                        "context": True, "customers": [{"customer": "customer_1", "plugins": ["multiply"]}]}
    assert slots["total"]["returns"] == "float" and slots["total"]["context"] is False


def test_poc_contracts_are_checked_the_same_way(layout):
    layout.interface("interface_a", POC_INTERFACE)
    layout.plugin("customer_2", "interface_a", """
        from taskcatalog import plugin_config

        @plugin_config(ver=2, slot="total")
        def with_tax(ctx, amount):
            return str(amount)
        """)
    catalog = layout.catalog()
    [problem] = catalog.check()
    assert problem.kind == "contract"
    assert problem.message == (
        "plugin with_tax does not fit slot 'total' of interface_a v2, which calls plugins as (amount: float) -> float: "
        "it cannot take the slot's arguments by name: missing a required argument: 'ctx'; "
        "it cannot take the slot's arguments by position: missing a required argument: 'amount'"
    )
    with pytest.raises(ContractError, match="customer 'customer_2' cannot call 'interface_a'"):
        catalog.call("interface_a", 2, Context("customer_2"), amount=1.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "@slot_config: config must be a non-empty mapping of slot id to its settings"),
        ({0: 1}, "@slot_config: the settings of slot 0 must be a mapping, not 1"),
        ({0: {"mandatory": {}}}, "@slot_config: slot 0 has unknown setting(s) 'mandatory'; known: include_ctx, "
                                 "include_kwargs, mandatory_args, returns, return_type"),
        ({0: {"include_ctx": "yes"}}, "@slot(0): context must be True or False"),
    ],
)
def test_bad_poc_configs_are_refused(config, message):
    with pytest.raises(TypeError) as info:
        slot_config(config)
    assert str(info.value) == message
