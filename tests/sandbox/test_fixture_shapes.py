"""Fidelity: the sandbox answers equivalent requests with the SHAPES recorded from live portals.

Every file in tests/fixtures/real-responses is either replayed here (same command keys, an equivalent
method and parameters) or listed in ``NOT_REPLAYED`` with the reason; a test checks the two lists cover the
directory, so a new fixture cannot be silently ignored.

What is compared (not values): top-level keys, batch sections as list-vs-object with their key sets,
per-command result kinds and wrapper keys (``items``, ``item``, ``tasks``, ``productRows``), row id field
name and type (``"ID": "1"`` strings in classic methods, ``"id": 1`` ints in crm.item), error objects
(``"error": ""``), presence of ``result_next`` for all but the last page, and the ``time`` keys (the recorded
keys must all be present; 2022 recordings predate ``operating_reset_at``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bitrix24_source.sandbox import Sandbox

FIXTURES = Path(__file__).parents[1] / "fixtures" / "real-responses"
TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish", "operating"}

NOT_REPLAYED = {
    "catalog_document_element_list": "catalog.* is not emulated",
    "crm_company_contact_items_get": "crm.company.contact.items.get is not emulated",
    "crm_stagehistory_list": "crm.stagehistory.list is not emulated",
    "stagehistory": "crm.stagehistory.list is not emulated",
    "socialnetwork_api_workgroup_list": "socialnetwork.* is not emulated",
    "task_elapseditem_getlist_mixed_types": "task.elapseditem.* (legacy positional) is not emulated",
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["response"]


def describe(value: Any, depth: int = 0) -> Any:
    """A value's shape: containers and key sets, row id field and type, scalar kinds; ``time`` blocks dropped."""
    if isinstance(value, dict):
        id_key = next((key for key in ("ID", "id") if key in value), None)
        if id_key is not None and depth > 0:
            return {"row": id_key, "id_type": type(value[id_key]).__name__}
        if {"error", "error_description"} <= set(value) and depth > 0:
            return {"error": value["error"], "keys": sorted(value)}
        return {
            "object": {
                key: _section(item) if key == "result_time" else describe(item, depth + 1)
                for key, item in value.items()
                if key != "time"
            }
        }
    if isinstance(value, list):
        return {"list": describe(value[0], depth + 1) if value else "empty"}
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _section(value: Any) -> Any:
    # result_time entries are compared by time_blocks(); here only list-vs-object and the command keys.
    return {"object": list(value)} if isinstance(value, dict) else {"list": len(value)}


