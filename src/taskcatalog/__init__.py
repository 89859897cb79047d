"""taskcatalog: a catalog of versioned interfaces with per-customer plugins.

Users import from here; the modules behind these names are free to move.
"""

import logging

from .catalog import Catalog
from .context import CallContext, Context
from .deprecation import deprecated
from .errors import (
    ArgumentError,
    BatchFrozen,
    BatchNotFound,
    CatalogError,
    ConfigError,
    ContractError,
    DatabaseError,
    DatabaseLocked,
    InterfaceNotFound,
    InvalidName,
    LoadError,
    MigrationError,
    PluginError,
    SchemaError,
    UnknownBackend,
    VersionNotFound,
    VersionRetired,
)
from .plugins import plugin_config, slot, slot_config
from .results import CallResult, Problem, ReloadReport
from .slots import call_if_present
from .tasks import BaseTask

# The library never configures logging; applications attach their handlers.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "Context",
    "CallContext",
    "CallResult",
    "Problem",
    "ReloadReport",
    "BaseTask",
    "plugin_config",
    "slot",
    "slot_config",
    "call_if_present",
    "deprecated",
    "CatalogError",
    "InvalidName",
    "LoadError",
    "InterfaceNotFound",
    "VersionNotFound",
    "VersionRetired",
    "ArgumentError",
    "PluginError",
    "ContractError",
    "ConfigError",
    "SchemaError",
    "MigrationError",
    "DatabaseError",
    "DatabaseLocked",
    "UnknownBackend",
    "BatchFrozen",
    "BatchNotFound",
]
