"""The committed docs corpus (tests/fixtures/docs-responses/) and how a documented request is replayed on a
sandbox portal whose ids differ from the docs' examples (no I/O)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "docs-responses"


@dataclass(frozen=True, slots=True)
class Record:
    """One method's documented example: page, request, answer and error answer."""

    version: int
    method: str
    page: str
    request: Any
    response: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def key(self) -> str:
        return f"v{self.version} {self.method}"


def records() -> list[Record]:
    out = []
    for path in sorted((CORPUS / "methods").glob("v*/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out.append(
            Record(
                data["version"],
                data["method"],
                data["page"],
                data["request"],
                data["response"],
                data["error"],
            )
        )
    return out


def catalogue(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / "catalogues" / name).read_text(encoding="utf-8"))
    return data


# What the replay changes in a documented request so that it names rows the sandbox has. The docs' examples
# use ids of their own portal (task 8017, deal 351, smart process 1268…); the sandbox generates ids from 1.
# Each entry: (path of keys, new value). Everything else is sent as documented.
SUBSTITUTIONS: dict[str, list[tuple[tuple[str | int, ...], Any]]] = {
    "v2 crm.activity.add": [(("fields", "OWNER_ID"), 1)],
    "v2 crm.activity.delete": [(("id",), 5)],
    "v2 crm.activity.list": [(("filter", "OWNER_ID"), "ACTIVITY_CONTACT")],
    "v2 crm.activity.update": [(("id",), 6)],
    "v2 crm.company.delete": [(("ID",), 5)],
    "v2 crm.company.get": [(("ID",), 6)],
    "v2 crm.company.update": [(("ID",), 7)],
    "v2 crm.contact.delete": [(("ID",), 5)],
    "v2 crm.contact.get": [(("ID",), 6)],
    "v2 crm.contact.update": [
        (("ID",), 7),
        (("FIELDS", "COMPANY_ID"), 1),
        (("FIELDS", "COMPANY_IDS"), [2, 3]),
    ],
    "v2 crm.deal.delete": [(("ID",), 5)],
    "v2 crm.deal.get": [(("ID",), 6)],
    "v2 crm.deal.update": [(("ID",), 7)],
    "v2 crm.deal.add": [(("FIELDS", "COMPANY_ID"), 1), (("FIELDS", "CONTACT_IDS"), [1, 2])],
    "v2 crm.lead.delete": [(("id",), "5")],
    "v2 crm.lead.get": [(("ID",), 6)],
    "v2 crm.lead.update": [(("id",), 7)],
    "v2 crm.item.delete": [(("entityTypeId",), 2), (("id",), 8)],
    "v2 crm.item.fields": [(("entityTypeId",), 2)],
    "v2 crm.item.get": [(("id",), 9)],
    "v2 crm.item.update": [(("id",), 10), (("fields", "stageId"), "PREPARATION")],
    "v2 crm.item.add": [
        (("fields", "categoryId"), 0),
        (("fields", "stageId"), "NEW"),
        (("fields", "companyId"), 1),
        (("fields", "contactId"), 1),
        (("fields", "contactIds"), [1, 2]),
        # The docs' request holds JavaScript (`formatDate(monthAgo)`) where the dates go.
        (("fields", "begindate"), "2025-05-01T00:00:00+03:00"),
        (("fields", "closedate"), "2025-07-01T00:00:00+03:00"),
    ],
    "v2 crm.item.productrow.add": [(("fields", "ownerId"), "PRODUCT_OWNER")],
    "v2 crm.item.productrow.delete": [(("id",), "PRODUCT_ROW")],
    "v2 crm.item.productrow.get": [(("id",), "PRODUCT_ROW")],
    "v2 crm.item.productrow.list": [(("filter", "=ownerId"), "PRODUCT_OWNER")],
    "v2 crm.item.productrow.update": [(("id",), "PRODUCT_ROW")],
    "v2 tasks.task.delete": [(("taskId",), 5)],
    "v2 tasks.task.get": [(("taskId",), 6)],
    "v2 tasks.task.update": [(("taskId",), 7), (("fields", "RESPONSIBLE_ID"), 1)],
    "v2 tasks.task.add": [(("fields", "CREATED_BY"), 1), (("fields", "RESPONSIBLE_ID"), 2)],
    "v2 tasks.task.list": [(("filter", "RESPONSIBLE_ID"), 1)],
    "v2 tasks.task.result.list": [(("taskId",), "RESULT_TASK")],
    "v2 user.get": [(("start",), 0)],
    "v3 tasks.task.add": [(("fields", "creatorId"), 1)],
    "v3 tasks.task.delete": [(("id",), 5)],
    "v3 tasks.task.get": [(("id",), 6)],
    "v3 tasks.task.update": [(("id",), 7), (("fields", "creatorId"), 1)],
    "v3 tasks.task.list": [(("filter", 0, 2), 1)],
    "v3 tasks.task.result.list": [(("filter", 0, 1), "RESULT_TASK")],
}


def adapted_request(record: Record, placeholders: dict[str, Any]) -> Any:
    """The documented request with `SUBSTITUTIONS` applied (string placeholders resolved from the portal)."""
    params = copy.deepcopy(record.request)
    for path, value in SUBSTITUTIONS.get(record.key, []):
        node = params
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = placeholders.get(value, value) if isinstance(value, str) else value
    return params
