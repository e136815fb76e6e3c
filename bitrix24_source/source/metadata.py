"""Field metadata of the selected entities, read when first needed (I/O through a PortalReader).

Column types come from the portal's own field lists (`crm.item.fields`, `tasks.task.field.list`, ...),
parsed by bitrix24_source/fields.py; where a list describes no types (users, task results) or is missing
(deal product rows on some portals), the static tables of settings.py fill in.

Only the entities a run selects are described, so a webhook with the CRM scope alone can sync CRM tables.
A field list rides in the first batch of its entity's own data (`FieldStore.command` / `FieldStore.accept`):
a v2 batch for CRM and users, the first v3 batch for tasks. The `field_definitions` resource, and
incremental task loads (whose paging depends on whether `changed` is filterable), ask `FieldStore.fetch`
for what is not known yet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

from bitrix24_source.client.commands import CommandResult
from bitrix24_source.errors import ApiError
from bitrix24_source.fields import TASK_V3_DOCUMENTED, FieldMeta, parse_field_map, with_documented_types
from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import (
    ACTIVITIES,
    CRM_ENTITIES,
    DEAL_PRODUCTS,
    PRODUCT_ROW_FIELDS,
    PRODUCT_ROW_UNDESCRIBED,
    SPECS_BY_NAME,
    TASK_RESULT_FIELDS,
    TASK_RESULT_MULTIPLE_FIELDS,
    TASK_RESULTS,
    TASKS,
    USER_FIELD_TYPES,
    USER_MULTIPLE_FIELDS,
    USERS,
    EntitySpec,
)

logger = logging.getLogger(__name__)

FIELDS_KEY = "fields"
"""Batch key of the field-list command riding in an entity's first data batch."""


class FieldStore:
    """Field metadata by entity name, read once per source object; shared by threads."""

    def __init__(self) -> None:
        self._meta: dict[str, dict[str, FieldMeta]] = {}
        self._lock = threading.Lock()
        self._registered: dict[str, EntitySpec | None] = {}

    def register(
        self, entity: str, spec: EntitySpec | None = None, fields: Mapping[str, FieldMeta] | None = None
    ) -> None:
        """Add an entity beyond ENTITY_ORDER: a crm.item `spec` whose field list is read like the deals' (a smart
        process found on the portal, quotes, invoices), or a directory with documented static `fields`."""
        with self._lock:
            self._registered[entity] = spec
            if fields is not None:
                self._meta.setdefault(entity, dict(fields))

    def registered(self) -> list[str]:
        """The entities added with `register`, in that order (after ENTITY_ORDER in `field_definitions`)."""
        with self._lock:
            return list(self._registered)

    def known(self, entity: str) -> dict[str, FieldMeta] | None:
        """The entity's fields if they were read already."""
        with self._lock:
            return self._meta.get(entity)

    def command(self, entity: str) -> dict[str, queries.Cmd]:
        """`{FIELDS_KEY: <field-list command>}` for a batch of the entity's own API version (v2, or v3 for
        tasks), or `{}` when the fields are known."""
        if self.known(entity) is not None:
            return {}
        with self._lock:
            spec = self._registered.get(entity) or SPECS_BY_NAME[entity]
        assert spec.fields_method is not None, entity
        if spec.api_version == 3:
            return {FIELDS_KEY: (spec.fields_method, {})}
        params = {"entityTypeId": spec.entity_type_id} if spec.entity_type_id is not None else {}
        return {FIELDS_KEY: (spec.fields_method, params)}

    def accept(self, entity: str, results: Mapping[str, CommandResult]) -> dict[str, FieldMeta]:
        """Take the answer of `command(entity)` from a batch's results; the entity's fields."""
        res = results.get(FIELDS_KEY)
        if res is not None:
            self._put(entity, _parse(entity, res))
        fields = self.known(entity)
        assert fields is not None, f"{entity}: fields neither known nor in the batch"
        return fields

    def fetch(
        self, reader: PortalReader, resource: str, entities: Iterable[str]
    ) -> dict[str, dict[str, FieldMeta]]:
        """The fields of `entities`, reading the ones not known yet (v2 lists in one batch, tasks via v3).

        The requests are counted for `resource`.
        """
        wanted = list(dict.fromkeys(entities))
        missing = [e for e in wanted if self.known(e) is None]
        if TASK_RESULTS.name in missing:
            self._put(TASK_RESULTS.name, static_fields(TASK_RESULT_FIELDS, TASK_RESULT_MULTIPLE_FIELDS))
        if TASKS.name in missing:
            assert TASKS.fields_method is not None
            answer = reader.call(resource, TASKS.fields_method, {}, version=TASKS.api_version)
            self._put(TASKS.name, _task_fields(answer))
        v2 = [e for e in missing if e not in (TASKS.name, TASK_RESULTS.name)]
        # Product rows last: if the portal lacks the method, the halt stops nothing after it.
        v2.sort(key=lambda e: e == DEAL_PRODUCTS.name)
        if v2:
            commands = {e: self.command(e)[FIELDS_KEY] for e in v2}
            for entity, res in zip(v2, reader.batch(resource, commands), strict=True):
                self._put(entity, _parse(entity, res))
        return {e: self.known(e) or {} for e in wanted}

    def _put(self, entity: str, fields: dict[str, FieldMeta]) -> None:
        with self._lock:
            self._meta.setdefault(entity, fields)


