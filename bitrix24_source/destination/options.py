"""The settings of one ``bitrix24_destination`` (see its docstring); data only, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DestinationOptions:
    """Settings of one :func:`bitrix24_source.destination.bitrix24_destination`."""

    entity: str | None = None
    key: str | None = None
    allow_duplicates: bool = False
    dry_run: bool = False
    marker_field: str | None = None
    progress: bool | None = None
    timeout: float = 30.0
    rate_limit: Any = "default"
    operating_limit: float | None = 480.0
    verify: bool | str = True
    results_destination: Any = None
    results_dataset_name: str = "bitrix24_writes"
    max_send_attempts: int = 3
