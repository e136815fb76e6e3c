"""Pure tests of the classic-list keyset planning (crm.activity.list, crm.stagehistory.list). No I/O."""

from __future__ import annotations

from bitrix24_source.client.commands import CommandResult, ResultRef
from bitrix24_source.fields import FieldMeta
from bitrix24_source.source import queries
from bitrix24_source.source.history import history_spec
from bitrix24_source.source.schema import column_hints
from bitrix24_source.source.settings import ACTIVITIES


def test_activity_chain_filters_on_upper_case_id_and_references_the_bare_list() -> None:
    chain = queries.keyset_chain(
        ACTIVITIES, 70, length=2, select=("*",), extra_filter={">=LAST_UPDATED": "2026-01-01T00:00:00+00:00"}
    )
    method, p0 = chain["p0"]
    assert method == "crm.activity.list"
    assert p0 == {
        "filter": {">=LAST_UPDATED": "2026-01-01T00:00:00+00:00", ">ID": 70},
        "order": {"ID": "ASC"},
        "start": -1,
        "select": ["*"],
    }
    ref = chain["p1"][1]["filter"][">ID"]
    assert isinstance(ref, ResultRef)
    # crm.activity.list answers a bare list (crm-activity-list.md): no list-key segment
    assert ref == "$result[p0][49][ID]"


def test_history_chain_carries_the_entity_type_and_references_items() -> None:
    chain = queries.keyset_chain(history_spec(1036), 0, length=2, select=())
    _, p0 = chain["p0"]
    # no select: crm.stagehistory.list returns every field of the type
    assert p0 == {"filter": {">ID": 0}, "order": {"ID": "ASC"}, "start": -1, "entityTypeId": 1036}
    assert chain["p1"][1]["filter"][">ID"] == "$result[p0][items][49][ID]"


def test_classic_last_id_command_asks_for_the_id_only_in_reverse() -> None:
    method, params = queries.last_id_command(history_spec(2))
    assert method == "crm.stagehistory.list"
    assert params == {
        "filter": {">ID": 0},
        "order": {"ID": "DESC"},
        "start": -1,
        "entityTypeId": 2,
        "select": ["ID"],
    }
    answer = CommandResult(key="last", index=0, method=method, ok=True, result={"items": [{"ID": 35}]})
    assert queries.last_id_of(answer, history_spec(2)) == 35
    bare = CommandResult(key="last", index=0, method="crm.activity.list", ok=True, result=[{"ID": "20"}])
    assert queries.last_id_of(bare, ACTIVITIES) == 20


def test_split_chain_of_string_ids() -> None:
    full = [{"ID": str(i)} for i in range(1, 51)]
    short = [{"ID": "51"}]
    results = [
        CommandResult(key="p0", index=0, method="crm.activity.list", ok=True, result=full),
        CommandResult(key="p1", index=1, method="crm.activity.list", ok=True, result=short),
    ]
    chain = queries.split_chain(results, ACTIVITIES)
    assert chain.exhausted and chain.last_id == 51 and len(chain.pages) == 2


def test_activity_enumerations_are_integer_columns() -> None:
    # "The field value is an integer from a fixed set" (DOCS api-reference/crm/data-types.md)
    fields = {
        "OWNER_TYPE_ID": FieldMeta(name="OWNER_TYPE_ID", type="crm_enum_ownertype", title="Owner Type"),
        "DIRECTION": FieldMeta(name="DIRECTION", type="crm_enum_activitydirection", title="Direction"),
        "COMPLETED": FieldMeta(name="COMPLETED", type="char", title="Completed"),
    }
    hints = column_hints(fields)
    assert hints["OWNER_TYPE_ID"]["data_type"] == hints["DIRECTION"]["data_type"] == "bigint"
    assert hints["COMPLETED"]["data_type"] == "bool"
