"""The shipped example catalog in src/interfaces and src/plugins."""

import pytest

from conftest import EXAMPLES
from taskcatalog import Catalog, Context


@pytest.fixture(scope="module")
def catalog():
    with Catalog(EXAMPLES / "interfaces", EXAMPLES / "plugins") as catalog:
        yield catalog


@pytest.mark.parametrize(
    ("customer", "expected"),
    [("customer_1", 34.0), ("customer_2", 2.5), ("customer_3", 2), (None, 2)],
)
def test_interface_a_v1_per_customer(catalog, customer, expected):
    result = catalog.call("interface_a", 1, {"customer": customer}, arg1=2, arg2=21)
    assert result == expected
    assert type(result) is type(expected)


def test_interface_a_later_versions(catalog):
    ctx = Context("customer_1")
    assert catalog.versions("interface_a") == [1, 2, 3]
    assert catalog.call("interface_a", 2, ctx, arg1=2, arg2=21) == 4 * 21.0 + 2
    assert catalog.call("interface_a", "latest", ctx, arg1=2, arg2=3, digits=1) == 14.0
    assert catalog.call("interface_a", 3, Context("customer_2"), arg1=2) == 2


def test_invoice_task_with_many_slot(catalog):
    lines = [{"qty": 2, "price": 10.0}]
    result = catalog.call("invoice_total", 2, Context("customer_1"), lines=lines)
    assert result == {"subtotal": 20.0, "adjustments": [-1.0, 4.9], "total": 23.9, "currency": "EUR"}
    plain = catalog.call("invoice_total", 2, Context("customer_2"), lines=lines)
    assert plain["adjustments"] == [] and plain["total"] == 20.0
    skipped = catalog.run("invoice_total", 2, Context("customer_1"), lines=[])
    assert (skipped.status, skipped.value) == ("skipped", None)


def test_invoice_v1_is_deprecated(catalog):
    with pytest.warns(DeprecationWarning, match=r"invoice_total v1 is deprecated \(retired after 2030-12-31\)"):
        assert catalog.call("invoice_total", 1, None, lines=[{"qty": 3, "price": 1.5}]) == 4.5


def test_examples_are_clean(catalog):
    assert catalog.check() == []
    assert catalog.interfaces() == ["interface_a", "invoice_total"]
    assert catalog.customers() == ["customer_1", "customer_2"]
