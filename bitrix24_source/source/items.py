"""crm.item types beyond the four classic entities: smart processes found on the portal, quotes, invoices;
and the `enum_labels` option. I/O through a PortalReader (discovery only).

Quotes (entityTypeId 7), smart invoices (31) and every smart process are read exactly like deals: crm.item.list
keyset chains, typed from crm.item.fields for their entityTypeId, incremental on `updatedTime`, deletes by an
id scan (DOCS api-reference/crm/universal/index.md: one set of crm.item methods for every type). A smart
process's resource is `spa_<entityTypeId>`; which ones exist depends on the portal, so the source lists the
types with crm.type.list when it is created (`discover_smart_processes`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from bitrix24_source.errors import Bitrix24Error, ConfigError
from bitrix24_source.fields import FieldMeta, kind_of, truthy
from bitrix24_source.source.directories import spa_type_rows
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import SMART_PROCESSES, SPA_TYPES_TABLE, is_spa_name

logger = logging.getLogger(__name__)

LABEL_SUFFIX = "_label"
"""Suffix of the column that holds an enumeration field's label(s) (`enum_labels=True`)."""


@dataclass(frozen=True, slots=True)
class SmartProcesses:
    """The smart-process types a source was made with.

    Attributes:
        ids: every entityTypeId (one `spa_<id>` resource each).
        staged: the ones with stages (`isStagesEnabled`, crm-type-list.md), whose stage history exists; None
            when the ids were given rather than listed (stage_history and crm_categories then list the types
            themselves when they run).
    """

    ids: list[int]
    staged: list[int] | None

    @property
    def listed(self) -> bool:
        """Whether the portal's types were listed (`smart_processes="all"`) rather than given."""
        return self.staged is not None


_SETTLED_CODES: Final = frozenset({"CONNECTION_REFUSED", "DNS_ERROR", "CONNECT_TIMEOUT", "TIMEOUT"})
"""Failures of the first request that a resend would only repeat (the portal is down, its name does not
resolve, it does not answer): the listing is sent once for them, and the source fails in one line."""


LIST_ALL: Final = "all"
"""`smart_processes="all"`: list the portal's smart-process types when the source is made."""


def discover_smart_processes(reader: PortalReader, given: Sequence[int] | str) -> SmartProcesses:
    """The portal's smart processes: `given` ids (no request), or with `"all"` the types crm.type.list lists.

    Listing is opt-in: by default making a source sends nothing (a scheduler that imports the pipeline file
    to parse it, a default sync's request count), and a `spa_<id>` resource exists only for the ids given.

    This is the source's first request: it is sent once where a resend would only repeat the failure (see
    `_SETTLED_CODES`, and any refusal: credentials, scope, access), with the client's retries otherwise. Any
    failure ends here with the client's one-line text: an empty listing would silently leave the smart
    processes (and their stage history and pipelines) out of every run. A webhook without the `crm` scope
    is told to pass `smart_processes=()`.
    """
    if isinstance(given, str):
        if given != LIST_ALL:
            raise ConfigError(f'smart_processes={given!r}: pass "all" or a list of entityTypeIds')
    else:
        return SmartProcesses(sorted({int(type_id) for type_id in given}), None)
    client = reader.client
    policy = client.retry
    client.retry = replace(policy, max_attempts=1)
    try:
        try:
            rows = spa_type_rows(reader, SPA_TYPES_TABLE)
        except Bitrix24Error as exc:
            settled = exc.code.upper() in _SETTLED_CODES or exc.category in ("auth", "access", "method")
            if settled or policy.max_attempts <= 1:
                raise
            client.retry = replace(policy, max_attempts=policy.max_attempts - 1)
            rows = spa_type_rows(reader, SPA_TYPES_TABLE)
    except Bitrix24Error as exc:
        if exc.code.upper() in ("INSUFFICIENT_SCOPE", "ACCESS_DENIED"):
            exc.description = (
                f"{exc.description} (listing the smart processes when the source is made; a webhook without "
                'the crm scope: make the source without smart_processes="all")'
            )
        # No traceback through the client's layers: the text says it all.
        raise exc.with_traceback(None) from None
    finally:
        client.retry = policy
    ids = sorted({int(row["entityTypeId"]) for row in rows})
    staged = sorted({int(row["entityTypeId"]) for row in rows if truthy(row.get("isStagesEnabled", "Y"))})
    return SmartProcesses(ids, staged)


def select_resources(source: Any, names: Iterable[str]) -> Any:
    """`source.with_resources(...)` that also takes `smart_processes` (every `spa_<id>` resource of the
    source).

    Args:
        source: a `bitrix24_source(...)` object.
        names: resource names; `smart_processes` selects every smart process the portal has.

    Raises:
        ConfigError: a `spa_<id>` name the portal has no smart process for.
    """
    names = list(names)
    available = list(source.resources)
    spa = [name for name in available if is_spa_name(name)]
    if SMART_PROCESSES in names and not spa:
        logger.warning(
            "smart_processes selects nothing: the source has no smart processes (made without "
            'smart_processes="all" or their ids, or the portal has none)'
        )
    chosen: list[str] = []
    for name in names:
        if name == SMART_PROCESSES:
            chosen += spa
        elif is_spa_name(name) and name not in available:
            found = ", ".join(spa) or "none"
            raise ConfigError(
                f"{name}: the source has no such smart process (found: {found}); make it with "
                'smart_processes="all" to list the portal\'s types, or with the entityTypeIds'
            )
        else:
            chosen.append(name)
    return source.with_resources(*dict.fromkeys(chosen))


class EnumLabels:
    """Adds `<field>_label` next to each enumeration custom field (`enum_labels=True`); a no-op when off.

    The labels come from the field list's items (crm.item.fields `items: [{ID, VALUE}]`, DOCS
    api-reference/crm/universal/crm-item-fields.md); a single field's label is text, a multiple field's a list
    of texts. A value the list does not know gets no label (None in that place).
    """

    __slots__ = ("_enabled", "_items")

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._items: dict[str, tuple[dict[str, str], bool]] = {}

    def fields(self, fields: Mapping[str, FieldMeta]) -> dict[str, FieldMeta]:
        """`fields` with a label field after each enumeration custom field (column hints for the labels)."""
        if not self._enabled:
            return dict(fields)
        out: dict[str, FieldMeta] = {}
        self._items = {}
        for name, meta in fields.items():
            out[name] = meta
            if _is_custom_enumeration(meta):
                self._items[name] = (dict(meta.items or ()), meta.multiple)
                label = name + LABEL_SUFFIX
                out[label] = FieldMeta(
                    name=label, type="string", title=f"{meta.title} (label)", multiple=meta.multiple
                )
        return out

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows with each enumeration's label right after its value."""
        if not self._items:
            return rows
        return [self._row(row) for row in rows]

    def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in row.items():
            out[name] = value
            known = self._items.get(name)
            if known is not None:
                labels, multiple = known
                out[name + LABEL_SUFFIX] = _labels(value, labels, multiple=multiple)
        return out


def _is_custom_enumeration(meta: FieldMeta) -> bool:
    # User fields are `ufCrm...` in crm.item answers and `UF_...` in the classic ones (§7.3).
    return kind_of(meta) == "enumeration" and bool(meta.items) and meta.name.lower().startswith("uf")


def _labels(value: Any, labels: Mapping[str, str], *, multiple: bool) -> Any:
    if value is None or value == "" or value == []:
        return None
    if multiple or isinstance(value, list):
        values = value if isinstance(value, list) else [value]
        return [labels.get(str(v)) for v in values]
    return labels.get(str(value))
