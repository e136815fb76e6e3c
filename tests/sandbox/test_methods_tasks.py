"""Tasks through PortalState.dispatch (no HTTP): v3 tasks.task.* / tasks.task.result.list and v2 tasks.task.*."""

from __future__ import annotations

from typing import Any

import pytest

from bitrix24_source.sandbox.state import PortalState
from bitrix24_source.sandbox.types import ApiError, CallContext, CostModel, MethodResult, SeedCounts

V3 = "BITRIX_REST_V3_EXCEPTION_"
COUNTS = SeedCounts(leads=10, deals=10, contacts=10, companies=5, users=6, tasks=130, results_per_task=(0, 4))


def v3(state: PortalState, method: str, params: dict[str, Any]) -> MethodResult:
    return state.dispatch(3, method, params, CallContext(version=3))


def v2(state: PortalState, method: str, params: dict[str, Any], start: int | None = None) -> MethodResult:
    return state.dispatch(
        2, method, params, CallContext(version=2, start=start or 0, start_given=start is not None)
    )


def v3_error(state: PortalState, method: str, params: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        v3(state, method, params)
    return info.value


def v2_error(state: PortalState, method: str, params: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        v2(state, method, params)
    return info.value


@pytest.fixture(scope="module")
def ro() -> PortalState:
    return PortalState(seed=31, counts=COUNTS, cost_model=CostModel())


@pytest.fixture
def rw() -> PortalState:
    return PortalState(seed=32, counts=COUNTS, cost_model=CostModel(), v3_limits={"tasks.task.list": 20})


@pytest.fixture
def legacy() -> PortalState:
    """The older, invented task field-list words and full v3 add answer: these tests pin what
    `catalogue="legacy"` still serves; tests/conformance checks the documented default."""
    return PortalState(
        seed=32, counts=COUNTS, cost_model=CostModel(), v3_limits={"tasks.task.list": 20}, catalogue="legacy"
    )


def ids(result: MethodResult) -> list[int]:
    return [r["id"] for r in result.result["items"]]


# --- v3 tasks.task.list ------------------------------------------------------------------------------------


def test_list_without_select_returns_only_ids_and_caps_at_50(ro: PortalState) -> None:
    page = v3(ro, "tasks.task.list", {})
    assert set(page.result) == {"items"} and page.total is None and page.next is None
    assert page.result["items"] == [{"id": i} for i in range(1, 51)] and page.rows == 50


@pytest.mark.parametrize(
    ("pagination", "expected"),
    [
        ({"limit": 10}, list(range(1, 11))),
        ({"limit": 51}, list(range(1, 51))),  # clamped to the cap (§5.2, GH#531)
        ({"limit": "5", "page": "3"}, list(range(11, 16))),
        ({"page": 0, "limit": 4}, [1, 2, 3, 4]),
        ({"page": 1, "limit": 4}, [1, 2, 3, 4]),
        ({"page": 2, "limit": 4, "offset": 100}, [5, 6, 7, 8]),
        ({"offset": 125}, list(range(126, 131))),
        ({"offset": 500}, []),
    ],
)
def test_pagination(ro: PortalState, pagination: dict[str, Any], expected: list[int]) -> None:
    assert ids(v3(ro, "tasks.task.list", {"pagination": pagination})) == expected


@pytest.mark.parametrize(
    ("pagination", "code", "status"),
    [
        ({"limit": 0}, "INVALIDPAGINATIONEXCEPTION", 400),
        ({"limit": "abc"}, "INVALIDPAGINATIONEXCEPTION", 400),
        ({"page": -2}, "INVALIDPAGINATIONEXCEPTION", 400),
        ("nonsense", "INVALIDPAGINATIONEXCEPTION", 400),
        ({"limit": -1}, "INTERNAL_INTERNALEXCEPTION", 500),
    ],
)
def test_pagination_errors(ro: PortalState, pagination: Any, code: str, status: int) -> None:
    err = v3_error(ro, "tasks.task.list", {"pagination": pagination})
    assert (err.code, err.status) == (V3 + code, status)


def test_cap_is_configurable(rw: PortalState) -> None:
    assert len(ids(v3(rw, "tasks.task.list", {"pagination": {"limit": 1000}}))) == 20
    assert len(ids(v3(rw, "tasks.task.list", {}))) == 20


def test_keyset_walk(ro: PortalState) -> None:
    seen: list[int] = []
    cursor = 0
    while True:
        params = {
            "filter": [["id", ">", cursor]],
            "order": {"id": "ASC"},
            "pagination": {"page": 0, "limit": 50},
        }
        page = ids(v3(ro, "tasks.task.list", params))
        seen += page
        if len(page) < 50:
            break
        cursor = page[-1]
    assert seen == [t["id"] for t in ro.rows("tasks")]


@pytest.mark.parametrize(
    ("flt", "test"),
    [
        ([["id", 7]], lambda i: i == 7),
        ([["id", "=", "7"]], lambda i: i == 7),
        ([["id", "!=", 7], ["id", "<=", 10]], lambda i: i != 7 and i <= 10),
        ([["id", ">=", 120]], lambda i: i >= 120),
        ([["id", "<", 4]], lambda i: i < 4),
        ([["id", "in", [3, 5, 999]]], lambda i: i in (3, 5)),
        ([["id", "between", [10, 13]]], lambda i: 10 <= i <= 13),
        ([{"logic": "or", "conditions": [["id", [1, 2]], ["id", "in", [3, 4, 5]]]}], lambda i: i <= 5),
        (
            [
                ["id", "<", 20],
                {"logic": "and", "negative": True, "conditions": [["id", ">", 5], ["id", "<", 15]]},
            ],
            lambda i: i < 20 and not (5 < i < 15),
        ),
        ({"0": ["id", ">", 125]}, lambda i: i > 125),  # an int-keyed object is a list to PHP (§5.6)
    ],
)
def test_filter_grammar(ro: PortalState, flt: Any, test: Any) -> None:
    expected = [t["id"] for t in ro.rows("tasks") if test(t["id"])]
    assert ids(v3(ro, "tasks.task.list", {"filter": flt, "pagination": {"limit": 50}})) == expected[:50]


@pytest.mark.parametrize(
    ("flt", "code"),
    [
        ({">id": 5}, "INVALIDFILTEREXCEPTION"),  # the v2 dialect is rejected (§5.4, GH#113)
        ([["id"]], "INVALIDFILTEREXCEPTION"),
        ([["id", "like", 5]], "UNKNOWNFILTEROPERATOREXCEPTION"),
        ([["id", "><", [1, 2]]], "UNKNOWNFILTEROPERATOREXCEPTION"),
        ([["stageId", "=", 5]], "UNKNOWNDTOPROPERTYEXCEPTION"),
        ([["title", "=", "x"]], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),  # only `id` is Filterable
        ([["id", "in", []]], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
        ([["id", "between", [1]]], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
        ([["id", ">", "abc"]], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ],
)
def test_filter_errors(ro: PortalState, flt: Any, code: str) -> None:
    err = v3_error(ro, "tasks.task.list", {"filter": flt})
    assert err.code == V3 + code and err.status == 400
    if code.startswith("VALIDATION"):
        assert err.validation and err.validation[0]["field"]


def test_unknown_field_message(ro: PortalState) -> None:
    err = v3_error(ro, "tasks.task.list", {"filter": [["stageId", 1]]})
    assert err.description == "Unknown field `stageId` for entity `TaskDto`"


def test_order_and_select(ro: PortalState) -> None:
    rows = ro.rows("tasks")
    desc = v3(ro, "tasks.task.list", {"order": {"id": "DESC"}, "pagination": {"limit": 5}})
    assert ids(desc) == [t["id"] for t in rows][::-1][:5]
    by_created = v3(ro, "tasks.task.list", {"order": {"created": "ASC"}, "select": ["id", "created"]})
    assert ids(by_created) == [t["id"] for t in sorted(rows, key=lambda t: (t["created"], t["id"]))][:50]
    page = v3(
        ro, "tasks.task.list", {"select": ["title", "status", "noSuchField", "responsible.name", "creator"]}
    )
    first, task = page.result["items"][0], rows[0]
    assert list(first) == ["id", "title", "status", "responsible", "creator"]
    user = next(u for u in ro.rows("users") if u["ID"] == str(task["creatorId"]))
    assert first["creator"]["id"] == task["creatorId"]
    assert first["creator"]["name"] == f"{user['NAME']} {user['LAST_NAME']}"
    assert set(first["responsible"]) == {"name"}
    err = v3_error(ro, "tasks.task.list", {"select": ["responsible.stageId"]})
    assert (err.code, err.description) == (
        V3 + "UNKNOWNDTOPROPERTYEXCEPTION",
        "Unknown field `stageId` for entity `UserDto`",
    )
    assert v3_error(ro, "tasks.task.list", {"order": {"id": "UP"}}).code == V3 + "INVALIDORDEREXCEPTION"
    assert (
        v3_error(ro, "tasks.task.list", {"order": {"nope": "ASC"}}).code == V3 + "UNKNOWNDTOPROPERTYEXCEPTION"
    )


# --- v3 get / add / update / delete ---------------------------------------------------------------------------


def test_get(ro: PortalState) -> None:
    task = ro.rows("tasks")[4]
    item = v3(ro, "tasks.task.get", {"id": task["id"]}).result["item"]
    assert item["id"] == task["id"] and item["title"] == task["title"] and item["status"] == task["status"]
    assert "crmItemIds" not in item and "created" in item
    selected = v3(ro, "tasks.task.get", {"id": str(task["id"]), "select": ["crmItemIds"]}).result["item"]
    assert selected == {"id": task["id"], "crmItemIds": task["crmItemIds"]}
    err = v3_error(ro, "tasks.task.get", {"id": 99999})
    assert (err.code, err.description) == (
        V3 + "ENTITYNOTFOUNDEXCEPTION",
        "Record with ID = `99999` not found",
    )
    missing = v3_error(ro, "tasks.task.get", {})
    assert missing.code == V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION"
    assert missing.validation == [{"field": "id", "message": "Required field `id` is not specified"}]


def test_add_update_delete(legacy: PortalState) -> None:
    fields = {"title": "Call back", "creatorId": 2, "responsibleId": "3", "deadline": "2025-12-31T23:59:59+02:00",
              "crmItemIds": ["D_1", "L_2"], "priority": "high"}  # fmt: skip
    item = v3(legacy, "tasks.task.add", {"fields": fields}).result["item"]
    assert item["id"] == 131 and (item["status"], item["priority"]) == ("pending", "high")
    assert (item["creatorId"], item["responsibleId"], item["crmItemIds"]) == (2, 3, ["D_1", "L_2"])
    assert item["deadline"] == "2026-01-01T00:59:59+03:00" and item["closed"] is None
    legacy.advance_clock(30)
    assert v3(legacy, "tasks.task.update", {"id": 131, "fields": {"status": "completed"}}).result == {
        "result": True
    }
    after = v3(
        legacy, "tasks.task.get", {"id": 131, "select": ["status", "changed", "closed", "created"]}
    ).result["item"]
    assert (
        after["status"] == "completed"
        and after["changed"] > after["created"]
        and after["closed"] == after["changed"]
    )
    creator = v3_error(legacy, "tasks.task.update", {"id": 131, "fields": {"creatorId": 4}})
    assert creator.validation == [
        {
            "field": "creatorId",
            "message": "In DTO `TaskDto`, the field `creatorId` requires the presence of the `Editable` attribute "
            "for such a request",
        }
    ]
    assert (
        v3_error(legacy, "tasks.task.update", {"id": 9999, "fields": {"title": "x"}}).code
        == V3 + "ACCESSDENIEDEXCEPTION"
    )
    with_results = next(r["taskId"] for r in legacy.rows("task_results"))
    assert v3(legacy, "tasks.task.delete", {"id": with_results}).result == {"result": True}
    assert v3_error(legacy, "tasks.task.get", {"id": with_results}).code == V3 + "ENTITYNOTFOUNDEXCEPTION"
    assert all(r["taskId"] != with_results for r in legacy.rows("task_results"))


@pytest.mark.parametrize(
    ("fields", "validation"),
    [
        (
            {"title": "x"},
            [
                ("creatorId", "Required field `creatorId` is not specified"),
                ("responsibleId", "Required field `responsibleId` is not specified"),
            ],
        ),
        (
            {"title": "x", "creatorId": 1, "responsibleId": 1, "deadline": "soon"},
            [("deadline", "Field `deadline` requires data type `DateTime` for this request")],
        ),
        (
            {"title": "x", "creatorId": 1, "responsibleId": 1, "status": "lost"},
            [("status", "Field `status` requires data type `enum` for this request")],
        ),
        (
            {"title": "x", "creatorId": 1, "responsibleId": 1, "id": 5},
            [
                (
                    "id",
                    "In DTO `TaskDto`, the field `id` requires the presence of the `Editable` attribute for such "
                    "a request",
                )
            ],
        ),
    ],
)
def test_add_validation(rw: PortalState, fields: dict[str, Any], validation: list[tuple[str, str]]) -> None:
    err = v3_error(rw, "tasks.task.add", {"fields": fields})
    assert err.code == V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION" and err.status == 400
    assert [(v["field"], v["message"]) for v in err.validation or []] == validation
    assert len(rw.rows("tasks")) == 130


# --- v3 tasks.task.result.list ------------------------------------------------------------------------------


def test_result_list(ro: PortalState) -> None:
    results = ro.rows("task_results")
    task_ids = sorted({r["taskId"] for r in results})[:6]
    page = v3(ro, "tasks.task.result.list", {"filter": [["taskId", "in", task_ids]]})
    expected = [r for r in results if r["taskId"] in task_ids]
    assert [r["id"] for r in page.result["items"]] == [r["id"] for r in expected]
    assert set(page.result["items"][0]) == {
        "id",
        "taskId",
        "text",
        "authorId",
        "createdAt",
        "updatedAt",
        "status",
        "messageId",
    }
    one = v3(ro, "tasks.task.result.list", {"filter": [["taskId", task_ids[0]]], "select": ["id", "text"],
                                             "order": {"createdAt": "DESC"}})  # fmt: skip
    mine = [r for r in results if r["taskId"] == task_ids[0]]
    assert one.result["items"] == [
        {"id": r["id"], "text": r["text"]}
        for r in sorted(sorted(mine, key=lambda r: r["id"]), key=lambda r: r["createdAt"], reverse=True)
    ]
    capped = v3(
        ro,
        "tasks.task.result.list",
        {"filter": [["taskId", "in", list(range(1, 131))]], "pagination": {"limit": 500}},
    )
    assert capped.rows == 50


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({}, "VALIDATION_REQUESTVALIDATIONEXCEPTION", "filter"),
        ({"filter": []}, "VALIDATION_REQUESTVALIDATIONEXCEPTION", "filter"),
        ({"filter": [["id", ">", 1]]}, "VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION", "filter.taskId"),
        (
            {"filter": [{"logic": "or", "conditions": [["taskId", 1]]}]},
            "VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION",
            "filter.taskId",
        ),
        ({"filter": [["taskId", "in", []]]}, "VALIDATION_REQUESTVALIDATIONEXCEPTION", "taskId"),
        ({"filter": [["taskId", 1]], "select": ["nope"]}, "UNKNOWNDTOPROPERTYEXCEPTION", None),
        ({"filter": [["taskId", 1], ["text", "=", "x"]]}, "UNKNOWNDTOPROPERTYEXCEPTION", None),
    ],
)
def test_result_list_errors(ro: PortalState, params: dict[str, Any], code: str, field: str | None) -> None:
    if code == "UNKNOWNDTOPROPERTYEXCEPTION" and "select" not in params:
        code = "VALIDATION_REQUESTVALIDATIONEXCEPTION"  # `text` exists on ResultDto but is not filterable
        field = "text"
    err = v3_error(ro, "tasks.task.result.list", params)
    assert err.code == V3 + code and err.status == 400
    if field is not None:
        assert err.validation and err.validation[0]["field"] == field


def test_field_list(legacy: PortalState) -> None:
    items = {f["name"]: f for f in v3(legacy, "tasks.task.field.list", {}).result["items"]}
    assert (
        items["id"]["filterable"] and not items["title"]["filterable"] and not items["creatorId"]["editable"]
    )


# --- v2 tasks.task.* ----------------------------------------------------------------------------------------------


def test_v2_list_strings_paging_and_filters(ro: PortalState) -> None:
    first = v2(ro, "tasks.task.list", {"order": {"ID": "ASC"}, "select": ["ID", "TITLE", "STATUS"]}, 0)
    assert set(first.result) == {"tasks"} and (first.total, first.next) == (130, 50)
    row, task = first.result["tasks"][0], ro.rows("tasks")[0]
    assert (
        row["id"] == "1" and row["title"] == task["title"] and row["group"] == [] and row["subStatus"] == "-1"
    )
    assert row["status"] == {"pending": "2", "in_progress": "3", "supposedly_completed": "4", "completed": "5",
                             "deferred": "6", "declined": "7"}[task["status"]]  # fmt: skip
    keyset = v2(ro, "tasks.task.list", {"filter": {">ID": 120}, "order": {"ID": "asc"}, "select": ["ID"]}, -1)
    assert (keyset.total, keyset.next) == (0, None)
    assert [t["id"] for t in keyset.result["tasks"]] == [str(i) for i in range(121, 131)]
    done = v2(ro, "tasks.task.list", {"filter": {"STATUS": 5, "!RESPONSIBLE_ID": 1}, "order": {"ID": "DESC"}})
    expected = [
        t["id"] for t in reversed(ro.rows("tasks")) if t["status"] == "completed" and t["responsibleId"] != 1
    ]
    assert [int(t["id"]) for t in done.result["tasks"]] == expected[:50] and done.total == len(expected)
    changed = v2(
        ro, "tasks.task.list", {"filter": {">=CHANGED_DATE": "2024-06-01"}, "select": ["ID", "CHANGED_DATE"]}
    )
    assert changed.total == sum(1 for t in ro.rows("tasks") if t["changed"] >= "2024-06-01T00:00:00+03:00")
    err = v2_error(ro, "tasks.task.list", {"order": {"BOGUS": "ASC"}})
    assert (err.code, err.description) == ("0", "Invalid sorting key (internal error)")


def test_v2_get_add_update_delete(rw: PortalState) -> None:
    got = v2(rw, "tasks.task.get", {"taskId": 3}).result["task"]
    assert got["id"] == "3" and got["creator"]["id"] == str(rw.rows("tasks")[2]["creatorId"])
    added = v2(rw, "tasks.task.add", {"fields": {"TITLE": "From v2", "RESPONSIBLE_ID": "4", "PRIORITY": "2",
                                                  "UF_CRM_TASK": ["C_1"], "DEADLINE": "2025-03-01T10:00:00+03:00"}})  # fmt: skip
    task = added.result["task"]
    assert (task["id"], task["title"], task["responsibleId"], task["priority"], task["status"]) == (
        "131",
        "From v2",
        "4",
        "2",
        "2",
    )
    assert task["ufCrmTask"] == ["C_1"] and task["createdBy"] == "1"
    assert v3(rw, "tasks.task.get", {"id": 131, "select": ["priority", "crmItemIds"]}).result["item"] == {
        "id": 131,
        "priority": "high",
        "crmItemIds": ["C_1"],
    }
    updated = v2(rw, "tasks.task.update", {"taskId": 131, "fields": {"STATUS": 5}}).result["task"]
    assert updated["status"] == "5" and updated["closedDate"] is not None
    assert v2(rw, "tasks.task.delete", {"taskId": 131}).result == {"task": True}
    # DOCS tasks-task-update.md / tasks-task-delete.md "Possible Error Codes" (a deleted task is out of reach).
    assert v2_error(rw, "tasks.task.get", {"taskId": 131}).code == "0"
    assert v2_error(rw, "tasks.task.update", {"taskId": 131, "fields": {"TITLE": "x"}}).description == (
        "Action on the task is not allowed (internal error)"
    )
    assert v2_error(rw, "tasks.task.delete", {"taskId": 131}).code == "1048582"
    assert (
        v2_error(rw, "tasks.task.get", {"taskId": "abc"}).code,
        v2_error(rw, "tasks.task.get", {}).code,
    ) == (
        "0",
        "100",
    )
    assert v2_error(rw, "tasks.task.update", {"taskId": 3, "fields": {}}).description == (
        "Could not find value for parameter {fields} (internal error)"
    )
    assert v2_error(rw, "tasks.task.update", {"taskId": 3, "fields": {"STATUS": 99}}).description == (
        "Invalid status<br>"
    )
    no_title = v2_error(rw, "tasks.task.add", {"fields": {"RESPONSIBLE_ID": 1}})
    assert (no_title.code, no_title.description) == ("ERROR_CORE", "Task title is not specified<br>")


def test_v2_getfields_describes_every_v2_field_and_value(ro: PortalState) -> None:
    fields = v2(ro, "tasks.task.getfields", {}).result["fields"]
    # Every described field can be selected: it comes back under its camelCase name (§7.4).
    row = v2(ro, "tasks.task.list", {"select": list(fields)}).result["tasks"][0]
    camel = {"".join(p.capitalize() if i else p.lower() for i, p in enumerate(k.split("_"))) for k in fields}
    assert camel <= set(row)
    # DOCS tasks-task-get-fields.md: UPPER_CASE keys, each with title and type; `required` on the three
    # mandatory inputs, `primary` on ID.
    assert all({"title", "type"} <= set(spec) for spec in fields.values())
    assert [k for k, v in fields.items() if v.get("primary")] == ["ID"]
    assert {k for k, v in fields.items() if v.get("required")} == {"TITLE", "CREATED_BY", "RESPONSIBLE_ID"}
    stored = {t["status"] for t in ro.rows("tasks")}
    listed = {
        v2(ro, "tasks.task.get", {"taskId": t["id"]}).result["task"]["status"] for t in ro.rows("tasks")[:40]
    }
    assert len(stored) > 1 and listed <= set(fields["STATUS"]["values"])
    assert set(fields["PRIORITY"]["values"]) == {"0", "1", "2"}
    assert v2_error(ro, "tasks.task.fields", {}).code == "ERROR_METHOD_NOT_FOUND"