def time_blocks(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "time" and isinstance(item, dict):
                yield item
            elif key == "result_time":
                yield from (item.values() if isinstance(item, dict) else item)
            else:
                yield from time_blocks(item)
    elif isinstance(value, list):
        for item in value:
            yield from time_blocks(item)


def assert_same_shape(recorded: Any, served: Any) -> None:
    assert describe(served) == describe(recorded)
    recorded_times, served_times = list(time_blocks(recorded)), list(time_blocks(served))
    assert len(served_times) == len(recorded_times)
    for rec, got in zip(recorded_times, served_times, strict=True):
        assert set(rec) <= set(got) and set(got) >= TIME_KEYS
        assert set(got) == TIME_KEYS | {"operating_reset_at"}


@pytest.fixture(scope="module")
def real() -> Iterator[Sandbox]:
    with Sandbox(seed=5, leads=160, deals=40, contacts=20, companies=10, users=5, tasks=120) as portal:
        yield portal


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def post(portal: Sandbox, session: requests.Session, method: str, body: Any) -> Any:
    r = session.post(portal.webhook_url + method, json=body)
    return r.json()


def test_every_fixture_is_replayed_or_explained() -> None:
    names = {path.stem for path in FIXTURES.glob("*.json")}
    replayed = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    replayed |= {"crm_dealcategory_stage_list", "crm_dealcategory_stage_list_batch_of_one"}  # parametrized
    assert names - set(NOT_REPLAYED) <= replayed
    assert set(NOT_REPLAYED) <= names


def test_batch_list_empty(real: Sandbox, session: requests.Session) -> None:
    served = post(
        real, session, "batch", {"halt": 0, "cmd": {"order0000000000": "crm.lead.list?filter[>ID]=99999999"}}
    )
    assert_same_shape(load("batch_list_empty"), served)


def test_call_single_success(real: Sandbox, session: requests.Session) -> None:
    served = post(real, session, "batch", {"halt": 0, "cmd": {"order0": "crm.lead.get?ID=1"}})
    assert_same_shape(load("call_single_success"), served)


def test_call_several_success(real: Sandbox, session: requests.Session) -> None:
    cmd = {f"order{i}": f"crm.lead.get?ID={i + 1}" for i in range(3)}
    assert_same_shape(load("call_several_success"), post(real, session, "batch", {"halt": 0, "cmd": cmd}))


def test_crm_get_batch_mix_success_and_errors(real: Sandbox, session: requests.Session) -> None:
    # Keys "0","1" (errors) make result_error a list; the success at a non-sequential key stays an object.
    cmd = {"0": "crm.lead.get", "1": "crm.lead.get?ID=99999999", "35": "crm.lead.get?ID=35"}
    recorded = load("crm_get_batch_mix_success_and_errors")
    recorded["result"]["result"] = {"35": recorded["result"]["result"]["35943"]}
    recorded["result"]["result_time"] = {"35": recorded["result"]["result_time"]["35943"]}
    served = post(real, session, "batch", {"halt": 0, "cmd": cmd})
    assert_same_shape(recorded, served)
    assert [e["error"] for e in served["result"]["result_error"]] == ["", ""]


def test_crm_get_batch_of_two_error(real: Sandbox, session: requests.Session) -> None:
    served = post(real, session, "batch", {"halt": 0, "cmd": ["crm.lead.get", "crm.lead.get?ID=99999999"]})
    assert_same_shape(load("crm_get_batch_of_two_error"), served)
    assert served["result"]["result_error"][0]["error_description"] == "ID is not defined or invalid."


def test_crm_lead_get_batch_error(real: Sandbox, session: requests.Session) -> None:
    served = post(real, session, "batch", {"halt": 0, "cmd": ["crm.lead.get"]})
    assert_same_shape(load("crm_lead_get_batch_error"), served)


def test_crm_contact_add_batch(real: Sandbox, session: requests.Session) -> None:
    cmd = {"order0000000000": "crm.contact.add?fields[NAME]=Ann"}
    assert_same_shape(load("crm_contact_add_batch"), post(real, session, "batch", {"halt": 0, "cmd": cmd}))


def test_lists_element_add_batch(real: Sandbox, session: requests.Session) -> None:
    # lists.element.add is not emulated; crm.contact.add is the same shape (an int id per command).
    cmd = {f"order000000000{i}": f"crm.contact.add?fields[NAME]=N{i}" for i in range(2)}
    assert_same_shape(load("lists_element_add_batch"), post(real, session, "batch", {"halt": 0, "cmd": cmd}))


def test_crm_item_add(real: Sandbox, session: requests.Session) -> None:
    cmd = {"order0000000000": "crm.item.add?entityTypeId=2&fields[title]=New"}
    assert_same_shape(load("crm_item_add"), post(real, session, "batch", {"halt": 0, "cmd": cmd}))


def test_crm_item_list(real: Sandbox, session: requests.Session) -> None:
    body = {"entityTypeId": 2, "select": ["id", "title"], "filter": {"<=id": 3}}
    assert_same_shape(load("crm_item_list"), post(real, session, "crm.item.list", body))


def test_crm_item_productrow_list(real: Sandbox, session: requests.Session) -> None:
    owner = next(row["ownerId"] for row in real.rows("deal_products"))
    # '=' inside a key must be percent-encoded: PHP splits each pair at its first '=' (as every SDK encodes it).
    cmd = {"cmd0000000000": f"crm.item.productrow.list?filter[%3DownerType]=D&filter[%3DownerId]={owner}"}
    assert_same_shape(load("crm_item_productrow_list"), post(real, session, "batch", {"halt": 0, "cmd": cmd}))


def test_crm_lead_list_one_page_success(real: Sandbox, session: requests.Session) -> None:
    body = {"select": ["ID", "TITLE"], "filter": {"<=ID": 39}, "order": {"ID": "ASC"}}
    served = post(real, session, "crm.lead.list", body)
    assert_same_shape(load("crm_lead_list_one_page_success"), served)
    assert list(served) == ["result", "total", "time"]


def test_crm_lead_list_several_pages_success(real: Sandbox, session: requests.Session) -> None:
    recorded = load("crm_lead_list_several_pages_success")
    first = post(real, session, "crm.lead.list", {"select": ["ID", "TITLE"], "order": {"ID": "ASC"}})
    assert_same_shape(recorded[0], first)
    assert first["next"] == 50 and first["total"] == 160
    cmd = {
        f"cmd{i}": f"crm.lead.list?select[0]=ID&select[1]=TITLE&order[ID]=ASC&start={50 * (i + 1)}"
        for i in range(3)
    }
    served = post(real, session, "batch", {"halt": 0, "cmd": cmd})
    # The recording's batches are all full; ours ends at the last page, which has no result_next (§4.2).
    assert describe(served["result"]["result"]) == describe(
        {key: recorded[1]["result"]["result"]["cmd0"] for key in cmd}
    )
    assert list(served["result"]["result_next"]) == ["cmd0", "cmd1"]
    assert served["result"]["result_total"] == {key: 160 for key in cmd}


def test_get_all_tasks(real: Sandbox, session: requests.Session) -> None:
    recorded = load("get_all_tasks")
    first = post(real, session, "tasks.task.list", {"select": ["ID", "STATUS"], "order": {"ID": "ASC"}})
    assert describe(first) == describe(recorded[0])
    assert first["next"] == 50 and first["total"] == 120
    cmd = {
        f"cmd000000000{i}": f"tasks.task.list?select[0]=ID&order[ID]=ASC&start={50 * (i + 1)}"
        for i in range(2)
    }
    served = post(real, session, "batch", {"halt": 0, "cmd": cmd})
    rec = recorded[1]["result"]
    assert list(served["result"]) == list(rec)
    assert describe(served["result"]["result"]["cmd0000000000"]) == describe(rec["result"]["cmd0000000000"])
    assert list(served["result"]["result_next"]) == ["cmd0000000000"]  # the last page has none, as recorded
    assert "cmd0000000030" not in rec["result_next"] and "cmd0000000030" in rec["result_total"]


def test_single_add(real: Sandbox, session: requests.Session) -> None:
    body = {"fields": {"TITLE": "Алм", "RESPONSIBLE_ID": 1}}
    served = post(real, session, "tasks.task.add", body)
    assert describe(served)["object"]["result"]["object"].keys() == {"task"}
    assert (
        describe(served)["object"]["result"]["object"]["task"]
        == describe(load("single_add"))["object"]["result"]["object"]["task"]
    )


def test_crm_lead_fields_success(real: Sandbox, session: requests.Session) -> None:
    served = post(real, session, "crm.lead.fields", {})
    recorded = load("crm_lead_fields_success")
    assert set(served) == set(recorded)
    common = set(served["result"]) & set(recorded["result"])
    assert {"ID", "TITLE", "NAME", "STATUS_ID", "OPPORTUNITY"} <= common
    core = {"type", "isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic", "title"}
    for name in common:
        ours, theirs = served["result"][name], recorded["result"][name]
        assert core & set(theirs) <= set(ours), name
        assert all(describe(ours[key]) == describe(theirs[key]) for key in core & set(theirs)), name


def test_user_fields(real: Sandbox, session: requests.Session) -> None:
    served = post(real, session, "user.fields", {})
    recorded = load("user_fields")
    assert set(served) == set(recorded)
    assert all(isinstance(v, str) for v in served["result"].values())
    assert {"ID", "NAME", "LAST_NAME", "EMAIL"} <= set(served["result"])


def test_call_batch(real: Sandbox, session: requests.Session) -> None:
    # The recording has no request; its two sections are the lead statuses and the sources directory.
    cmd = {
        "statuses": "crm.status.entity.items?entityId=STATUS",
        "sources": "crm.status.entity.items?entityId=SOURCE",
    }
    served = post(real, session, "batch", {"halt": 0, "cmd": cmd})
    recorded = load("call_batch")
    assert_same_shape(recorded, served)
    for key in cmd:
        row_keys = {tuple(sorted(row)) for row in served["result"]["result"][key]}
        assert row_keys == {tuple(sorted(row)) for row in recorded["result"]["result"][key]}
        assert all(isinstance(row["SORT"], int) for row in served["result"]["result"][key])


def test_crm_category_list(real: Sandbox, session: requests.Session) -> None:
    served = post(real, session, "crm.category.list", {"entityTypeId": 2})
    recorded = load("crm_category_list")
    assert list(served) == list(recorded)
    assert served["total"] == len(served["result"]["categories"])
    rec_rows, got_rows = recorded["result"]["categories"], served["result"]["categories"]
    # The default pipeline has no origin keys; every other one has the full set, as recorded.
    assert set(got_rows[0]) == set(rec_rows[0]) and got_rows[0]["isDefault"] == "Y"
    assert {tuple(sorted(r)) for r in got_rows[1:]} == {tuple(sorted(r)) for r in rec_rows[1:]}
    assert [type(v).__name__ for v in got_rows[1].values()] == [
        type(rec_rows[1][k]).__name__ for k in got_rows[1]
    ]


@pytest.mark.parametrize("name", ["crm_dealcategory_stage_list", "crm_dealcategory_stage_list_batch_of_one"])
def test_dealcategory_stage_list_requests(name: str, real: Sandbox, session: requests.Session) -> None:
    raw = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    request = raw["request"].get("params", raw["request"])
    # The recorded portal has pipelines 2, 4 and 8; the sandbox has 0 and 1, so those commands ask for 1.
    request["cmd"] = {
        key: cmd
        if cmd.startswith("crm.dealcategory.stage.list?ID=0&")
        else "crm.dealcategory.stage.list?ID=1&"
        for key, cmd in request["cmd"].items()
    }
    served = post(real, session, "batch", request)
    recorded = raw["response"]
    assert_same_shape(recorded, served)
    assert served.keys() == recorded.keys()
    for key, rows in (
        served["result"]["result"].items() if isinstance(served["result"]["result"], dict) else ()
    ):
        assert [r["STATUS_ID"].startswith("C1:") for r in rows] == [key != "0"] * len(rows)