def _parse(entity: str, res: CommandResult) -> dict[str, FieldMeta]:
    if entity == DEAL_PRODUCTS.name:
        return _product_row_fields(res)
    if not res.ok:
        raise res.error or ApiError(f"{res.method}: command {res.key} was not executed", code="NOT_EXECUTED")
    if entity == TASKS.name:
        return _task_fields(res.result)
    fields = parse_field_map(res.result)
    return _user_fields(fields) if entity == USERS.name else fields


def _task_fields(answer: object) -> dict[str, FieldMeta]:
    # tasks.task.field.list answers with PHP property types ("object" for a DateTime): the documented task
    # object decides those fields' types (fields.TASK_V3_DOCUMENTED).
    return with_documented_types(parse_field_map(answer), TASK_V3_DOCUMENTED)


ENTITY_ORDER = (
    *(spec.name for spec in CRM_ENTITIES),
    DEAL_PRODUCTS.name,
    USERS.name,
    TASKS.name,
    TASK_RESULTS.name,
    ACTIVITIES.name,
)
"""Entities with field metadata, in the order `field_definitions` lists them."""


def static_fields(types: Mapping[str, str], multiple: frozenset[str] = frozenset()) -> dict[str, FieldMeta]:
    """FieldMeta for a table of `name -> Bitrix type word` (titles are the names)."""
    return {
        name: FieldMeta(name=name, type=t, title=name, multiple=name in multiple) for name, t in types.items()
    }


def _user_fields(labels: Mapping[str, FieldMeta]) -> dict[str, FieldMeta]:
    """The user.fields labels typed from the documented user.get types."""
    typed = static_fields(USER_FIELD_TYPES, USER_MULTIPLE_FIELDS)
    # Fields without a documented type are strings in user.get rows (§7.5).
    return {
        name: FieldMeta(
            name=name,
            type=typed[name].type if name in typed else "string",
            title=f.title,
            multiple=typed[name].multiple if name in typed else False,
        )
        for name, f in labels.items()
    }


def _product_row_fields(res: CommandResult) -> dict[str, FieldMeta]:
    """deal_products field metadata from `crm.item.productrow.fields`, or the built-in table without it.

    Raises:
        Bitrix24Error: the call failed for any reason other than the method missing on the portal.
    """
    if res.ok:
        described = parse_field_map(res.result)
        # The description leaves out priceAccount and xmlId, which rows do carry
        # (DOCS api-reference/crm/universal/product-rows/crm-item-productrow-fields.md).
        undescribed = {k: t for k, t in PRODUCT_ROW_FIELDS.items() if k in PRODUCT_ROW_UNDESCRIBED}
        return {**described, **static_fields(undescribed)}
    if res.error is not None and res.error.category == "method":
        logger.warning(
            "%s is not available on this portal (%s): deal_products column types come from the built-in "
            "field table",
            DEAL_PRODUCTS.fields_method,
            res.error.code,
        )
        return static_fields(PRODUCT_ROW_FIELDS)
    raise res.error or ApiError(
        f"{DEAL_PRODUCTS.fields_method}: command {res.key} was not executed", code="NOT_EXECUTED"
    )
