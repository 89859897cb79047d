"""taskcatalog: a catalog of versioned interfaces with per-customer plugins."""

import logging

from .errors import (
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
    SchemaError,
    VersionNotFound,
    VersionRetired,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"
