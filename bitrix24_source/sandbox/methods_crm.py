"""CRM methods of the sandbox portal: `crm.item.*` (§7.2), classic `crm.{lead,deal,contact,company}.*` (§7.3)
and `crm.item.productrow.list` / `.fields`.

Rows are stored once, in crm.item form (camelCase, native types); classic methods translate names and values
on the way in and out with the same `FieldSpec` tables, so both APIs always see the same portal.

It is long because crm.item.* and the classic crm.<entity>.* methods share one store and one set of
translations; keeping them together keeps both APIs answering about the same portal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from bitrix24_source.sandbox.fields import (
    CLASSIC_NAMES,
    CRM_FIELD_MAP,
    CURRENCIES,
    DATE_TYPES,
    DEAL_STAGES,
    ENTITY_TITLES,
    FLOAT_TYPES,
    FM_ENTITIES,
    FM_TYPES,
    INT_TYPES,
    ITEM_ENTITY_BY_TYPE_ID,
    ITEM_ENTITY_TYPE_IDS,
    ITEM_TYPES,
    LEAD_STATUSES,
    MONEY_FIELDS,
    CrmCatalogue,
    FieldSpec,
    camel_to_upper,
    classic_fields_payload,
    crm_item_fields_payload,
    product_row_fields_payload,
    stage_semantic,
)
from bitrix24_source.sandbox.filters import (
    FieldRef,
    compile_v2,
    strict_int,
    to_iso,
    v2_list,
    v2_order,
    yn,
)
from bitrix24_source.sandbox.store import iso
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

# Entities with movedBy/movedTime (object-fields.md: leads, deals, invoices and smart processes).
_MOVED = frozenset({"leads", "deals", *(e for e in ITEM_TYPES if e != "quotes")})
_DEFAULT_TYPES = {"deals": "SALE", "contacts": "CLIENT", "companies": "CUSTOMER"}


def param(params: Mapping[str, Any], name: str) -> Any:
    """A top-level parameter, case-insensitively (classic methods accept `id` and `ID`)."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for key, value in params.items():
        if key.lower() == lowered:
            return value
    return None


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return None


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return list(value.values())
    return None


def as_list(value: Any) -> list[Any] | None:
    """A list parameter as PHP sees it: a JSON array, or the values of an object (`select[0]=…` encoding)."""
    return _as_list(value)


def _kind(spec: FieldSpec) -> str:
    if spec.name == "id":
        return "id"
    if spec.type in INT_TYPES:
        return "list_int" if spec.multiple else "int"
    if spec.type in FLOAT_TYPES:
        return "float"
    if spec.type in DATE_TYPES:
        return "datetime"
    if spec.type == "boolean":
        return "yn"
    return "list_str" if spec.multiple else "str"


@functools.cache
def _item_resolver(cat: CrmCatalogue, entity: str) -> Callable[[str], FieldRef | None]:
    by_name, by_upper = cat.field_map[entity], cat.upper_map[entity]

    @functools.lru_cache(maxsize=1024)
    def resolve(name: str) -> FieldRef | None:
        # crm.item converts keys to UPPER_CASE after registering the entity's UPPER_CASE field names
        # (Crm\Controller\Item::getFactory -> preprocessUpperFieldNames), so `ID`/`STAGE_ID` work as well as
        # `id`/`stageId`; an unknown name such as `I_D` fails (fast_bitrix24 #196 hit that on crm.type.list).
        spec = by_name.get(name) or by_upper.get(name) or by_upper.get(camel_to_upper(name))
        return FieldRef(spec.name, _kind(spec)) if spec else None

    return resolve


@functools.cache
def _classic_resolver(cat: CrmCatalogue, entity: str) -> Callable[[str], FieldRef | None]:
    by_upper = cat.upper_map[entity]

    @functools.lru_cache(maxsize=1024)
    def resolve(name: str) -> FieldRef | None:
        spec = by_upper.get(name.upper())
        return FieldRef(spec.name, _kind(spec)) if spec else None

    return resolve


def _entity_from_type_id(params: Mapping[str, Any]) -> str:
    type_id = strict_int(params.get("entityTypeId"))
    entity = ITEM_ENTITY_BY_TYPE_ID.get(type_id) if type_id is not None else None
    if entity is None:
        # DOCS crm-item-*.md: an unknown entityTypeId is "Smart process not found".
        raise ApiError("NOT_FOUND", "Smart process not found")
    return entity


