"""Finding and importing files: lazily, by path, isolated, with clear load problems."""

import json
import os
import re
import sys

import pytest

from taskcatalog import Catalog, ContractError, Context, InterfaceNotFound, LoadError, PluginError

MARKER = """
    import os
    with open(os.environ["TASKCATALOG_TEST_MARKER"], "a") as file:
        file.write({label!r} + "\\n")

    def {name}_entrypoint_v1(ctx):
        return {label!r}
"""


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "imports.log"
    path.touch()
    monkeypatch.setenv("TASKCATALOG_TEST_MARKER", str(path))
    return lambda: path.read_text().split()


def test_building_a_catalog_imports_nothing(layout, marker):
    layout.interface("one", MARKER.format(name="one", label="one"))
    layout.interface("two", MARKER.format(name="two", label="two"))
    layout.plugin("acme", "one", MARKER.format(name="unused", label="acme-one"))
    catalog = layout.catalog()
    assert catalog.interfaces() == ["one", "two"] and catalog.customers() == ["acme"]
    assert marker() == []
    assert catalog.call("one", 1, None) == "one"
    assert marker() == ["one"]  # only the interface the call needed
    catalog.call("one", 1, Context("other"))
    assert marker() == ["one"]  # another customer has no file: nothing more
    catalog.call("one", 1, Context("acme"))
    assert marker() == ["one", "acme-one"]  # the customer's file, on its first call
    catalog.call("one", 1, Context("acme"))
    assert marker() == ["one", "acme-one"]  # once
    catalog.check()
    assert sorted(marker()) == ["acme-one", "one", "two"]  # check() imports everything


def test_modules_are_private_and_separate(scale):
    scale.plugin(
        "other",
        "scale",
        """
        from taskcatalog import plugin_config

        SEEN = []

        @plugin_config(version=1, slot="scale")
        def times(ctx, a: int, b: float) -> float:
            SEEN.append(a)
            return -a * b
        """,
    )
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=2) == 4.0
    assert catalog.call("scale", 1, Context("other"), x=2) == -4.0
    snapshot = catalog._snapshot
    acme = snapshot.plugins[("acme", "scale")].plugins[0].function
    other = snapshot.plugins[("other", "scale")].plugins[0].function
    assert acme.__module__ != other.__module__
    assert acme.__globals__ is not other.__globals__
    assert other.__globals__["SEEN"] == [2] and "SEEN" not in acme.__globals__
    assert acme.__module__.startswith("_taskcatalog_plugin_scale_")
    assert set(sys.modules) - modules_before == set()  # the catalog owns its modules
    assert sys.path == path_before


def test_a_plugin_file_named_like_a_standard_module_does_not_shadow_it(layout):
    layout.interface(
        "json",
        """
        from taskcatalog import slot

        @slot("dump", args={"value": object}, returns=str)
        def json_entrypoint_v1(ctx, value):
            found, text = ctx.plugins.call("dump", value=value)
            return text if found else None
        """,
    )
    layout.plugin(
        "acme",
        "json",
        """
        import json
        from taskcatalog import plugin_config

        @plugin_config(slot="dump")
        def dump(ctx, value):
            return "acme:" + json.dumps(value)
        """,
    )
    catalog = layout.catalog()
    assert catalog.call("json", 1, Context("acme"), value=[1]) == "acme:[1]"
    import json as real_json

    assert sys.modules["json"] is real_json and real_json.dumps([1]) == "[1]"
    assert catalog.check() == []


def test_syntax_error_is_a_load_error_with_line_and_others_keep_working(scale):
    scale.interface("broken", "def broken_entrypoint_v1(ctx):\n    return (\n")
    catalog = scale.catalog()
    with pytest.raises(LoadError, match=r"cannot load interface 'broken' from .*broken\.py:\d+: SyntaxError") as info:
        catalog.call("broken", 1, None)
    assert info.value.path.endswith("broken.py") and info.value.line in (2, 3)
    assert catalog.call("scale", 1, Context("acme"), x=1) == 2.0
    [problem] = catalog.check()
    assert (problem.kind, problem.path, problem.line) == ("import", info.value.path, info.value.line)
    # The failure is remembered, not retried per call, and raised fresh each time.
    with pytest.raises(LoadError) as again:
        catalog.call("broken", 1, None)
    assert again.value is not info.value and again.value.__traceback__ is not info.value.__traceback__


