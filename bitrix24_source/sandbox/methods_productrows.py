"""Writes of deal product rows on the sandbox portal: `crm.item.productrow.add` / `.update` / `.delete` / `.get`.

DOCS api-reference/crm/universal/product-rows/ (crm-item-productrow-add.md, -update.md, -delete.md, -get.md).
The rows live in the `deal_products` table that `crm.item.productrow.list` (`methods_crm`) reads; the sandbox
keeps product rows for deals only (owner type ``D``), so another owner type is ENTITY_TYPE_NOT_SUPPORTED.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bitrix24_source.sandbox.filters import strict_int
from bitrix24_source.sandbox.generator import PRODUCTS, product_row
from bitrix24_source.sandbox.types import ApiError, CallContext, Handler, MethodResult, PortalData

_TABLE: Final = "deal_products"
_DEAL_OWNER: Final = "D"
_CATALOGUE: Final = {pid: name for pid, name, _ in PRODUCTS}
_FLOATS: Final = frozenset({"price", "quantity", "discountRate", "discountSum", "taxRate"})
_INTS: Final = frozenset({"ownerId", "productId", "discountTypeId", "measureCode", "sort"})
_TEXTS: Final = frozenset({"ownerType", "productName", "taxIncluded", "measureName", "customized"})
# What crm.item.productrow.update accepts (crm-item-productrow-update.md, "Parameter fields"); anything else
# is INVALID_ARG_VALUE ("Unknown field or the provided field is not available for update").
_UPDATABLE: Final = frozenset(
    {
        "productId",
        "productName",
        "price",
        "quantity",
        "discountTypeId",
        "discountRate",
        "discountSum",
        "taxRate",
        "taxIncluded",
        "measureCode",
        "sort",
    }
)
_ABSOLUTE_DISCOUNT: Final = 1  # discountTypeId 1: absolute value, 2: percentage (crm-item-productrow-add.md)


def _not_found() -> ApiError:
    # crm-item-productrow-update.md / -delete.md / -get.md, "Error Handling".
    return ApiError("NOT_FOUND", "Item not found")


def _required() -> ApiError:
    # Code 100 "Required parameters not provided" (the pages' error tables); the text is the sandbox's own.
    return ApiError("100", "Required parameters not provided")


def _row_id(params: Mapping[str, Any]) -> int:
    if params.get("id") in (None, ""):
        raise _required()
    id_ = strict_int(params.get("id"))
    if id_ is None or id_ <= 0:
        raise _not_found()
    return id_


def _values(fields: Mapping[str, Any], names: frozenset[str] | None) -> dict[str, Any]:
    """The known fields of a write, typed as the rows store them (doubles, integers, text)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if names is not None and name not in names:
            raise ApiError("INVALID_ARG_VALUE", f"Field {name} is unknown or not available for update")
        if name in _FLOATS:
            out[name] = None if value in (None, "") and name == "taxRate" else _number(name, value)
        elif name in _INTS:
            number = strict_int(value)
            if number is None:
                raise ApiError("INVALID_ARG_VALUE", f"Invalid value for field {name}")
            out[name] = number
        elif name in _TEXTS:
            out[name] = "" if value is None else str(value)
    return out


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError("INVALID_ARG_VALUE", f"Invalid value for field {name}") from None


def _priced(row: dict[str, Any]) -> dict[str, Any]:
    """Derive the computed prices from price, discount and tax, rounding to cents at each step as the docs'
    examples do (crm-item-productrow-add.md: price 80000, 20% discount, 20% tax included -> priceExclusive
    66666.67, priceNetto 83333.34, priceBrutto 100000.01, discountSum 16666.67; -update.md likewise)."""
    price = float(row["price"])
    rate = float(row["taxRate"] or 0.0)
    exclusive = round(price / (1 + rate / 100), 2) if row.get("taxIncluded") == "Y" else price
    if int(row.get("discountTypeId") or 2) == _ABSOLUTE_DISCOUNT:
        netto = round(exclusive + float(row.get("discountSum") or 0.0), 2)
        row["discountRate"] = round(100 * float(row.get("discountSum") or 0.0) / netto, 2) if netto else 0.0
    else:
        discount = float(row.get("discountRate") or 0.0)
        netto = round(exclusive / (1 - discount / 100), 2) if discount < 100 else exclusive
        row["discountSum"] = round(netto - exclusive, 2)
    row.update(
        priceAccount=price,
        priceExclusive=exclusive,
        priceNetto=netto,
        priceBrutto=round(netto * (1 + rate / 100), 2),
    )
    return row


def _owner(state: PortalData, owner_type: Any, owner_id: Any) -> int:
    if owner_type in (None, "") or owner_id in (None, ""):
        raise _required()
    if str(owner_type) != _DEAL_OWNER:
        # crm-item-productrow-add.md lists ENTITY_TYPE_NOT_SUPPORTED; the sandbox keeps deal rows only.
        raise ApiError("ENTITY_TYPE_NOT_SUPPORTED", "Working with this type of objects is not supported")
    deal = strict_int(owner_id)
    if deal is None or state.table("deals").get(deal) is None:
        # crm-item-productrow-add.md, "Error Handling".
        raise ApiError("OWNER_NOT_FOUND", "Owner was not found")
    return deal


def productrow_add(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    fields = params.get("fields")
    if not isinstance(fields, Mapping):
        raise _required()
    deal = _owner(state, fields.get("ownerType"), fields.get("ownerId"))
    values = _values(fields, None)
    row = product_row(deal, 0, "", 0.0, 1.0, 10)
    row.update(values)
    product = int(row["productId"] or 0)
    if not values.get("productName") and product in _CATALOGUE:
        # crm-item-productrow-add.md: without productName, the catalogue product's name is used.
        row["productName"] = _CATALOGUE[product]
    stored = state.table(_TABLE).insert(_priced(row))
    return MethodResult({"productRow": dict(stored)}, cost=state.cost_model.call_cost(write=True))


def productrow_update(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_ = _row_id(params)
    table = state.table(_TABLE)
    old = table.get(id_)
    if old is None:
        raise _not_found()
    fields = params.get("fields")
    if not isinstance(fields, Mapping):
        raise _required()
    row = {**old, **_values(fields, _UPDATABLE)}
    stored = table.replace(id_, _priced(row))
    return MethodResult({"productRow": dict(stored)}, cost=state.cost_model.call_cost(write=True))


def productrow_delete(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    id_ = _row_id(params)
    table = state.table(_TABLE)
    if table.get(id_) is None:
        raise _not_found()
    table.delete(id_)
    # crm-item-productrow-delete.md: "The value is always null".
    return MethodResult(None, cost=state.cost_model.call_cost(write=True))


def productrow_get(state: PortalData, params: dict[str, Any], ctx: CallContext) -> MethodResult:
    row = state.table(_TABLE).get(_row_id(params))
    if row is None:
        raise _not_found()
    return MethodResult({"productRow": dict(row)}, cost=state.cost_model.call_cost())


METHODS_V2: dict[str, Handler] = {
    "crm.item.productrow.add": productrow_add,
    "crm.item.productrow.update": productrow_update,
    "crm.item.productrow.delete": productrow_delete,
    "crm.item.productrow.get": productrow_get,
}
WRITES = frozenset({"crm.item.productrow.add", "crm.item.productrow.update", "crm.item.productrow.delete"})
