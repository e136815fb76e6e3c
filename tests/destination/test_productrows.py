"""Deal product rows as a destination target (`deal_products`): sandbox over loopback HTTP, results in DuckDB.

Each input row is one crm.item.productrow.add / .update / .delete; re-runs are recognised by comparing adds
with the deal's rows on the portal (product rows have no marker field). After every run the portal's product
rows are compared with the state the input should leave.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bitrix24_source.destination.results import ERRORS_TABLE, PLAN_TABLE, RESULTS_TABLE
from bitrix24_source.sandbox import Fault, Sandbox

# Fields the portal derives from price, discount and tax on every write (crm-item-productrow-add.md).
_DERIVED = frozenset({"priceAccount", "priceExclusive", "priceNetto", "priceBrutto", "discountSum"})


@pytest.fixture
def rows_portal() -> Iterator[Sandbox]:
    with Sandbox(seed=9, deals=30, leads=2, contacts=3, companies=3, users=3, tasks=1) as sandbox:
        yield sandbox


def _state(portal: Sandbox) -> dict[int, dict[str, Any]]:
    return {int(r["id"]): dict(r) for r in portal.rows("deal_products")}


def _by_deal(state: dict[int, dict[str, Any]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for id_, row in sorted(state.items()):
        out.setdefault(int(row["ownerId"]), []).append(id_)
    return out


def _by_row(read_table: Callable[[str], list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    results = read_table(RESULTS_TABLE)
    last = max(r["load_id"] for r in results)
    return {r["row_number"]: r for r in results if r["load_id"] == last}


def assert_rows(
    after: dict[int, dict[str, Any]],
    before: dict[int, dict[str, Any]],
    changed: dict[int, dict[str, Any]],
    deleted: set[int],
    added: list[dict[str, Any]],
) -> list[int]:
    """The portal holds `before` with `changed` applied (derived prices aside), `deleted` gone, and one new
    row per `added`, in order; returns the new ids."""
    new_ids = sorted(set(after) - set(before))
    assert set(before) - set(after) == deleted
    for id_, row in before.items():
        if id_ in deleted:
            continue
        expected = {**row, **changed.get(id_, {})}
        skip = _DERIVED if id_ in changed else frozenset()
        assert {k: v for k, v in after[id_].items() if k not in skip} == {
            k: v for k, v in expected.items() if k not in skip
        }, f"product row {id_}"
    assert [{k: after[i][k] for k in values} for i, values in zip(new_ids, added, strict=True)] == added
    return new_ids


def test_product_rows_are_added_updated_deleted_and_a_rerun_adds_nothing(
    rows_portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    before = _state(rows_portal)
    by_deal = _by_deal(before)
    deals = sorted(int(r["id"]) for r in rows_portal.rows("deals"))
    empty = next(d for d in deals if d not in by_deal)
    one = next(d for d, ids in by_deal.items() if len(ids) >= 1)
    two = next(d for d, ids in by_deal.items() if len(ids) >= 2 and d != one)
    other = next(ids[0] for d, ids in by_deal.items() if d not in (one, two))
    kept, gone = by_deal[two][0], by_deal[two][1]
    rows: list[dict[str, Any]] = [
        {"ownerId": empty, "productId": 101, "price": 9900, "quantity": 2},
        {"ownerId": empty, "productId": 101, "price": 9900, "quantity": 2},  # the same row twice: two rows
        {
            "ownerId": one,
            "productId": 0,
            "productName": "Installation",
            "price": 500,
            "taxRate": 20,
            "taxIncluded": "Y",
        },
        # owner columns as the source's deal_products table has them: the row's own owner is no change
        {"id": kept, "ownerId": two, "ownerType": "D", "quantity": 7, "price": 100},
        {"id": gone, "_delete": True},
        # bad rows
        {"id": by_deal[one][0], "ownerId": two, "quantity": 3},  # moving a row to another deal
        {"ownerId": empty, "price": 5},  # no productId
        {"ownerId": empty, "productId": 101, "ownerType": "L"},
        {"id": 99_999_999, "quantity": 1},
        {"ownerId": 99_999_999, "productId": 101},
        {"id": other, "priceNetto": 1},
        {"ownerId": empty, "productId": "abc"},
    ]
    pipeline = push_pipeline(rows_portal.webhook_url, name="products")
    pipeline.run(rows, table_name="deal_products")

    by_row = _by_row(read_table)
    assert [by_row[n]["operation"] for n in range(5)] == ["add", "add", "add", "update", "delete"]
    assert [by_row[n]["status"] for n in range(len(rows))] == ["ok"] * 5 + ["error"] * 7
    codes = [by_row[n]["error_code"] for n in range(5, len(rows))]
    assert codes == [
        "IMMUTABLE_FIELD",
        "REQUIRED_FIELD_MISSING",
        "INVALID_VALUE",
        "NOT_FOUND",
        "OWNER_NOT_FOUND",  # the portal's own answer
        "READ_ONLY_FIELD",
        "INVALID_TYPE",
    ]
    assert "'ownerId'" in by_row[5]["error_description"] and "productId" in by_row[6]["error_description"]
    assert "'ownerType' must be 'D'" in by_row[7]["error_description"]
    errors = read_table(ERRORS_TABLE)
    assert [e["row_number"] for e in errors] == list(range(5, len(rows)))
    assert [e["field"] for e in errors][:3] == ["ownerId", "productId", "ownerType"]

    after = _state(rows_portal)
    new_ids = assert_rows(
        after,
        before,
        changed={kept: {"quantity": 7.0, "price": 100.0}},
        deleted={gone},
        added=[
            {
                "ownerId": empty,
                "productId": 101,
                "productName": "Laptop basic",
                "price": 9900.0,
                "quantity": 2.0,
            },
            {
                "ownerId": empty,
                "productId": 101,
                "productName": "Laptop basic",
                "price": 9900.0,
                "quantity": 2.0,
            },
            {
                "ownerId": one,
                "productName": "Installation",
                "price": 500.0,
                "priceExclusive": 416.67,
                "taxRate": 20.0,
            },
        ],
    )
    assert [by_row[n]["bitrix_id"] for n in range(3)] == new_ids

    # A re-run finds the added rows on their deals and the update already held: nothing is written.
    rows_portal.reset_stats()
    pipeline.run(rows, table_name="deal_products")
    again = _by_row(read_table)
    assert [again[n]["status"] for n in range(4)] == ["already_applied"] * 4
    assert [again[n]["bitrix_id"] for n in range(3)] == new_ids
    assert again[4]["status"] == "error" and again[4]["error_code"] == "NOT_FOUND"  # deleted by the first run
    assert [again[n]["error_code"] for n in range(5, len(rows))] == codes
    assert _state(rows_portal) == after
    writes = rows_portal.stats().by_method
    # Only the add to a deal that does not exist is sent again (the portal refuses it again).
    assert writes.get("crm.item.productrow.add", 0) == 1
    assert not any(writes.get(f"crm.item.productrow.{op}", 0) for op in ("update", "delete"))

    # Three identical adds where the deal holds two such rows: the third one is new.
    pipeline.run([rows[0]] * 3, table_name="deal_products")
    third = _by_row(read_table)
    assert [third[n]["status"] for n in range(3)] == ["already_applied", "already_applied", "ok"]
    assert_rows(
        _state(rows_portal), after, changed={}, deleted=set(), added=[{"ownerId": empty, "quantity": 2.0}]
    )


def test_allow_duplicates_adds_again(
    rows_portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal = min(int(r["id"]) for r in rows_portal.rows("deals"))
    row = {"ownerId": deal, "productId": 102, "price": 24900}
    push_pipeline(rows_portal.webhook_url, name="dup").run([row], table_name="deal_products")
    push_pipeline(rows_portal.webhook_url, name="dup", allow_duplicates=True).run(
        [row], table_name="deal_products"
    )
    assert _by_row(read_table)[0]["status"] == "ok"
    held = Counter((int(r["ownerId"]), r["productId"], r["price"]) for r in rows_portal.rows("deal_products"))
    assert held[(deal, 102, 24900.0)] >= 2


def test_lost_answers_of_product_row_adds_are_found_not_resent(
    rows_portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deals = sorted(int(r["id"]) for r in rows_portal.rows("deals"))[:10]
    rows = [
        {"ownerId": d, "productId": 103, "price": 1000 + k, "quantity": 1} for d in deals for k in range(7)
    ]
    before = _state(rows_portal)
    # Batch 1 is the pre-flight read of the deals' rows; the first write batch runs, then its answer is lost.
    rows_portal.inject(Fault(kind="reset", method="batch", phase="after", after=1, times=1))
    rows_portal.reset_stats()
    push_pipeline(rows_portal.webhook_url, name="resets").run(rows, table_name="deal_products")

    stats = rows_portal.stats().by_method
    assert stats["crm.item.productrow.add"] == len(rows)  # none sent twice
    # The pre-flight, then the lost batch's deals read again (their 50+ rows take a second page, by `>id`).
    assert stats["crm.item.productrow.list"] == 3
    results = read_table(RESULTS_TABLE)
    assert [r["status"] for r in results] == ["ok"] * len(rows)
    new_ids = assert_rows(
        _state(rows_portal),
        before,
        changed={},
        deleted=set(),
        added=[{"ownerId": r["ownerId"], "price": float(r["price"])} for r in rows],
    )
    assert sorted(r["bitrix_id"] for r in results) == new_ids


def test_key_option_is_refused_for_product_rows(
    rows_portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    deal = min(int(r["id"]) for r in rows_portal.rows("deals"))
    before = _state(rows_portal)
    with pytest.raises(Exception, match="key='productId'"):
        push_pipeline(rows_portal.webhook_url, name="keyed", key="productId").run(
            [{"ownerId": deal, "productId": 101}], table_name="deal_products"
        )
    assert _state(rows_portal) == before


def test_dry_run_plans_product_row_commands_and_writes_nothing(
    rows_portal: Sandbox, push_pipeline: Callable[..., Any], read_table: Callable[[str], list[dict[str, Any]]]
) -> None:
    before = _state(rows_portal)
    held_id, held = next(iter(sorted(before.items())))
    other_id, other = next((i, r) for i, r in sorted(before.items()) if r["ownerId"] != held["ownerId"])
    rows = [
        {"ownerId": held["ownerId"], "productId": 105, "price": 12.5},
        {k: held[k] for k in ("ownerId", "productId", "price", "quantity")},  # the deal has this row
        {"id": other_id, "quantity": other["quantity"] + 1},
    ]
    push_pipeline(rows_portal.webhook_url, name="dry", dry_run=True).run(rows, table_name="deal_products")

    assert _state(rows_portal) == before
    by_row = _by_row(read_table)
    assert [by_row[n]["status"] for n in range(3)] == ["planned", "already_applied", "planned"]
    assert by_row[1]["bitrix_id"] == held_id
    plan = {p["row_number"]: p for p in read_table(PLAN_TABLE)}
    assert plan[0]["method"] == "crm.item.productrow.add"
    assert json.loads(plan[0]["params_json"]) == {
        "fields": {"ownerId": held["ownerId"], "productId": 105, "price": 12.5, "ownerType": "D"}
    }
    assert plan[2]["method"] == "crm.item.productrow.update"
    assert json.loads(plan[2]["params_json"]) == {
        "id": other_id,
        "fields": {"quantity": other["quantity"] + 1},
    }