# ---------------------------------------------------------------------------------------------------------
# output


def _select_item(cat: CrmCatalogue, entity: str, select: Any) -> tuple[tuple[str, ...], bool]:
    """The fields a crm.item `select` asks for, and whether `fm` goes along (only with `*`, §7.2)."""
    return _item_selection(cat, entity, tuple(str(x) for x in _as_list(select) or []))


@functools.lru_cache(maxsize=256)
def _item_selection(cat: CrmCatalogue, entity: str, names: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    specs = cat.fields[entity]
    if not names:
        return tuple(s.name for s in specs), False
    wanted: set[str] = {"id"}
    with_fm = False
    for name in names:
        if name == "*":
            wanted.update(s.name for s in specs)
            with_fm = True
        elif name.lower() in ("uf_*", "ufcrm*", "ufcrm_*"):
            wanted.update(s.name for s in specs if s.user_field)
        else:
            spec = cat.field_map[entity].get(name) or cat.upper_map[entity].get(name)
            if spec is not None:
                wanted.add(spec.name)
    return tuple(s.name for s in specs if s.name in wanted), with_fm and entity in FM_ENTITIES


def render_item(
    cat: CrmCatalogue,
    entity: str,
    row: Mapping[str, Any],
    names: tuple[str, ...],
    *,
    with_fm: bool,
    original_uf: bool = False,
    with_type: bool = False,
) -> dict[str, Any]:
    """A crm.item row with the fields `names` (canonical names, in field order)."""
    pairs, multiple = _item_keys(cat, entity, names, original_uf)
    out = {name: row.get(key) for key, name in pairs}
    for name in multiple:
        value = out[name]
        if value is not None:
            out[name] = list(value)
    if with_fm:
        out["fm"] = [dict(x) for x in row.get("fm") or []]
    if with_type:
        out["entityTypeId"] = ITEM_ENTITY_TYPE_IDS[entity]
    return out


@functools.lru_cache(maxsize=256)
def _item_keys(
    cat: CrmCatalogue, entity: str, names: tuple[str, ...], original_uf: bool
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    # Worked out once per select: rendering is the hot path of a 2,500-row batch of keyset pages.
    specs = [cat.field_map[entity][n] for n in names]
    pairs = tuple((s.name, s.upper if (original_uf and s.user_field) else s.name) for s in specs)
    multiple = tuple(out for (_, out), s in zip(pairs, specs, strict=True) if s.multiple)
    return pairs, multiple


def _classic_value(spec: FieldSpec, value: Any) -> Any:
    """crm.item value -> classic value: scalars become strings (§2.4), empty dates become ""."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if value is None:
        return "" if spec.type in DATE_TYPES else None
    if spec.type in FLOAT_TYPES:
        return f"{value:.2f}" if spec.name in MONEY_FIELDS else format(value, "g")
    if spec.type == "boolean" and spec.user_field:
        return "1" if value == "Y" else "0"
    return str(value)


def _classic_fm(row: Mapping[str, Any], fm_type: str) -> list[dict[str, str]]:
    return [
        {"ID": str(x["id"]), "VALUE_TYPE": x["valueType"], "VALUE": x["value"], "TYPE_ID": x["typeId"]}
        for x in row.get("fm") or []
        if x["typeId"] == fm_type
    ]


def render_classic(
    cat: CrmCatalogue, entity: str, row: Mapping[str, Any], select: Any, *, full: bool = False
) -> dict[str, Any]:
    """A classic UPPER_CASE row. `full` (get) returns everything; lists follow `select` (default `*`)."""
    if full:
        fm_types = tuple(t for t in FM_TYPES if entity in FM_ENTITIES and _classic_fm(row, t))
        return _classic_row(row, cat.fields[entity], fm_types)
    return _classic_row(row, *classic_selection(cat, entity, select))


def classic_selection(
    cat: CrmCatalogue, entity: str, select: Any
) -> tuple[tuple[FieldSpec, ...], tuple[str, ...]]:
    """The fields and multifield types a classic list `select` asks for (default `*`)."""
    names = tuple(str(x).upper() for x in (_as_list(select) or [])) or ("*",)
    return _classic_selection(cat, entity, names)


@functools.lru_cache(maxsize=256)
def _classic_selection(
    cat: CrmCatalogue, entity: str, names: tuple[str, ...]
) -> tuple[tuple[FieldSpec, ...], tuple[str, ...]]:
    # Worked out once per select, like `_item_keys`.
    specs = cat.fields[entity]
    fm_types: list[str] = []
    wanted = {"id"}
    for name in names:
        if name == "*":
            wanted.update(s.name for s in specs if not s.user_field)
        elif name == "UF_*":
            wanted.update(s.name for s in specs if s.user_field)
        elif name in FM_TYPES and entity in FM_ENTITIES:
            fm_types.append(name)
        elif name in cat.upper_map[entity]:
            wanted.add(cat.upper_map[entity][name].name)
    return tuple(s for s in specs if s.name in wanted), tuple(fm_types)


def _classic_row(
    row: Mapping[str, Any], specs: tuple[FieldSpec, ...], fm_types: tuple[str, ...]
) -> dict[str, Any]:
    out = {s.upper: _classic_value(s, row.get(s.name)) for s in specs}
    for fm_type in fm_types:
        out[fm_type] = _classic_fm(row, fm_type)
    return out


# ---------------------------------------------------------------------------------------------------------
# input


def _invalid(spec: FieldSpec) -> ApiError:
    # DOCS crm-item-add.md / crm-item-update.md, "Possible Error Codes".
    return ApiError("CRM_FIELD_ERROR_VALUE_NOT_VALID", f'Invalid value for field "{spec.name}"')


def _coerce_scalar(spec: FieldSpec, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None if spec.type != "boolean" else "N"
    if isinstance(value, (dict, list)):
        raise _invalid(spec)
    if spec.type in INT_TYPES:
        number = strict_int(value)
        if number is None:
            raise _invalid(spec)
        if spec.type == "enumeration" and number not in {i for i, _ in spec.items}:
            raise _invalid(spec)
        return number
    if spec.type in FLOAT_TYPES:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _invalid(spec) from None
    if spec.type == "boolean":
        return yn(value)
    if spec.type in DATE_TYPES:
        try:
            text = to_iso(value)
        except ValueError:
            raise _invalid(spec) from None
        return text[:10] + "T00:00:00+03:00" if spec.type == "date" else text
    if spec.type == "crm_currency" and str(value) not in CURRENCIES:
        raise _invalid(spec)
    return str(value)


def _coerce(spec: FieldSpec, value: Any, *, classic: bool) -> Any:
    if not spec.multiple:
        return _coerce_scalar(spec, value)
    if value is None or value == "":
        return []
    items = _as_list(value)
    if items is None:
        if not classic:
            # DOCS crm-item-add.md error table: code "100".
            raise ApiError(
                "100", f"Expected iterable value for multiple field, but got {type(value).__name__} instead"
            )
        items = [value]
    return [v for v in (_coerce_scalar(spec, x) for x in items) if v is not None]


def _parse_fm(value: Any) -> list[dict[str, Any]]:
    """crm.item `fm`: the complete new list of communications."""
    out = []
    for item in _as_list(value) or []:
        if isinstance(item, Mapping) and item.get("value") not in (None, ""):
            out.append(
                {
                    "typeId": str(item.get("typeId") or "PHONE"),
                    "valueType": str(item.get("valueType") or "WORK"),
                    "value": str(item["value"]),
                }
            )
    return out


def _parse_classic_fm(value: Any, fm_type: str) -> list[dict[str, Any]]:
    """Classic PHONE/EMAIL/…: edits. An entry with `ID` changes that value (an empty VALUE deletes it),
    one without `ID` adds a value (DOCS api-reference/crm/data-types.md, crm_multifield)."""
    out = []
    for item in _as_list(value) or []:
        if not isinstance(item, Mapping):
            continue
        text = param(item, "VALUE")
        out.append(
            {
                "id": strict_int(param(item, "ID")),
                "typeId": fm_type,
                "valueType": str(param(item, "VALUE_TYPE") or "WORK"),
                "value": "" if text is None else str(text),
            }
        )
    return out


def _apply_fm_edits(current: list[dict[str, Any]], edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(x) for x in current]
    for edit in edits:
        if edit["id"] is None:
            if edit["value"]:
                out.append({k: v for k, v in edit.items() if k != "id"})
            continue
        for pos, existing in enumerate(out):
            if existing.get("id") == edit["id"]:
                if edit["value"]:
                    existing.update(valueType=edit["valueType"], value=edit["value"])
                else:
                    del out[pos]
                break
    return out


def normalize_input(
    cat: CrmCatalogue, entity: str, raw: Mapping[str, Any], *, classic: bool
) -> dict[str, Any]:
    """Incoming `fields` -> canonical values. Unknown and read-only fields are ignored, as Bitrix does.

    Communications come back as `fm` (crm.item: the new complete list) or `_fm_edits` (classic: changes to
    apply to the current list, see `_parse_classic_fm`).
    """
    by_key = cat.upper_map[entity] if classic else cat.field_map[entity]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if entity in FM_ENTITIES:
            if classic and key.upper() in FM_TYPES:
                out.setdefault("_fm_edits", []).extend(_parse_classic_fm(value, key.upper()))
                continue
            if not classic and key == "fm":
                out["fm"] = _parse_fm(value)
                continue
        spec = by_key.get(key.upper() if classic else key)
        if spec is None and not classic and key.startswith("UF_"):
            spec = cat.upper_map[entity].get(key)
        if spec is None or spec.read_only or spec.type == "file":
            # The sandbox stores no files: a `file` field (contact photo, company logo) is accepted and
            # dropped, as read-only fields are (docs/sandbox-deviations.md).
            continue
        out[spec.name] = _coerce(spec, value, classic=classic)
    return out


def _stage_fields(entity: str, row: dict[str, Any], changes: dict[str, Any], *, adding: bool) -> None:
    """Validate and complete stage/category changes (stage ids per pipeline, semantic, closed flag)."""
    if entity == "leads":
        stage = changes.get("stageId") or (None if not adding else LEAD_STATUSES[0])
        if stage is None:
            return
        if stage not in LEAD_STATUSES:
            raise _invalid(CRM_FIELD_MAP[entity]["stageId"])
        changes["stageId"] = stage
    elif entity == "deals":
        category = changes.get("categoryId")
        stage = changes.get("stageId")
        if category is None and stage is not None and ":" in stage and stage.startswith("C"):
            category = strict_int(stage[1 : stage.index(":")])
        if category is None:
            category = row.get("categoryId") if not adding else 0
        if category not in DEAL_STAGES:
            raise _invalid(CRM_FIELD_MAP[entity]["categoryId"])
        if stage is None and (adding or category != row.get("categoryId")):
            stage = DEAL_STAGES[category][0]
        if stage is None:
            return
        if stage not in DEAL_STAGES[category]:
            raise _invalid(CRM_FIELD_MAP[entity]["stageId"])
        changes["categoryId"], changes["stageId"] = category, stage
        changes["closed"] = "N" if stage_semantic(entity, stage) == "P" else "Y"
    elif entity in ITEM_TYPES:
        _item_stage_fields(entity, row, changes, adding=adding)
        return
    else:
        return
    changes["stageSemanticId"] = stage_semantic(entity, changes["stageId"])


def _item_stage_fields(entity: str, row: dict[str, Any], changes: dict[str, Any], *, adding: bool) -> None:
    """Stages of quotes, invoices and smart processes: a stage belongs to one pipeline (`DT<type>_<category>:`
    prefix, crm-status-get.md), a stage change keeps the old one in `previousStageId` (object-fields.md)."""
    item = ITEM_TYPES[entity]
    spec = CRM_FIELD_MAP[entity]
    category = changes.get("categoryId") if "categoryId" in spec else None
    stage = changes.get("stageId")
    if category is None and stage is not None:
        category = next((p.id for p in item.pipelines if stage in p.stages), None)
    if category is None:
        category = item.default.id if adding else row.get("categoryId", item.default.id)
    pipeline = item.pipeline(category)
    if pipeline is None:
        raise _invalid(spec["categoryId"])
    if stage is None and (adding or category != row.get("categoryId", category)):
        stage = pipeline.stages[0]
    if stage is None:
        return
    if stage not in pipeline.stages:
        raise _invalid(spec["stageId"])
    changes["stageId"] = stage
    if "categoryId" in spec:
        changes["categoryId"] = category
    if "previousStageId" in spec and not adding and row.get("stageId") != stage:
        changes["previousStageId"] = row.get("stageId")
    if "closed" in spec:
        changes["closed"] = "N" if stage_semantic(entity, stage) == "P" else "Y"


def _link_fields(entity: str, changes: dict[str, Any]) -> None:
    # `contactId` is the deprecated single form of `contactIds` (crm-item-fields.md): keep them in step.
    linked = entity in ("deals", "leads") or entity in ITEM_TYPES
    if "contactIds" in changes and "contactId" not in changes and linked:
        changes["contactId"] = changes["contactIds"][0] if changes["contactIds"] else None
    elif "contactId" in changes and "contactIds" not in changes and linked:
        changes["contactIds"] = [changes["contactId"]] if changes["contactId"] else []
    if entity == "contacts":
        if "companyIds" in changes and "companyId" not in changes:
            changes["companyId"] = changes["companyIds"][0] if changes["companyIds"] else None
        elif "companyId" in changes and "companyIds" not in changes:
            changes["companyIds"] = [changes["companyId"]] if changes["companyId"] else []


def blank_crm_row(cat: CrmCatalogue, entity: str, *, user_id: int, now: float) -> dict[str, Any]:
    """A new row with every field present and Bitrix's defaults filled in."""
    row: dict[str, Any] = {}
    for spec in cat.fields[entity]:
        row[spec.name] = [] if spec.multiple else None
        if spec.type == "boolean":
            row[spec.name] = "N"
    stamp = iso(now)
    row.update(
        opened="Y",
        assignedById=user_id,
        createdBy=user_id,
        updatedBy=user_id,
        createdTime=stamp,
        updatedTime=stamp,
    )
    if entity in _MOVED:
        row.update(movedBy=user_id, movedTime=stamp)
    if entity in ("deals", "leads"):
        row.update(opportunity=0.0, currencyId="RUB", isManualOpportunity="N")
    if entity == "deals":
        row.update(categoryId=0, stageId=DEAL_STAGES[0][0], isNew="Y", closed="N", taxValue=0.0)
    if entity == "leads":
        row.update(stageId=LEAD_STATUSES[0])
    if entity == "contacts":
        row.update(export="Y")
    if entity == "companies":
        row.update(currencyId="RUB", revenue=0.0)
    if entity in _DEFAULT_TYPES:
        row["typeId"] = _DEFAULT_TYPES[entity]
    if entity in ITEM_TYPES:
        pipeline = ITEM_TYPES[entity].default
        row.update(opportunity=0.0, currencyId="RUB", isManualOpportunity="N", taxValue=0.0)
        row["stageId"] = pipeline.stages[0]
        if "categoryId" in row:
            row["categoryId"] = pipeline.id
    if "stageId" in row and entity not in ITEM_TYPES:
        # Only leads and deals have stageSemanticId (DOCS api-reference/crm/universal/object-fields.md, {#lead}
        # and {#deal}; the {#quote}, {#invoice} and {#spa} sections have none), so crm.item.list never serves
        # it for the item types and their rows must not carry it either.
        row["stageSemanticId"] = stage_semantic(entity, row["stageId"])
    if entity in FM_ENTITIES:
        row["fm"] = []
    return row


# object-fields.md: hasPhone / hasEmail / hasImol say whether the item has such a communication (`fm`).
_FLAG_TYPES = (("hasPhone", "PHONE"), ("hasEmail", "EMAIL"), ("hasImol", "IM"))


def derive_flags(cat: CrmCatalogue, entity: str, row: dict[str, Any]) -> None:
    """Set the catalogue's read-only communication flags from the row's `fm` entries."""
    fields = cat.field_map[entity]
    kinds = {x.get("typeId") for x in row.get("fm") or []}
    for name, fm_type in _FLAG_TYPES:
        if name in fields:
            row[name] = "Y" if fm_type in kinds else "N"


def create_crm(state: PortalData, entity: str, changes: dict[str, Any], *, user_id: int) -> dict[str, Any]:
    """Validate an add and store it (shared by crm.item.add and crm.<entity>.add)."""
    table = state.table(entity)
    row = blank_crm_row(state.crm, entity, user_id=user_id, now=state.now())
    for spec in state.crm.fields[entity]:
        if spec.required and (changes.get(spec.name) in (None, "", [])):
            # DOCS import/crm-item-batch-import.md lists CRM_FIELD_ERROR_REQUIRED; the text is the sandbox's own.
            raise ApiError("CRM_FIELD_ERROR_REQUIRED", f'Field "{spec.title}" is required')
    _stage_fields(entity, row, changes, adding=True)
    _link_fields(entity, changes)
    edits = changes.pop("_fm_edits", None)
    row.update(changes)
    if edits:
        row["fm"] = _apply_fm_edits(row.get("fm") or [], edits)
    state.assign_fm_ids(row)
    derive_flags(state.crm, entity, row)
    row = table.insert(row)
    if not row.get("title") and "title" in state.crm.field_map[entity]:
        title = ENTITY_TITLES[entity] if entity in ENTITY_TITLES else ITEM_TYPES[entity].title
        row["title"] = f"{title} #{row['id']}"
    state.record_stage(entity, row, None)
    return row


def update_crm(
    state: PortalData, entity: str, id_: int, changes: dict[str, Any], *, user_id: int
) -> dict[str, Any]:
    """Validate an update and store it: `updatedTime`/`updatedBy` always move, `movedTime` on a stage change."""
    table = state.table(entity)
    old = table.get(id_)
    if old is None:
        # DOCS crm-item-get.md, "Error Handling".
        raise ApiError("NOT_FOUND", "Element not found")
    row = dict(old)
    _stage_fields(entity, row, changes, adding=False)
    _link_fields(entity, changes)
    for spec in state.crm.fields[entity]:
        if spec.required and spec.name in changes and changes[spec.name] in (None, "", []):
            # DOCS import/crm-item-batch-import.md lists CRM_FIELD_ERROR_REQUIRED; the text is the sandbox's own.
            raise ApiError("CRM_FIELD_ERROR_REQUIRED", f'Field "{spec.title}" is required')
    stage_moved = "stageId" in changes and changes["stageId"] != old.get("stageId")
    edits = changes.pop("_fm_edits", None)
    row.update(changes)
    if edits:
        row["fm"] = _apply_fm_edits(row.get("fm") or [], edits)
    stamp = iso(state.now())
    row["updatedTime"], row["updatedBy"] = stamp, user_id
    if stage_moved and entity in _MOVED:
        row["movedTime"], row["movedBy"] = stamp, user_id
    if entity == "deals":
        row["isNew"] = "N"
    state.assign_fm_ids(row)
    derive_flags(state.crm, entity, row)
    out = table.replace(id_, row)
    state.record_stage(entity, out, old)
    return out


# ---------------------------------------------------------------------------------------------------------
# crm.item.*


def _item_id(params: Mapping[str, Any]) -> int:
    id_ = strict_int(params.get("id"))
    if id_ is None or id_ <= 0:
        # DOCS crm-item-get.md, "Error Handling".
        raise ApiError("NOT_FOUND", "Element not found")
    return id_


def _fields_param(params: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = _as_mapping(params.get("fields"))
    return fields if fields is not None else {}


def item_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity = _entity_from_type_id(params)
    resolve = _item_resolver(state.crm, entity)
    compiled = compile_v2(params.get("filter") or {}, resolve)
    order = v2_order(params.get("order") or {}, resolve, strict=True)
    page, total, nxt, cost = v2_list(state.table(entity), compiled, order, ctx, state.cost_model)
    names, with_fm = _select_item(state.crm, entity, params.get("select"))
    original = yn(params.get("useOriginalUfNames", "N")) == "Y"
    with_type = state.crm.name == "docs" and _selects_all(params.get("select"))
    items = [
        render_item(state.crm, entity, r, names, with_fm=with_fm, original_uf=original, with_type=with_type)
        for r in page
    ]
    return MethodResult({"items": items}, total=total, next=nxt, cost=cost, rows=len(items))


def _selects_all(select: Any) -> bool:
    # catalogue="docs": rows of a whole-item select carry `entityTypeId` like crm.item.get's item does
    # (crm-item-get.md response; object-fields.md lists entityTypeId among the common fields). The docs'
    # list example (an explicit select) has no entityTypeId.
    names = [str(x) for x in _as_list(select) or []]
    return not names or "*" in names


def _full_item(
    cat: CrmCatalogue, entity: str, row: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    original = yn(params.get("useOriginalUfNames", "N")) == "Y"
    names = _select_item(cat, entity, None)[0]
    return render_item(
        cat, entity, row, names, with_fm=entity in FM_ENTITIES, original_uf=original, with_type=True
    )


def item_get(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity = _entity_from_type_id(params)
    row = state.table(entity).get(_item_id(params))
    if row is None:
        # DOCS crm-item-get.md, "Error Handling".
        raise ApiError("NOT_FOUND", "Element not found")
    return MethodResult(
        {"item": _full_item(state.crm, entity, row, params)}, cost=state.cost_model.call_cost()
    )


def item_add(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity = _entity_from_type_id(params)
    changes = normalize_input(state.crm, entity, _fields_param(params), classic=False)
    row = create_crm(state, entity, changes, user_id=ctx.user_id)
    return MethodResult(
        {"item": _full_item(state.crm, entity, row, params)}, cost=state.cost_model.call_cost(write=True)
    )


def item_update(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity = _entity_from_type_id(params)
    id_ = _item_id(params)
    if state.table(entity).get(id_) is None:
        # DOCS crm-item-get.md, "Error Handling".
        raise ApiError("NOT_FOUND", "Element not found")
    changes = normalize_input(state.crm, entity, _fields_param(params), classic=False)
    row = update_crm(state, entity, id_, changes, user_id=ctx.user_id)
    return MethodResult(
        {"item": _full_item(state.crm, entity, row, params)}, cost=state.cost_model.call_cost(write=True)
    )


def item_delete(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity = _entity_from_type_id(params)
    id_ = _item_id(params)
    table = state.table(entity)
    if table.get(id_) is None:
        # DOCS crm-item-delete.md, "Error Handling" (crm.item.get says "Element not found").
        raise ApiError("NOT_FOUND", "Item not found")
    state.delete_row(entity, id_)
    # §7.2: the result is an empty PHP array, which encodes as [].
    return MethodResult([], cost=state.cost_model.call_cost(write=True))


def item_fields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    entity = _entity_from_type_id(params)
    original = yn(params.get("useOriginalUfNames", "N")) == "Y"
    return MethodResult(
        crm_item_fields_payload(entity, original_uf_names=original, catalogue=state.crm),
        cost=state.cost_model.call_cost(),
    )


# ---------------------------------------------------------------------------------------------------------
# classic crm.<entity>.*  (§7.3: errors are HTTP 400 with an empty "error" code)


def _classic_error(description: str) -> ApiError:
    return ApiError("", description, 400)


def _classic_id(params: Mapping[str, Any]) -> int:
    id_ = strict_int(param(params, "id"))
    if id_ is None or id_ <= 0:
        # DOCS crm-contact-get.md / crm-contact-delete.md, "Error Handling".
        raise _classic_error("ID is not defined or invalid.")
    return id_


def _classic_fields(params: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = _as_mapping(param(params, "fields"))
    if fields is None:
        # DOCS crm-company-add.md / crm-deal-add.md, "Error Handling".
        raise _classic_error("Parameter 'fields' must be array.")
    return fields


def _reword(err: ApiError) -> ApiError:
    return _classic_error(err.description)


def _classic(entity: str) -> dict[str, Handler]:
    def list_(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        resolve = _classic_resolver(state.crm, entity)
        for name in ("filter", "order"):
            value = param(params, name)
            if value not in (None, "") and not isinstance(value, (Mapping, list)):
                # DOCS crm-deal-list.md, "Possible Error Codes".
                raise _classic_error(f"Parameter '{name}' must be array.")
        try:
            compiled = compile_v2(param(params, "filter") or {}, resolve)
        except ApiError as err:
            raise _reword(err) from None
        order = v2_order(param(params, "order") or {}, resolve, strict=False)
        page, total, nxt, cost = v2_list(state.table(entity), compiled, order, ctx, state.cost_model)
        specs, fm_types = classic_selection(state.crm, entity, param(params, "select"))
        rows = [_classic_row(r, specs, fm_types) for r in page]
        return MethodResult(rows, total=total, next=nxt, cost=cost, rows=len(rows))

    def get(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        row = state.table(entity).get(_classic_id(params))
        if row is None:
            # DOCS crm-company-get.md / crm-lead-get.md, "Error Handling".
            raise _classic_error("Not found")
        return MethodResult(
            render_classic(state.crm, entity, row, None, full=True), cost=state.cost_model.call_cost()
        )

    def add(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        fields = _classic_fields(params)
        try:
            changes = normalize_input(state.crm, entity, fields, classic=True)
            row = create_crm(state, entity, changes, user_id=ctx.user_id)
        except ApiError as err:
            raise _reword(err) from None
        return MethodResult(row["id"], cost=state.cost_model.call_cost(write=True))

    def update(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        id_ = _classic_id(params)
        if state.table(entity).get(id_) is None:
            # DOCS crm-company-update.md, crm-contact-update.md: "Company is not found", "Contact is not found".
            raise _classic_error(f"{ENTITY_TITLES[entity]} is not found")
        fields = _classic_fields(params)
        try:
            changes = normalize_input(state.crm, entity, fields, classic=True)
            update_crm(state, entity, id_, changes, user_id=ctx.user_id)
        except ApiError as err:
            raise _reword(err) from None
        return MethodResult(True, cost=state.cost_model.call_cost(write=True))

    def delete(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        id_ = _classic_id(params)
        if state.table(entity).get(id_) is None:
            # DOCS crm-company-get.md / crm-lead-get.md, "Error Handling".
            raise _classic_error("Not found")
        state.delete_row(entity, id_)
        return MethodResult(True, cost=state.cost_model.call_cost(write=True))

    def fields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult(classic_fields_payload(entity, state.crm), cost=state.cost_model.call_cost())

    return {"list": list_, "get": get, "add": add, "update": update, "delete": delete, "fields": fields}


# ---------------------------------------------------------------------------------------------------------
# crm.item.productrow.list

# DOCS crm-item-productrow-list.md: only these keys filter; others are silently ignored.
_PRODUCT_FILTER = {
    "id": FieldRef("id", "id"),
    "ownerId": FieldRef("ownerId", "int"),
    "ownerType": FieldRef("ownerType", "str"),
    "productId": FieldRef("productId", "int"),
}
_PRODUCT_ORDER = {"id": FieldRef("id", "id"), "sort": FieldRef("sort", "int")}


def productrow_list(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    raw = _as_mapping(params.get("filter")) or {}
    if "=ownerType" not in raw or not ({"=ownerId", "@ownerId"} & set(raw)):
        # DOCS crm-item-productrow-list.md marks =ownerType and =ownerId required; the code and text of the
        # error are the sandbox's own (docs/sandbox-deviations.md).
        raise ApiError("REQUIRED_ARG_MISSING", "Required fields: =ownerType, =ownerId")
    kept = {}
    for key, value in raw.items():
        name = key.lstrip("=!<>@%")
        if name in _PRODUCT_FILTER:
            kept[key] = value
    table = state.table("deal_products")
    compiled = compile_v2(kept, _PRODUCT_FILTER.get, indexed=table.indexed)
    order = v2_order(params.get("order") or {}, _PRODUCT_ORDER.get, strict=False) or [
        ("sort", False),
        ("id", False),
    ]
    page, total, nxt, cost = v2_list(table, compiled, order, ctx, state.cost_model)
    rows = [dict(r) for r in page]
    return MethodResult({"productRows": rows}, total=total, next=nxt, cost=cost, rows=len(rows))


def productrow_fields(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    return MethodResult(product_row_fields_payload(), cost=state.cost_model.call_cost())


def _build_v2() -> dict[str, Handler]:
    out: dict[str, Handler] = {
        "crm.item.list": item_list,
        "crm.item.get": item_get,
        "crm.item.add": item_add,
        "crm.item.update": item_update,
        "crm.item.delete": item_delete,
        "crm.item.fields": item_fields,
        "crm.item.productrow.list": productrow_list,
        "crm.item.productrow.fields": productrow_fields,
    }
    for short, entity in CLASSIC_NAMES.items():
        for action, handler in _classic(entity).items():
            out[f"crm.{short}.{action}"] = handler
    return out


METHODS_V2: dict[str, Handler] = _build_v2()
WRITES = frozenset(name for name in METHODS_V2 if name.rsplit(".", 1)[-1] in ("add", "update", "delete"))
