"""bitrix24-dlt: move data between Bitrix24 and any warehouse with dlt.

Public names:
    bitrix24_source       dlt source: Bitrix24 -> warehouse
    bitrix24_destination  dlt destination: dataframes / records -> Bitrix24 batch writes
    Bitrix24Client        the REST client (v2/v3 calls, batches, limiter, retries)
    errors                the exception tree
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bitrix24_source import errors
    from bitrix24_source.client import Bitrix24Client
    from bitrix24_source.destination import bitrix24_destination
    from bitrix24_source.source import bitrix24_source

__all__ = ["Bitrix24Client", "bitrix24_destination", "bitrix24_source", "errors"]

# Lazy imports (PEP 562): `import bitrix24_source` stays cheap (the sandbox CLI does not pay for dlt),
# and each public name loads only the module it lives in.
_LAZY = {
    "Bitrix24Client": ("bitrix24_source.client", "Bitrix24Client"),
    "bitrix24_source": ("bitrix24_source.source", "bitrix24_source"),
    "bitrix24_destination": ("bitrix24_source.destination", "bitrix24_destination"),
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