@pytest.mark.parametrize(
    ("source", "reason", "line"),
    [
        ("import not_a_module_anywhere\n", "ModuleNotFoundError at import: No module named 'not_a_module_anywhere'", 1),
        ("x = 1\ny = 1 / 0\n", "ZeroDivisionError at import: division by zero", 2),
        ("import sys\nsys.exit(3)\n", "SystemExit at import: 3", 2),
        ("x = 1\x00\n", "", None),
    ],
)
def test_failing_imports(layout, source, reason, line):
    layout.interface("bad", source)
    layout.interface("good", "def good_entrypoint_v1(ctx):\n    return 'fine'\n")
    catalog = layout.catalog()
    with pytest.raises(LoadError, match="cannot load interface 'bad'") as info:
        catalog.versions("bad")
    assert reason in str(info.value)
    if line is not None:
        assert info.value.line == line
    assert catalog.call("good", 1, None) == "fine"
    kinds = {(p.kind, p.line) for p in catalog.check()}
    assert ("import", info.value.line) in kinds


def test_entrypoint_names_that_are_not_entrypoints(layout):
    layout.interface(
        "shop",
        """
        def shop_entrypoint_v1(ctx):
            return 1

        def shop_entrypoint_v0(ctx):
            return 0

        def shop_entrypoint_v02(ctx):
            return 2

        def shop_entrypoint_V3(ctx):
            return 3

        def shop_entrypoint_vx(ctx):
            return "x"

        def other_entrypoint_v4(ctx):
            return 4

        shop_entrypoint_v5 = "not callable"

        def shop_entrypoint_v6(*, only_keywords):
            return 6

        def helper(ctx):
            return "ignored"
        """,
    )
    catalog = layout.catalog()
    assert catalog.versions("shop") == [1]
    assert catalog.call("shop", 1, None) == 1
    problems = catalog.check()
    messages = {re.search(r"\w+_entrypoint_\w+", p.message)[0]: p for p in problems}
    assert set(messages) == {
        "shop_entrypoint_v0", "shop_entrypoint_v02", "shop_entrypoint_V3", "shop_entrypoint_vx",
        "other_entrypoint_v4", "shop_entrypoint_v5", "shop_entrypoint_v6",
    }
    assert "mislabeled" in messages["other_entrypoint_v4"].message
    for malformed in ("shop_entrypoint_v0", "shop_entrypoint_v02", "shop_entrypoint_V3", "shop_entrypoint_vx"):
        assert "positive integer without leading zeros" in messages[malformed].message
    assert "not a function or a BaseTask subclass" in messages["shop_entrypoint_v5"].message
    assert "first parameter must take the call context" in messages["shop_entrypoint_v6"].message
    assert all(p.kind == "entrypoint" and p.interface == "shop" for p in problems)
    assert messages["shop_entrypoint_v0"].line == 5
    with pytest.raises(LookupError, match=r"interface 'shop' has no version 2; versions: 1"):
        catalog.call("shop", 2, None)


def test_interface_without_entrypoints_is_reported(layout):
    layout.interface("empty", "X = 1\n")
    catalog = layout.catalog()
    assert catalog.versions("empty") == []
    [problem] = catalog.check()
    assert (problem.kind, problem.message) == ("entrypoint", "interface 'empty' defines no empty_entrypoint_v<N>")
    with pytest.raises(LookupError, match="interface 'empty' has no usable version"):
        catalog.call("empty", "latest", None)


