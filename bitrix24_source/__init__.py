"""bitrix24-dlt: move data between Bitrix24 and any warehouse with dlt.

Public names:
    bitrix24_source       dlt source: Bitrix24 -> warehouse
    bitrix24_destination  dlt destination: dataframes / records -> Bitrix24 batch writes
    bitrix24_rows         any frame or records as rows that reach the destination whatever their values
    last_results          the last push's results and errors as DataFrames
    Bitrix24Client        the REST client (v2/v3 calls, batches, limiter, retries)
    errors                the exception tree
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bitrix24_source import errors
    from bitrix24_source.client import Bitrix24Client
    from bitrix24_source.destination import bitrix24_destination, bitrix24_rows, last_results
    from bitrix24_source.source import bitrix24_source

__all__ = [
    "Bitrix24Client",
    "bitrix24_destination",
    "bitrix24_rows",
    "bitrix24_source",
    "errors",
    "last_results",
]

# Lazy imports (PEP 562): `import bitrix24_source` stays cheap (the sandbox CLI does not pay for dlt),
# and each public name loads only the module it lives in.
_LAZY = {
    "Bitrix24Client": ("bitrix24_source.client", "Bitrix24Client"),
    "bitrix24_source": ("bitrix24_source.source", "bitrix24_source"),
    "bitrix24_destination": ("bitrix24_source.destination", "bitrix24_destination"),
    "bitrix24_rows": ("bitrix24_source.destination.rows", "bitrix24_rows"),
    "last_results": ("bitrix24_source.destination.results", "last_results"),
    "errors": ("bitrix24_source.errors", None),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bitrix24_source' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


# Modules that moved into the client/, source/ and destination/ wings. Their old import paths keep working
# (with a DeprecationWarning) for code written against the flat layout: the README of 0.1 taught
# `bitrix24_source.limits`, `.commands` and `.config`. importlib has no declarative alias for a submodule,
# hence this small finder.
_MOVED = {
    "bitrix24_source.batch": "bitrix24_source.client.batch",
    "bitrix24_source.commands": "bitrix24_source.client.commands",
    "bitrix24_source.limits": "bitrix24_source.client.limits",
    "bitrix24_source.result": "bitrix24_source.client.result",
    "bitrix24_source.config": "bitrix24_source.source.credentials",
    "bitrix24_source.readers": "bitrix24_source.source.queries",
    "bitrix24_source.schema": "bitrix24_source.source.schema",
    "bitrix24_source.settings": "bitrix24_source.source.settings",
    "bitrix24_source.writes": "bitrix24_source.destination.plan",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in _MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = _MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module was executed under its new name already."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
