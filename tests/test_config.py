"""taskcatalog.toml: loading, validation, path resolution, customer databases and discovery."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from taskcatalog.config import (
    CONFIG_ENV,
    CatalogConfig,
    ConfigError,
    customer_database_for,
    find_config,
    load_config,
)
import taskcatalog
import taskcatalog.config as config_module
from taskcatalog.errors import CatalogError, InvalidName

FULL_EXAMPLE = """\
[catalog]
interfaces = ["src/interfaces"]
plugins = ["src/plugins"]
database = "var/catalog.sqlite3"
customer_database = "var/customers/{customer}.sqlite3"
reload_interval = 2.0
telemetry = true
retention_days = 30
entry_points = true

[customers.customer_1.versions]
interface_a = 1
"""

MINIMAL = '[catalog]\ninterfaces = "src/interfaces"\n'


def write(tmp_path: Path, text: str, name: str = "taskcatalog.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> CatalogConfig:
    return load_config(write(tmp_path, text))


def catalog_with(line: str) -> str:
    """A valid file with one more line in [catalog]."""
    return MINIMAL + line + "\n"


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def message_of(tmp_path: Path, text: str) -> str:
    """The error message without the leading '<file>: '."""
    return str(error_of(tmp_path, text)).split(": ", 1)[1]


# -- what loads ----------------------------------------------------------


def test_full_example_loads_with_absolute_paths(tmp_path: Path) -> None:
    path = write(tmp_path / "conf", FULL_EXAMPLE)
    base = tmp_path / "conf"
    assert load_config(path) == CatalogConfig(
        path=str(path),
        interfaces=(str(base / "src" / "interfaces"),),
        plugins=(str(base / "src" / "plugins"),),
        database=str(base / "var" / "catalog.sqlite3"),
        customer_database=str(base / "var" / "customers" / "{customer}.sqlite3"),
        reload_interval=2.0,
        telemetry=True,
        retention_days=30.0,
        entry_points=True,
        pins={"customer_1": {"interface_a": 1}},
    )


def test_a_relative_path_to_the_file_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "conf", MINIMAL)
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/taskcatalog.toml")
    assert config.path == str(tmp_path / "conf" / "taskcatalog.toml")
    assert config.interfaces == (str(tmp_path / "conf" / "src" / "interfaces"),)


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.plugins == ()
    assert config.database is None
    assert config.customer_database is None
    assert config.reload_interval is None
    assert config.telemetry is True
    assert config.retention_days == 30.0
    assert config.entry_points is True
    assert config.pins == {}


def test_other_values(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "reload_interval = 0\ntelemetry = false\nretention_days = 0.5\nentry_points = false\n")
    assert (config.reload_interval, config.telemetry, config.retention_days, config.entry_points) == (0.0, False, 0.5, False)
    assert type(config.reload_interval) is float


def test_a_string_stands_for_a_list_of_one(tmp_path: Path) -> None:
    config = load(tmp_path, '[catalog]\ninterfaces = "a"\nplugins = "b"\n')
    assert config.interfaces == (str(tmp_path / "a"),)
    assert config.plugins == (str(tmp_path / "b"),)


def test_several_folders_relative_and_absolute(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    config = load(
        tmp_path,
        f"""
        [catalog]
        interfaces = ["one", "./two/", "../up", {str(elsewhere)!r}]
        plugins = []
        """,
    )
    assert config.interfaces == (
        str(tmp_path / "one"),
        str(tmp_path / "two"),
        str(tmp_path.parent / "up"),
        str(elsewhere),
    )
    assert config.plugins == ()


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("var/catalog.sqlite3", "{base}/var/catalog.sqlite3"),
        ("/abs/catalog.sqlite3", "/abs/catalog.sqlite3"),
        ("sqlite:///var/catalog.sqlite3", "sqlite:///{base}/var/catalog.sqlite3"),
        ("sqlite:////abs/catalog.sqlite3", "sqlite:////abs/catalog.sqlite3"),
        (":memory:", ":memory:"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
    ],
)
def test_database_locations(tmp_path: Path, written: str, expected: str) -> None:
    config = load(tmp_path, catalog_with(f"database = {written!r}"))
    assert config.database == expected.format(base=tmp_path)


def test_a_relative_sqlite_url_becomes_the_four_slash_form(tmp_path: Path) -> None:
    config = load(tmp_path, catalog_with('database = "sqlite:///var/x.sqlite3"'))
    assert config.database == f"sqlite:///{tmp_path}/var/x.sqlite3"
    assert config.database.startswith("sqlite:////")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("var/customers/{customer}.sqlite3", "{base}/var/customers/{{customer}}.sqlite3"),
        ("var/{customer}/data.sqlite3", "{base}/var/{{customer}}/data.sqlite3"),
        ("/srv/{customer}.sqlite3", "/srv/{{customer}}.sqlite3"),
        ("sqlite:///var/{customer}.sqlite3", "sqlite:///{base}/var/{{customer}}.sqlite3"),
        ("postgresql://user@host/{customer}", "postgresql://user@host/{{customer}}"),
    ],
)
def test_customer_database_templates(tmp_path: Path, written: str, expected: str) -> None:
    config = load(tmp_path, catalog_with(f"customer_database = {written!r}"))
    assert config.customer_database == expected.format(base=tmp_path)


def test_pins(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        MINIMAL
        + """
        [customers.customer_1.versions]
        interface_a = 1
        invoice_total = 2

        [customers."acme.eu".versions]
        interface_a = 3

        [customers.quiet]
        """,
    )
    assert config.pins == {
        "customer_1": {"interface_a": 1, "invoice_total": 2},
        "acme.eu": {"interface_a": 3},
        "quiet": {},
    }


def test_pins_are_read_only(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "[customers.acme.versions]\ninterface_a = 1\n")
    with pytest.raises(TypeError):
        config.pins["acme"]["interface_a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        config.pins["other"] = {}  # type: ignore[index]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "taskcatalog.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path).interfaces == (str(tmp_path / "src" / "interfaces"),)


def test_the_error_is_the_package_config_error() -> None:
    assert ConfigError is taskcatalog.ConfigError


def test_the_error_is_a_catalog_error_and_a_value_error(tmp_path: Path) -> None:
    error = error_of(tmp_path, "")
    assert isinstance(error, CatalogError)
    assert isinstance(error, ValueError)


# -- wrong types and values ----------------------------------------------

WRONG = [
    ("interfaces", "3", 'catalog.interfaces must be a folder path or a list of folder paths (strings), not 3'),
    ("interfaces", "true", "catalog.interfaces must be a folder path or a list of folder paths (strings), not true"),
    ("interfaces", "{ a = 1 }", "catalog.interfaces must be a folder path or a list of folder paths (strings), not a table"),
    ("interfaces", "[]", "catalog.interfaces is empty: name at least one folder"),
    ("interfaces", '["a", 2]', "catalog.interfaces[1] must be a folder path (a non-empty string), not 2"),
    ("interfaces", '["a", ""]', 'catalog.interfaces[1] must be a folder path (a non-empty string), not ""'),
    ("interfaces", '""', 'catalog.interfaces must be a folder path (a non-empty string), not ""'),
    ("plugins", "1.5", "catalog.plugins must be a folder path or a list of folder paths (strings), not 1.5"),
    ("plugins", '[["a"]]', 'catalog.plugins[0] must be a folder path (a non-empty string), not ["a"]'),
    ("database", "1", "catalog.database must be a path or a database URL (a non-empty string), not 1"),
    ("database", '""', 'catalog.database must be a path or a database URL (a non-empty string), not ""'),
    ("database", '["a"]', 'catalog.database must be a path or a database URL (a non-empty string), not ["a"]'),
    ("database", "1979-05-27", "catalog.database must be a path or a database URL (a non-empty string), not 1979-05-27"),
    (
        "database",
        '"sqlite://x.db"',
        'catalog.database is not a SQLite URL this library reads: "sqlite://x.db"; use '
        "sqlite:///relative/path, sqlite:////absolute/path or sqlite:///:memory:",
    ),
    (
        "customer_database",
        "false",
        "catalog.customer_database must be a path or URL template (a string) containing {customer}, not false",
    ),
    ("reload_interval", "true", "catalog.reload_interval must be a finite number of seconds >= 0, not true"),
    ("reload_interval", '"2"', 'catalog.reload_interval must be a finite number of seconds >= 0, not "2"'),
    ("reload_interval", "-1", "catalog.reload_interval must be a finite number of seconds >= 0, not -1"),
    ("reload_interval", "-0.5", "catalog.reload_interval must be a finite number of seconds >= 0, not -0.5"),
    ("reload_interval", "inf", "catalog.reload_interval must be a finite number of seconds >= 0, not inf"),
    ("reload_interval", "nan", "catalog.reload_interval must be a finite number of seconds >= 0, not nan"),
    ("reload_interval", "[1]", "catalog.reload_interval must be a finite number of seconds >= 0, not [1]"),
    ("telemetry", '"yes"', 'catalog.telemetry must be true or false, not "yes"'),
    ("telemetry", "1", "catalog.telemetry must be true or false, not 1"),
    ("telemetry", "[true]", "catalog.telemetry must be true or false, not [true]"),
    ("retention_days", "0", "catalog.retention_days must be a finite number of days > 0, not 0"),
    ("retention_days", "-3", "catalog.retention_days must be a finite number of days > 0, not -3"),
    ("retention_days", "false", "catalog.retention_days must be a finite number of days > 0, not false"),
    ("retention_days", '"30"', 'catalog.retention_days must be a finite number of days > 0, not "30"'),
    ("retention_days", "+inf", "catalog.retention_days must be a finite number of days > 0, not inf"),
    ("entry_points", '"true"', 'catalog.entry_points must be true or false, not "true"'),
    ("entry_points", "0", "catalog.entry_points must be true or false, not 0"),
    ("entry_points", "{}", "catalog.entry_points must be true or false, not a table"),
]


@pytest.mark.parametrize(("key", "value", "message"), WRONG, ids=[f"{k}={v}" for k, v, _ in WRONG])
def test_wrong_types_and_values(tmp_path: Path, key: str, value: str, message: str) -> None:
    text = f"[catalog]\n{key} = {value}\n" if key == "interfaces" else catalog_with(f"{key} = {value}")
    assert message_of(tmp_path, text) == message


def test_a_long_value_is_shortened_in_the_message(tmp_path: Path) -> None:
    message = message_of(tmp_path, catalog_with(f'telemetry = "{"y" * 500}"'))
    assert message.startswith('catalog.telemetry must be true or false, not "yyy')
    assert message.endswith("\u2026")
    assert len(message) < 150


def test_catalog_must_be_a_table(tmp_path: Path) -> None:
    assert message_of(tmp_path, 'catalog = "src"\n') == 'catalog must be a table ([catalog]), not "src"'


def test_missing_catalog_table(tmp_path: Path) -> None:
    assert message_of(tmp_path, "[customers.acme.versions]\ninterface_a = 1\n") == (
        'the [catalog] table is missing; it needs at least interfaces = ["<folder>"]'
    )


def test_an_empty_file_lacks_the_catalog_table(tmp_path: Path) -> None:
    assert message_of(tmp_path, "").startswith("the [catalog] table is missing")


def test_missing_interfaces(tmp_path: Path) -> None:
    assert message_of(tmp_path, '[catalog]\nplugins = ["src/plugins"]\n') == (
        'catalog.interfaces is missing: name the folder(s) of interface files, e.g. interfaces = ["src/interfaces"]'
    )


# -- unknown keys --------------------------------------------------------

UNKNOWN = [
    (catalog_with("reload_intervall = 2"), "unknown key catalog.reload_intervall; did you mean catalog.reload_interval?"),
    (catalog_with("plugin = 'x'"), "unknown key catalog.plugin; did you mean catalog.plugins?"),
    (catalog_with("telemetri = true"), "unknown key catalog.telemetri; did you mean catalog.telemetry?"),
    (
        catalog_with("colour = 'blue'"),
        "unknown key catalog.colour; the keys of [catalog] are interfaces, plugins, database, "
        "customer_database, reload_interval, telemetry, retention_days, entry_points",
    ),
    ("[catalogue]\ninterfaces = 'x'\n", "unknown key catalogue; did you mean catalog?"),
    (MINIMAL + "[customer.acme.versions]\ninterface_a = 1\n", "unknown key customer; did you mean customers?"),
    ("title = 'x'\n" + MINIMAL, "unknown key title; the keys of the top level are catalog, customers"),
    (
        MINIMAL + "[customers.acme.version]\ninterface_a = 1\n",
        "unknown key customers.acme.version; did you mean customers.acme.versions?",
    ),
    (
        MINIMAL + "[customers.acme]\nplugins = 'x'\n",
        "unknown key customers.acme.plugins; the keys of [customers.acme] are versions",
    ),
    (
        MINIMAL + '[customers."acme.eu".pins]\ninterface_a = 1\n',
        'unknown key customers."acme.eu".pins; the keys of [customers."acme.eu"] are versions',
    ),
]


@pytest.mark.parametrize(("text", "message"), UNKNOWN, ids=[m.split(";")[0] for _, m in UNKNOWN])
def test_unknown_keys(tmp_path: Path, text: str, message: str) -> None:
    assert message_of(tmp_path, text) == message


# -- pins ----------------------------------------------------------------


@pytest.mark.parametrize("customer", ["-acme", "a b", "a/b", "..", "a..b", "x" * 65, "é"])
def test_bad_customer_names(tmp_path: Path, customer: str) -> None:
    text = MINIMAL + f"[customers.{customer!r}.versions]\ninterface_a = 1\n".replace("'", '"')
    message = message_of(tmp_path, text)
    assert re.fullmatch(r'customers\.(\S+|"[^"]*"): invalid customer name .*', message), message
    assert "use 1-64 characters from A-Z a-z 0-9 _ . -" in message


@pytest.mark.parametrize("interface", ["interface-a", "1st", "class", "a.b", "with space"])
def test_bad_interface_names(tmp_path: Path, interface: str) -> None:
    text = MINIMAL + f'[customers.acme.versions]\n"{interface}" = 1\n'
    key = interface if re.fullmatch(r"[A-Za-z0-9_-]+", interface) else f'"{interface}"'
    assert message_of(tmp_path, text) == (
        f"customers.acme.versions.{key}: {interface!r} is not a valid interface name: "
        "it must be a Python identifier (the file is <name>.py)"
    )


@pytest.mark.parametrize(("value", "shown"), [("0", "0"), ("-1", "-1"), ("true", "true"), ('"1"', '"1"'), ("1.5", "1.5"), ("1.0", "1.0")])
def test_pin_values_must_be_positive_ints(tmp_path: Path, value: str, shown: str) -> None:
    text = MINIMAL + f"[customers.acme.versions]\ninterface_a = {value}\n"
    assert message_of(tmp_path, text) == (
        f"customers.acme.versions.interface_a must be a positive integer version, not {shown}"
    )


def test_customers_and_versions_must_be_tables(tmp_path: Path) -> None:
    assert message_of(tmp_path, "customers = 1\n" + MINIMAL) == (
        "customers must be a table of customers ([customers.<name>.versions]), not 1"
    )
    assert message_of(tmp_path, MINIMAL + "[customers]\nacme = 2\n") == (
        "customers.acme must be a table ([customers.acme.versions]), not 2"
    )
    assert message_of(tmp_path, MINIMAL + "[customers.acme]\nversions = [1]\n") == (
        "customers.acme.versions must be a table of interface = version, not [1]"
    )


# -- customer database template -------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "var/customers.sqlite3",
            'catalog.customer_database must contain {customer}, so that each customer gets its own database; '
            'found "var/customers.sqlite3"',
        ),
        (
            "var/{customer}/{customer}.sqlite3",
            "catalog.customer_database must contain {customer} exactly once (it appears 2 times), so that each "
            'customer gets its own database; found "var/{customer}/{customer}.sqlite3"',
        ),
        (
            "var/{region}/{customer}.sqlite3",
            "catalog.customer_database may contain no field or brace other than {customer}; "
            'found {region} in "var/{region}/{customer}.sqlite3"',
        ),
        (
            "var/{}/{customer}.sqlite3",
            'catalog.customer_database may contain no field or brace other than {customer}; found {} in "var/{}/{customer}.sqlite3"',
        ),
        (
            "var/{customer}.sqlite3}",
            'catalog.customer_database may contain no field or brace other than {customer}; found } in "var/{customer}.sqlite3}"',
        ),
        (
            "var/{CUSTOMER}.sqlite3",
            'catalog.customer_database must contain {customer}, so that each customer gets its own database; '
            'found "var/{CUSTOMER}.sqlite3"',
        ),
        (
            "var/{customer}/../shared.sqlite3",
            "catalog.customer_database must not go up with '..' after {customer}; "
            'found "var/{customer}/../shared.sqlite3"',
        ),
        (
            "sqlite:///var/{customer}/../../x.sqlite3",
            "catalog.customer_database must not go up with '..' after {customer}; "
            'found "sqlite:///var/{customer}/../../x.sqlite3"',
        ),
    ],
)
def test_bad_customer_database_templates(tmp_path: Path, template: str, message: str) -> None:
    assert message_of(tmp_path, catalog_with(f"customer_database = {template!r}")) == message


@pytest.mark.parametrize(
    ("template", "customer", "expected"),
    [
        ("/srv/customers/{customer}.sqlite3", "customer_1", "/srv/customers/customer_1.sqlite3"),
        ("/srv/customers/{customer}.sqlite3", "acme.eu-2", "/srv/customers/acme.eu-2.sqlite3"),
        ("/srv/{customer}/data.sqlite3", "acme", "/srv/acme/data.sqlite3"),
        ("sqlite:////srv/{customer}.sqlite3", "acme", "sqlite:////srv/acme.sqlite3"),
        ("postgresql://user@host/{customer}", "acme", "postgresql://user@host/acme"),
        # Only the literal {customer} is replaced: no other brace is read.
        ("postgresql://u@h/db?options={customer}", "acme", "postgresql://u@h/db?options=acme"),
    ],
)
def test_customer_database_for(template: str, customer: str, expected: str) -> None:
    assert customer_database_for(template, customer) == expected


def test_customer_database_for_a_relative_template() -> None:
    assert customer_database_for("var/{customer}.sqlite3", "acme") == "var/acme.sqlite3"


@pytest.mark.parametrize("customer", ["..", ".", "a/b", "../../etc", "", "a\\b", "x" * 65, "/etc/passwd"])
@pytest.mark.parametrize("template", ["/srv/{customer}.sqlite3", "sqlite:///var/{customer}.db", "postgresql://h/{customer}"])
def test_customer_database_for_refuses_hostile_names(template: str, customer: str) -> None:
    with pytest.raises(InvalidName, match=rf"^invalid customer name {re.escape(repr(customer))}: use 1-64 characters"):
        customer_database_for(template, customer)


def test_customer_database_for_refuses_a_result_outside_the_folder(tmp_path: Path) -> None:
    # Names cannot escape by themselves; a template that goes up after the
    # placeholder (refused by load_config) is still caught here.
    template = f"{tmp_path}/customers/{{customer}}/../../x.sqlite3"
    with pytest.raises(InvalidName, match=r"^customer 'acme': its database .*x\.sqlite3 would lie outside .*customers") as info:
        customer_database_for(template, "acme")
    assert info.value.customer == "acme"


def test_customer_database_for_refuses_a_template_without_the_placeholder() -> None:
    with pytest.raises(ConfigError, match=r"^the customer database template '/srv/shared.db' does not contain \{customer\}$"):
        customer_database_for("/srv/shared.db", "acme")


# -- reading the file ----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: the configuration file does not exist"
    assert info.value.path == str(path)


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a folder, not a configuration file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_an_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    path.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
    finally:
        path.chmod(0o644)
    assert str(info.value) == f"{path}: cannot read the configuration file: Permission denied"


def test_a_file_that_cannot_be_read_for_another_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(config_module, "open", refuse, raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the configuration file: Permission denied"


def test_a_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[catalog]\ninterfaces = ["src"]\ntelemetry = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: invalid TOML: Invalid value (at line 3, column 13)"
    assert info.value.line == 3
    assert info.value.path == str(path)


def test_a_toml_error_at_the_end_of_the_document(tmp_path: Path) -> None:
    path = write(tmp_path, '[catalog]\ninterfaces = "src\n')
    with pytest.raises(ConfigError, match=r":2: invalid TOML: Illegal character '\\n' \(at line 2, column 18\)$") as info:
        load_config(path)
    assert info.value.line == 2
    path = write(tmp_path, '[catalog]\ninterfaces = ["src",')
    with pytest.raises(ConfigError, match=r":2: invalid TOML: .*\(at end of document\)$") as info:
        load_config(path)
    assert info.value.line == 2


def test_a_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'interfaces = "again"\n')
    with pytest.raises(ConfigError, match=r"^.*:3: invalid TOML: Cannot overwrite a value \(at line 3, column \d+\)$"):
        load_config(path)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "taskcatalog.toml"
    path.write_bytes(b'[catalog]\ninterfaces = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}:2: the configuration file is not UTF-8 text (byte 0xe9 at offset 27); TOML files must be UTF-8"
    )
    assert info.value.line == 2


# -- finding the file ----------------------------------------------------


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """Three configuration files: one for --config, one for the variable, one in the working folder."""
    cwd = tmp_path / "work"
    return {
        "explicit": write(tmp_path, MINIMAL, "explicit/x.toml"),
        "env": write(tmp_path, MINIMAL, "env/y.toml"),
        "cwd": write(cwd, MINIMAL),
    }


def test_explicit_beats_the_environment_and_the_working_folder(places: dict[str, Path]) -> None:
    cwd = str(places["cwd"].parent)
    environ = {CONFIG_ENV: str(places["env"])}
    assert find_config(str(places["explicit"]), environ, cwd) == str(places["explicit"])


def test_the_environment_beats_the_working_folder(places: dict[str, Path]) -> None:
    cwd = str(places["cwd"].parent)
    assert find_config(None, {CONFIG_ENV: str(places["env"])}, cwd) == str(places["env"])


def test_the_working_folder_is_last(places: dict[str, Path]) -> None:
    cwd = str(places["cwd"].parent)
    assert find_config(None, {}, cwd) == str(places["cwd"])
    assert find_config(None, {CONFIG_ENV: ""}, cwd) == str(places["cwd"])


def test_relative_names_are_relative_to_the_working_folder(places: dict[str, Path]) -> None:
    cwd = str(places["cwd"].parent)
    assert find_config("../explicit/x.toml", {}, cwd) == str(places["explicit"])
    assert find_config(None, {CONFIG_ENV: "../env/y.toml"}, cwd) == str(places["env"])


def test_nothing_found(tmp_path: Path) -> None:
    assert find_config(None, {}, str(tmp_path)) is None


def test_a_folder_named_like_the_file_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "taskcatalog.toml").mkdir()
    assert find_config(None, {}, str(tmp_path)) is None


def test_an_explicit_file_must_exist(places: dict[str, Path], tmp_path: Path) -> None:
    cwd = str(places["cwd"].parent)
    with pytest.raises(ConfigError) as info:
        find_config("missing.toml", {CONFIG_ENV: str(places["env"])}, cwd)
    assert str(info.value) == f"--config missing.toml: no such configuration file ({cwd}/missing.toml)"
    assert info.value.path == f"{cwd}/missing.toml"
    with pytest.raises(ConfigError, match=r"^--config .*/work: is a folder, not a configuration file$"):
        find_config(cwd, {}, cwd)
    with pytest.raises(ConfigError, match=r"^--config: the file name is empty$"):
        find_config("", {}, cwd)


def test_the_environment_variable_must_name_a_file(places: dict[str, Path]) -> None:
    cwd = str(places["cwd"].parent)
    missing = str(places["env"].parent / "gone.toml")
    with pytest.raises(ConfigError) as info:
        find_config(None, {CONFIG_ENV: missing}, cwd)
    assert str(info.value) == f"TASKCATALOG_CONFIG={missing}: no such configuration file"
    assert info.value.path == missing