def test_same_interface_in_two_folders(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "dup.py").write_text("def dup_entrypoint_v1(ctx):\n    return 1\n")
    (tmp_path / "a" / "fine.py").write_text("def fine_entrypoint_v1(ctx):\n    return 2\n")
    catalog = Catalog([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(LoadError, match=r"interface 'dup' is defined in more than one folder \(.*a/dup\.py, .*b/dup\.py\)"):
        catalog.call("dup", 1, None)
    assert catalog.call("fine", 1, None) == 2
    assert [p.kind for p in catalog.check()] == ["duplicate", "duplicate"]


def test_folders_missing_empty_or_not_folders(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "ok.py").write_text("def ok_entrypoint_v1(ctx):\n    return 'ok'\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    catalog = Catalog(
        [tmp_path / "good", tmp_path / "missing", tmp_path / "empty", tmp_path / "file"],
        [tmp_path / "no-plugins"],
    )
    assert catalog.call("ok", 1, None) == "ok"
    problems = {os.path.basename(p.path): p.message for p in catalog.check()}
    assert problems == {
        "missing": f"interface folder {tmp_path / 'missing'} does not exist",
        "empty": f"interface folder {tmp_path / 'empty'} holds no interface files",
        "file": f"interface folder {tmp_path / 'file'} is not a folder",
        "no-plugins": f"plugin folder {tmp_path / 'no-plugins'} does not exist",
    }
    with pytest.raises(InterfaceNotFound, match=r"no interface 'x' in the catalog \(interfaces: ok; folders: .*/good, .*/missing"):
        catalog.call("x", 1, None)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder(layout):
    layout.interface("ok", "def ok_entrypoint_v1(ctx):\n    return 1\n")
    locked = layout.plugins / "acme"
    locked.mkdir()
    locked.chmod(0)
    try:
        catalog = layout.catalog()
        assert catalog.call("ok", 1, Context("acme")) == 1
        assert any(p.kind == "folder" and "cannot read" in p.message for p in catalog.check())
    finally:
        locked.chmod(0o755)


def test_unreadable_file_is_a_load_problem(layout):
    (layout.interfaces / "weird.py").mkdir()  # a folder named like a file: reading it fails
    layout.interface("ok", "def ok_entrypoint_v1(ctx):\n    return 1\n")
    catalog = layout.catalog()
    with pytest.raises(LoadError, match=r"cannot load interface 'weird' from .*weird\.py: it is a directory, not a regular file"):
        catalog.call("weird", 1, None)
    assert catalog.call("ok", 1, None) == 1


def test_odd_names_in_the_folders(layout):
    layout.interface("ok", "def ok_entrypoint_v1(ctx):\n    return 1\n")
    layout.write("interfaces/not-an-identifier.py", "")
    layout.write("interfaces/_helper.py", "raise RuntimeError('never imported')")
    layout.write("interfaces/notes.txt", "")
    layout.write("plugins/bad name/ok.py", "")
    layout.write("plugins/__pycache__/ok.py", "")
    layout.write("plugins/acme/my-plugin.py", "")
    layout.write("plugins/acme/ok.py", "")
    layout.write("plugins/stray.py", "")
    catalog = layout.catalog()
    assert catalog.customers() == ["acme"]
    problems = sorted((os.path.basename(p.path), p.kind) for p in catalog.check())
    assert problems == [("bad name", "name"), ("my-plugin.py", "name"), ("not-an-identifier.py", "name")]


def test_plugin_file_for_an_interface_that_does_not_exist(scale):
    scale.plugin("acme", "ghost", "raise RuntimeError('never imported')\n")
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=1) == 2.0
    [problem] = catalog.check()
    assert problem.kind == "orphan"
    assert problem.message == "customer 'acme' has plugins for 'ghost', which is not an interface of the catalog"


def test_plugin_file_that_fails_to_import_fails_that_customer_only(scale):
    scale.plugin("broken", "scale", "from taskcatalog import plugin_config\nraise ValueError('bad deploy')\n")
    catalog = scale.catalog()
    with pytest.raises(PluginError, match=r"customer 'broken' cannot call 'scale': cannot load customer 'broken' plugin file for 'scale' from .*broken/scale\.py:2: ValueError at import: bad deploy") as info:
        catalog.call("scale", 1, Context("broken"), x=1)
    assert isinstance(info.value.__cause__, LoadError)
    assert (info.value.customer, info.value.interface, info.value.line) == ("broken", "scale", 2)
    assert catalog.call("scale", 1, Context("acme"), x=1) == 2.0
    assert catalog.call("scale", 1, None, x=1) == 1.0
    [problem] = catalog.check()
    assert (problem.kind, problem.line, problem.customer) == ("import", 2, "broken")


def test_same_plugin_file_in_two_plugin_folders(tmp_path, scale):
    other = tmp_path / "more-plugins" / "acme"
    other.mkdir(parents=True)
    (other / "scale.py").write_text("")
    catalog = Catalog(scale.interfaces, [scale.plugins, tmp_path / "more-plugins"])
    with pytest.raises(PluginError, match=r"customer 'acme' cannot call 'scale': customer 'acme' plugin file for 'scale' is defined in more than one folder \("):
        catalog.call("scale", 1, Context("acme"), x=1)
    assert catalog.call("scale", 1, Context("zed"), x=1) == 1.0


def test_stale_bytecode_is_never_used(layout):
    """A file replaced within the same second with the same size must load fresh."""
    layout.interface("v", "def v_entrypoint_v1(ctx):\n    return 'A'\n")
    catalog = layout.catalog()
    assert catalog.call("v", 1, None) == "A"
    path = layout.interface("v", "def v_entrypoint_v1(ctx):\n    return 'B'\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    catalog.reload()
    assert catalog.call("v", 1, None) == "B"
    assert not (layout.interfaces / "__pycache__").exists()


def test_describe_json_serialisable(scale):
    assert json.loads(json.dumps(scale.catalog().describe("scale")))["name"] == "scale"


@pytest.mark.parametrize(
    ("interfaces", "plugins", "error", "message"),
    [
        ([], [], ValueError, "interfaces must name at least one folder"),
        (5, [], TypeError, "interfaces must be a path or a list of paths, not 5"),
        ("i", [None], TypeError, r"plugins must be a path or a list of paths, not \[None\]"),
    ],
)
def test_bad_folder_arguments(interfaces, plugins, error, message):
    with pytest.raises(error, match=message):
        Catalog(interfaces, plugins)


# -- files that fail in unusual ways -------------------------------------------------

COUNTED = """
import os
with open(os.environ["TASKCATALOG_TEST_MARKER"], "a") as file:
    file.write("imported\\n")
"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("x = " + "+".join(["1"] * 200_000) + "\n", "RecursionError"),
        ("x = " + "-" * 100_000 + "1\n", "MemoryError"),
        ("raise BaseException('bare')\n", "BaseException at import: bare"),
        ("raise SystemExit('bye')\n", "SystemExit at import: bye"),
    ],
    ids=["RecursionError", "MemoryError", "BaseException", "SystemExit"],
)
def test_every_way_an_interface_file_can_fail_is_a_load_problem(layout, marker, body, reason):
    layout.interface("odd", COUNTED + body)
    layout.interface("good", "def good_entrypoint_v1(ctx):\n    return 'fine'\n")
    catalog = layout.catalog()
    for _ in range(3):
        with pytest.raises(LoadError, match=rf"cannot load interface 'odd' from .*odd\.py.*: .*{reason}") as info:
            catalog.call("odd", 1, None)
    assert info.value.interface == "odd"
    assert marker() == ([] if reason in ("RecursionError", "MemoryError") else ["imported"])  # once, not per call
    assert type(catalog._snapshot.interfaces["odd"]).__name__ == "Broken"  # remembered: not compiled per call
    [problem] = catalog.check()
    assert (problem.kind, problem.path) == ("import", str(layout.interfaces / "odd.py"))
    layout.interface("good", "def good_entrypoint_v1(ctx):\n    return 'deployed'\n")
    report = catalog.reload()
    assert report.changed == [str(layout.interfaces / "good.py")]
    assert catalog.call("good", 1, None) == "deployed"


HOSTILE = """
class Odd:
    def __call__(self, ctx):
        return "odd"

    def __getattr__(self, name):
        raise {error}(name)

odd_entrypoint_v1 = Odd()

def odd_entrypoint_v2(ctx):
    return 2
"""


@pytest.mark.parametrize("error", ["SystemExit", "BaseException", "RecursionError"])
def test_an_entrypoint_that_explodes_when_read_breaks_only_its_version(layout, error):
    layout.interface("odd", HOSTILE.format(error=error))
    catalog = layout.catalog()
    [problem] = catalog.check()
    assert (problem.kind, problem.line) == ("entrypoint", None)
    assert problem.message.startswith(f"entrypoint odd_entrypoint_v1 cannot be called: reading it raised {error}: ")
    with pytest.raises(LookupError, match="has no version 1"):
        catalog.call("odd", 1, None)
    assert catalog.call("odd", "latest", None) == 2
    assert catalog.describe("odd")["versions"][0]["version"] == 2


def test_hostile_objects_in_a_plugin_file_are_not_plugins(scale):
    scale.plugin("acme", "scale", """
        import types
        from taskcatalog import plugin_config

        class Hostile(types.ModuleType):
            def __getattr__(self, name):
                raise SystemExit(3)

        class Worse:
            def __getattr__(self, name):
                raise BaseException(name)

        hostile, worse = Hostile("hostile"), Worse()

        @plugin_config(version=1, slot="scale")
        def times(ctx, a: int, b: float) -> float:
            return a * b
        """)
    catalog = scale.catalog()
    assert catalog.call("scale", 1, Context("acme"), x=3) == 6.0
    assert catalog.check() == []


@pytest.mark.parametrize(
    "body",
    [
        "raise BaseException('bare')\n",
        "raise SystemExit(2)\n",
        "@plugin_config(version=1, slot='scale')\nclass Odd:\n    def __call__(self, ctx, a, b):\n        return 1.0\n"
        "    @property\n    def __signature__(self):\n        raise SystemExit(5)\n\nodd = Odd()\n",
    ],
)
def test_every_way_a_plugin_file_can_fail_fails_that_customer_closed(scale, body):
    scale.plugin("acme", "scale", "from taskcatalog import plugin_config\n" + body)
    catalog = scale.catalog()
    with pytest.raises(PluginError, match=r"customer 'acme' cannot call 'scale'"):
        catalog.call("scale", 1, Context("acme"), x=1)
    assert catalog.call("scale", 1, Context("other"), x=3) == 3.0
    problems = catalog.check()
    assert problems and {(p.customer, p.path) for p in problems} == {("acme", str(scale.plugins / "acme" / "scale.py"))}
    assert not catalog.reload()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("def gen_entrypoint_v1(ctx):\n    yield 1\n", "it is a generator function"),
        ("async def gen_entrypoint_v1(ctx):\n    return 1\n", "it is a coroutine function (async def)"),
        ("async def gen_entrypoint_v1(ctx):\n    yield 1\n", "it is an async generator function"),
        ("from taskcatalog import BaseTask\n\nclass T(BaseTask):\n    def execute(self, ctx):\n        yield 1\n\n"
         "gen_entrypoint_v1 = T\n", "its execute is a generator function"),
        ("from taskcatalog import BaseTask\n\nclass T(BaseTask):\n    async def is_actionable(self, ctx):\n"
         "        return True\n    def execute(self, ctx):\n        return 1\n\ngen_entrypoint_v1 = T\n",
         "its is_actionable is a coroutine function (async def)"),
    ],
)
def test_generator_and_async_entrypoints_are_refused_at_load(layout, source, reason):
    layout.interface("gen", source + "\ndef gen_entrypoint_v2(ctx):\n    return 2\n")
    catalog = layout.catalog()
    [problem] = catalog.check()
    assert problem.kind == "entrypoint"
    assert problem.message == f"entrypoint gen_entrypoint_v1 cannot be called: {reason}; async is not supported yet"
    with pytest.raises(LookupError, match="has no version 1"):
        catalog.call("gen", 1, None)
    assert catalog.call("gen", 2, None) == 2


@pytest.mark.parametrize(
    ("plugin", "reason"),
    [
        ("def f(ctx, a, b):\n    yield a * b\n", "it is a generator function"),
        ("async def f(ctx, a, b):\n    return a * b\n", "it is a coroutine function (async def)"),
    ],
)
def test_generator_and_async_plugins_are_refused_at_load(scale, plugin, reason):
    scale.plugin("acme", "scale", "from taskcatalog import plugin_config\n\n@plugin_config(version=1, slot='scale')\n" + plugin)
    catalog = scale.catalog()
    with pytest.raises(ContractError, match=rf"plugin f does not fit slot 'scale' of scale v1, .*: {re.escape(reason)}"):
        catalog.call("scale", 1, Context("acme"), x=1)
    [problem] = catalog.check()
    assert problem.kind == "contract"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_named_like_a_python_file_never_hangs(layout, tmp_path):
    layout.interface("ok", "def ok_entrypoint_v1(ctx):\n    return 1\n")
    os.mkfifo(layout.interfaces / "pipe.py")
    os.makedirs(layout.plugins / "acme")
    os.mkfifo(layout.plugins / "acme" / "ok.py")
    catalog = layout.catalog()
    with pytest.raises(LoadError, match=r"cannot load interface 'pipe' from .*pipe\.py: it is a FIFO, not a regular file"):
        catalog.call("pipe", 1, None)
    with pytest.raises(PluginError, match=r"customer 'acme' cannot call 'ok'.*it is a FIFO, not a regular file"):
        catalog.call("ok", 1, Context("acme"))
    assert catalog.call("ok", 1, None) == 1
    assert sorted(p.path for p in catalog.check()) == sorted(
        [str(layout.interfaces / "pipe.py"), str(layout.plugins / "acme" / "ok.py")]
    )
    # A file replaced by a FIFO after the scan is refused at import, without blocking.
    layout.interface("late", "def late_entrypoint_v1(ctx):\n    return 1\n")
    catalog = layout.catalog()
    os.remove(layout.interfaces / "late.py")
    os.mkfifo(layout.interfaces / "late.py")
    with pytest.raises(LoadError, match="it is a FIFO, not a regular file"):
        catalog.call("late", 1, None)


def test_the_same_folder_given_twice_counts_once(layout):
    layout.interface("ok", "def ok_entrypoint_v1(ctx):\n    return 1\n")
    twice = Catalog([layout.interfaces, str(layout.interfaces) + "/", os.path.relpath(layout.interfaces)],
                    [layout.plugins, str(layout.plugins) + "/."])
    assert twice.call("ok", 1, None) == 1
    assert twice.check() == []
    link = layout.root / "link"
    os.symlink(layout.interfaces, link)
    assert Catalog([layout.interfaces, link]).check() == []
