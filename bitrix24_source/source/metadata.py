"""Field metadata of every entity, read once per source object (I/O: one v2 batch and three calls).

Column types come from the portal's own field lists (`crm.item.fields`, `tasks.task.field.list`, ...),
parsed by bitrix24_source/fields.py; where a list describes no types (users, task results) or is missing
(deal product rows on some portals), the static tables of settings.py fill in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bitrix24_source.client.commands import CommandResult
from bitrix24_source.errors import ApiError
from bitrix24_source.fields import TASK_V3_DOCUMENTED, FieldMeta, parse_field_map, with_documented_types
from bitrix24_source.source import queries
from bitrix24_source.source.reader import PortalReader
from bitrix24_source.source.settings import (
    CRM_ENTITIES,
    DEAL_PRODUCTS,
    FIELD_DEFINITIONS_TABLE,
    PRODUCT_ROW_FIELDS,
    PRODUCT_ROW_UNDESCRIBED,
    TASK_RESULT_FIELDS,
    TASK_RESULT_MULTIPLE_FIELDS,
    TASK_RESULTS,
    TASKS,
    USER_FIELD_TYPES,
    USER_MULTIPLE_FIELDS,
    USERS,
)

logger = logging.getLogger(__name__)


def fetch_metadata(reader: PortalReader) -> dict[str, dict[str, FieldMeta]]:
    """Field metadata of every entity: the four crm.item.fields calls in one v2 batch, task fields via v3.

    The requests are counted for the `field_definitions` resource.
    """
    resource = FIELD_DEFINITIONS_TABLE
    meta: dict[str, dict[str, FieldMeta]] = {}
    commands: dict[str, queries.Cmd] = {
        spec.name: ("crm.item.fields", {"entityTypeId": spec.entity_type_id}) for spec in CRM_ENTITIES
    }
    assert DEAL_PRODUCTS.fields_method is not None
    # Last in the batch: if the portal lacks the method, the halt stops nothing after it.
    commands[DEAL_PRODUCTS.name] = (DEAL_PRODUCTS.fields_method, {})
    results = reader.batch(resource, commands)
    crm_results, product_result = results[: len(CRM_ENTITIES)], results[len(CRM_ENTITIES)]
    queries.raise_first_error(crm_results)
    for spec, res in zip(CRM_ENTITIES, crm_results, strict=True):
        meta[spec.name] = parse_field_map(res.result)
    meta[DEAL_PRODUCTS.name] = _product_row_fields(product_result)
    assert USERS.fields_method is not None
    meta[USERS.name] = _user_fields(parse_field_map(reader.call(resource, USERS.fields_method, {})))
    assert TASKS.fields_method is not None
    # tasks.task.field.list answers with PHP property types ("object" for a DateTime): the documented
    # task object decides those fields' types (fields.TASK_V3_DOCUMENTED).
    meta[TASKS.name] = with_documented_types(
        parse_field_map(reader.call(resource, TASKS.fields_method, {}, version=TASKS.api_version)),
        TASK_V3_DOCUMENTED,
    )
    meta[TASK_RESULTS.name] = static_fields(TASK_RESULT_FIELDS, TASK_RESULT_MULTIPLE_FIELDS)
    return meta


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
