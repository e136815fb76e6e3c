"""Seeded, realistic data for the sandbox portal.

Everything comes from one `random.Random(seed)`, in a fixed order, and timestamps are laid out before a fixed
anchor date, so the same seed and counts give the same portal on every machine. Links are consistent:
contacts and deals point at existing companies, deals and leads at contacts, every `assignedById`,
`creatorId` and `responsibleId` at an existing user, tasks' `crmItemIds` at existing CRM rows, product rows at
deals and task results at tasks.

It is long because the seeded random streams must generate every table in a fixed order; a split would make that
order (and so every seeded portal) depend on import order.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from bitrix24_source.sandbox.fields import (
    COMPANY_TYPES,
    CONTACT_TYPES,
    CRM_FIELDS,
    DEAL_STAGES,
    DEAL_TYPES,
    EMPLOYEES,
    INDUSTRIES,
    ITEM_TYPES,
    LEAD_STATUSES,
    SOURCES,
    stage_semantic,
    user_fields,
)
from bitrix24_source.sandbox.methods_activity import blank_activity
from bitrix24_source.sandbox.store import Table, iso
from bitrix24_source.sandbox.types import SeedCounts

T = TypeVar("T")

# 2025-06-01T00:00:00+03:00: generated history ends here and spans the two years before it.
ANCHOR = 1748725200
SPAN = 730 * 86400
DAY = 86400

_FIRST = (
    "Anna", "Boris", "Clara", "Dmitry", "Elena", "Fedor", "Galina", "Igor", "Julia", "Kirill", "Lena", "Maxim",
    "Nina", "Oleg", "Polina", "Roman", "Sofia", "Timur", "Ulyana", "Victor", "Yana", "Zakhar", "Alice", "Mark",
)  # fmt: skip
_LAST = (
    "Ivanov", "Petrov", "Smirnov", "Kuznetsov", "Popov", "Sokolov", "Lebedev", "Kozlov", "Novikov",
    "Morozov", "Volkov", "Solovyov", "Vasiliev", "Zaitsev", "Pavlov", "Semenov", "Golubev", "Vinogradov",
)  # fmt: skip
_FEMALE = frozenset(n for n in _FIRST if n.endswith("a")) | {"Alice"}
_POSITIONS = (
    "Sales manager",
    "Account manager",
    "Head of sales",
    "Support engineer",
    "Marketing lead",
    "CFO",
)
_CO_A = ("North", "Blue", "Silver", "Green", "Rapid", "Bright", "Prime", "Urban", "Polar", "Solid", "Delta")
_CO_B = ("wind", "stone", "line", "field", "works", "point", "bridge", "wave", "forge", "gate")
_CO_C = ("Logistics", "Systems", "Foods", "Retail", "Energy", "Media", "Consulting", "Labs", "Trade", "Group")
_CO_SUFFIX = ("LLC", "Ltd", "JSC", "Inc")
_PRODUCTS = tuple(
    (i + 101, f"{a} {b}", price)
    for i, (a, b, price) in enumerate(
        (a, b, float(p))
        for a in ("Laptop", "Monitor", "Licence", "Support plan", "Router", "Printer", "Training")
        for b, p in (("basic", 9900), ("pro", 24900), ("enterprise", 99000))
    )
)
PRODUCTS = _PRODUCTS  # the catalogue: crm.item.productrow.add names a row after its productId from here
_TASK_VERBS = ("Call", "Prepare", "Send", "Review", "Approve", "Update", "Check", "Schedule")
_TASK_OBJECTS = (
    "the contract",
    "an invoice",
    "the proposal",
    "a demo",
    "the estimate",
    "feedback",
    "the KPI report",
)
_TAGS = ("vip", "partner", "webinar", "expo-2024", "cold", "warm", "renewal")
# Weights make the stage mix look like a live pipeline: most rows in progress, some won, fewer lost.
_DEAL_STAGE_WEIGHTS = (30, 15, 10, 10, 5, 20, 10)
_LEAD_STATUS_WEIGHTS = (30, 25, 10, 15, 20)
_TASK_STATUS_WEIGHTS = (("pending", 30), ("in_progress", 25), ("supposedly_completed", 5), ("completed", 35),
                        ("deferred", 3), ("declined", 2))  # fmt: skip


def product_row(
    owner_id: int | None, product_id: int, name: str, price: float, quantity: float, sort: int
) -> dict[str, Any]:
    """A deal's product row in crm.item.productrow form (fixture crm_item_productrow_list.json), no discount."""
    return {
        "ownerId": owner_id,
        "ownerType": "D",
        "productId": product_id,
        "productName": name,
        "price": price,
        "priceAccount": price,
        "priceExclusive": price,
        "priceNetto": price,
        "priceBrutto": price,
        "quantity": quantity,
        "discountTypeId": 2,
        "discountRate": 0.0,
        "discountSum": 0.0,
        "taxRate": None,
        "taxIncluded": "Y",
        "customized": "Y",
        "measureCode": 796,
        "measureName": "pcs",
        "sort": sort,
        "xmlId": "",
        "type": 1,
    }


class _Gen:
    """One pass of the seeded generator over every table, in a fixed order.

    It is long because each table's generator must draw from the same stream in the same order (a method per
    table); splitting it would let the order, and so every seeded portal, change by accident.
    """

    def __init__(self, seed: int, counts: SeedCounts, tables: dict[str, Table]) -> None:
        self.rng = random.Random(seed)
        self.counts = counts
        self.t = tables
        self.fm_id = 0
        self.user_ids: list[int] = []
        self._cum: dict[tuple[tuple[Any, ...], tuple[int, ...]], list[int]] = {}
        self._ufs = {
            e: [(f.name, f.type, tuple(i for i, _ in f.items)) for f in user_fields(e)]
            for e in ("leads", "deals", "contacts", "companies")
        }

    # -- helpers ------------------------------------------------------------------------------------------
    # `pick`/`rint` instead of random.choice/randint: one `random()` call each, several times faster, and
    # just as deterministic for a given seed.
    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.rng.random() * len(seq))]

    def weighted(self, seq: Sequence[T], weights: Sequence[int]) -> T:
        key = (tuple(seq), tuple(weights))
        cum = self._cum.get(key)
        if cum is None:
            cum = self._cum[key] = list(itertools.accumulate(weights))
        return seq[bisect.bisect_right(cum, self.rng.random() * cum[-1])]

    def rint(self, lo: int, hi: int) -> int:
        return lo + int(self.rng.random() * (hi - lo + 1))

    def when(self, lo: int = ANCHOR - SPAN, hi: int = ANCHOR) -> int:
        return self.rint(lo, hi)

    def day(self, ts: int) -> str:
        return iso(ts - (ts + 3 * 3600) % DAY)

    def user(self) -> int:
        return self.pick(self.user_ids)

    def maybe(self, p: float) -> bool:
        return self.rng.random() < p

    def person(self) -> tuple[str, str]:
        first, last = self.pick(_FIRST), self.pick(_LAST)
        # Russian surnames agree with the first name's gender (Ivanov / Ivanova).
        return first, last + "a" if first in _FEMALE else last

    def fm(self, first: str, last: str, n: int) -> list[dict[str, Any]]:
        out = []
        self.fm_id += 1
        out.append({"id": self.fm_id, "typeId": "PHONE", "valueType": "WORK", "value": f"+7495{n:07d}"})
        if self.maybe(0.8):
            self.fm_id += 1
            email = f"{first.lower()}.{last.lower()}{n}@example.com"
            out.append({"id": self.fm_id, "typeId": "EMAIL", "valueType": "WORK", "value": email})
        return out

    def ufs(self, entity: str) -> dict[str, Any]:
        rnd = self.rng.random
        out: dict[str, Any] = {}
        for name, type_, items in self._ufs[entity]:
            filled = rnd() < 0.7
            if type_ == "enumeration":
                out[name] = items[int(rnd() * len(items))] if filled else None
            elif type_ == "double":
                out[name] = round(rnd() * 100, 2) if filled else None
            elif type_ == "boolean":
                out[name] = "Y" if rnd() < 0.3 else "N"
            elif type_ == "date":
                out[name] = self.day(self.when()) if filled else None
            elif type_ == "datetime":
                out[name] = iso(self.when()) if filled else None
            else:
                out[name] = [tag for tag in _TAGS if rnd() < 0.25] if filled else []
        return out

    def stamps(self, *, moved: bool) -> tuple[int, dict[str, Any]]:
        """(creation unix time, the creator/assignee/timestamp fields of a CRM row)."""
        created = self.when()
        updated = min(ANCHOR, created + self.rint(0, 90 * DAY))
        creator = self.user()
        out: dict[str, Any] = {
            "assignedById": self.user(),
            "createdBy": creator,
            "updatedBy": self.user() if updated > created else creator,
            "createdTime": iso(created),
            "updatedTime": iso(updated),
        }
        if moved:
            out["movedBy"] = out["updatedBy"]
            out["movedTime"] = iso(self.rint(created, updated))
        return created, out

    def guid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return "{" + f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" + "}"

    @staticmethod
    def tail() -> dict[str, Any]:
        return {"originatorId": None, "originId": None, "xmlId": None, "utmSource": None}

    # -- entities -----------------------------------------------------------------------------------------
    def users(self) -> None:
        table = self.t["users"]
        for n in range(1, max(1, self.counts.users) + 1):
            first, last = ("Admin", "Portal") if n == 1 else self.person()
            registered = self.when(ANCHOR - 3 * SPAN, ANCHOR - SPAN)
            changed = self.when(registered, ANCHOR)
            row = {
                "ID": None,
                "XML_ID": f"user-{n}",
                "ACTIVE": n == 1 or self.maybe(0.9),
                "NAME": first,
                "LAST_NAME": last,
                "SECOND_NAME": None,
                "EMAIL": f"{first.lower()}.{last.lower()}{n}@example.com",
                "LAST_LOGIN": iso(self.when(changed, ANCHOR)),
                "DATE_REGISTER": iso(registered),
                "TIMESTAMP_X": iso(changed),
                "LAST_ACTIVITY_DATE": None,
                "IS_ONLINE": "N",
                "TIME_ZONE": "Europe/Moscow",
                "PERSONAL_GENDER": "F" if first in _FEMALE else "M",
                "PERSONAL_BIRTHDAY": self.day(self.when(ANCHOR - 60 * 365 * DAY, ANCHOR - 20 * 365 * DAY)),
                "PERSONAL_MOBILE": f"+7916{n:07d}",
                "PERSONAL_CITY": self.pick(("Moscow", "Kazan", "Samara", "Tver")),
                "WORK_PHONE": f"+7495{n:07d}",
                "WORK_POSITION": "Administrator" if n == 1 else self.pick(_POSITIONS),
                "UF_DEPARTMENT": [1] if n == 1 else [self.rint(1, 5)],
                "UF_EMPLOYMENT_DATE": self.day(registered),
                "USER_TYPE": "employee",
            }
            # The last activity is the last login: no extra draw, so a seed's other values stay as they were.
            row["LAST_ACTIVITY_DATE"] = row["LAST_LOGIN"]
            table.insert(row)
            self.user_ids.append(n)

    def companies(self) -> None:
        table = self.t["companies"]
        for n in range(1, self.counts.companies + 1):
            title = f"{self.pick(_CO_A)}{self.pick(_CO_B)} {self.pick(_CO_C)} {self.pick(_CO_SUFFIX)}"
            row = {
                "id": None,
                "title": title,
                "typeId": self.pick(COMPANY_TYPES),
                "industry": self.pick(INDUSTRIES),
                "employees": self.pick(EMPLOYEES),
                "revenue": float(self.rint(1, 499) * 100000),
                "currencyId": "RUB",
                "isMyCompany": "N",
                "contactIds": [],
                "leadId": None,
                "opened": "Y",
                "comments": None,
                **self.stamps(moved=False)[1],
                **self.tail(),
                **self.ufs("companies"),
                "fm": self.fm("office", title.split()[0], n),
            }
            table.insert(row)

    def contacts(self) -> None:
        table = self.t["contacts"]
        companies = self.t["companies"]
        n_companies = len(companies)
        for n in range(1, self.counts.contacts + 1):
            first, last = self.person()
            company = self.rint(1, n_companies) if n_companies and self.maybe(0.8) else None
            row = {
                "id": None,
                "honorific": None,
                "name": first,
                "secondName": None,
                "lastName": last,
                "birthdate": self.day(self.when(ANCHOR - 60 * 365 * DAY, ANCHOR - 20 * 365 * DAY))
                if self.maybe(0.4)
                else None,
                "post": self.pick(_POSITIONS),
                "typeId": self.pick(CONTACT_TYPES),
                "sourceId": self.pick(SOURCES),
                "sourceDescription": None,
                "companyId": company,
                "companyIds": [company] if company else [],
                "leadId": None,
                "export": "Y",
                "opened": "Y",
                "comments": None,
                **self.stamps(moved=False)[1],
                **self.tail(),
                **self.ufs("contacts"),
                "fm": self.fm(first, last, n),
            }
            table.insert(row)
            if company:
                companies_row = companies.get(company)
                if companies_row is not None:
                    companies_row["contactIds"].append(n)

    def leads(self) -> None:
        table = self.t["leads"]
        n_companies, n_contacts = len(self.t["companies"]), len(self.t["contacts"])
        for n in range(1, self.counts.leads + 1):
            first, last = self.person()
            stage = self.weighted(LEAD_STATUSES, _LEAD_STATUS_WEIGHTS)
            source = self.pick(SOURCES)
            contact = self.rint(1, n_contacts) if n_contacts and self.maybe(0.3) else None
            row = {
                "id": None,
                "title": f"{source.title().replace('_', ' ')} request: {first} {last}",
                "honorific": None,
                "name": first,
                "secondName": None,
                "lastName": last,
                "birthdate": None,
                "companyTitle": None,
                "post": None,
                "stageId": stage,
                "stageSemanticId": stage_semantic("leads", stage),
                "opportunity": float(self.rint(0, 299) * 1000),
                "isManualOpportunity": "N",
                "currencyId": "RUB",
                "sourceId": source,
                "sourceDescription": None,
                "companyId": self.rint(1, n_companies) if n_companies and self.maybe(0.3) else None,
                "contactId": contact,
                "contactIds": [contact] if contact else [],
                "isReturnCustomer": "Y" if contact else "N",
                "opened": "Y",
                "comments": None,
                **self.stamps(moved=True)[1],
                **self.tail(),
                **self.ufs("leads"),
                "fm": self.fm(first, last, n),
            }
            table.insert(row)

    def deals(self) -> None:
        table = self.t["deals"]
        products = self.t["deal_products"]
        companies, n_contacts, n_leads = self.t["companies"], len(self.t["contacts"]), len(self.t["leads"])
        lo, hi = self.counts.products_per_deal
        for n in range(1, self.counts.deals + 1):
            category = 1 if self.maybe(0.1) else 0
            stages = DEAL_STAGES[category]
            weights = _DEAL_STAGE_WEIGHTS if category == 0 else (30, 20, 20, 20, 10)
            stage = self.weighted(stages, weights)
            company_id = self.rint(1, len(companies)) if len(companies) and self.maybe(0.85) else None
            company = companies.get(company_id) if company_id else None
            contact = self.rint(1, n_contacts) if n_contacts and self.maybe(0.7) else None
            created, stamps = self.stamps(moved=True)
            begin = self.day(created)
            semantic = stage_semantic("deals", stage)
            row: dict[str, Any] = {
                "id": None,
                "title": f"{self.pick(_PRODUCTS)[1].title()} for {company['title'] if company else 'a client'}",
                "typeId": self.pick(DEAL_TYPES),
                "categoryId": category,
                "stageId": stage,
                "stageSemanticId": semantic,
                "isNew": "Y" if stage.endswith("NEW") else "N",
                "closed": "N" if semantic == "P" else "Y",
                "opportunity": 0.0,
                "isManualOpportunity": "N",
                "taxValue": 0.0,
                "currencyId": "RUB",
                "probability": self.pick((10, 30, 50, 70, 90)),
                "companyId": company_id,
                "contactId": contact,
                "contactIds": [contact] if contact else [],
                "leadId": self.rint(1, n_leads) if n_leads and self.maybe(0.2) else None,
                "begindate": begin,
                "closedate": self.day(created + self.rint(7, 90) * DAY),
                "sourceId": self.pick(SOURCES),
                "sourceDescription": None,
                "opened": "Y",
                "comments": None,
                **stamps,
                **self.tail(),
                **self.ufs("deals"),
            }
            row = table.insert(row)
            total = 0.0
            for i in range(self.rint(lo, hi)):
                pid, pname, price = self.pick(_PRODUCTS)
                qty = float(self.rint(1, 5))
                total += price * qty
                products.insert(product_row(n, pid, pname, price, qty, 10 * (i + 1)))
            row["opportunity"] = total if total else float(self.rint(1, 199) * 1000)

    def tasks(self) -> None:
        tasks, results = self.t["tasks"], self.t["task_results"]
        crm_pools = [
            (p, len(self.t[e]))
            for p, e in (("D", "deals"), ("L", "leads"), ("C", "contacts"), ("CO", "companies"))
        ]
        crm_pools = [(p, n) for p, n in crm_pools if n]
        statuses = [s for s, _ in _TASK_STATUS_WEIGHTS]
        weights = [w for _, w in _TASK_STATUS_WEIGHTS]
        r_lo, r_hi = self.counts.results_per_task
        for n in range(1, self.counts.tasks + 1):
            created = self.when()
            changed = min(ANCHOR, created + self.rint(0, 60 * DAY))
            status = self.weighted(statuses, weights)
            creator, responsible = self.user(), self.user()
            crm_ids = []
            for _ in range(self.rint(0, 2) if crm_pools else 0):
                prefix, size = self.pick(crm_pools)
                crm_ids.append(f"{prefix}_{self.rint(1, size)}")
            n_results = self.rint(r_lo, r_hi)
            row = {
                "id": None,
                "title": f"{self.pick(_TASK_VERBS)} {self.pick(_TASK_OBJECTS)}",
                "description": f"Task #{n}: follow up with the client.",
                "creatorId": creator,
                "responsibleId": responsible,
                "created": iso(created),
                "changed": iso(changed),
                "changedById": responsible,
                "closed": iso(changed) if status == "completed" else None,
                "closedById": responsible if status == "completed" else None,
                "deadline": iso(created + self.rint(1, 30) * DAY) if self.maybe(0.7) else None,
                "startPlan": None,
                "endPlan": None,
                "status": status,
                "statusChanged": iso(changed),
                "priority": self.weighted(("low", "average", "high"), (20, 60, 20)),
                "groupId": self.rint(1, 5) if self.maybe(0.4) else 0,
                "parentId": None,
                "accomplices": [],
                "auditors": [],
                "crmItemIds": list(dict.fromkeys(crm_ids)),
                "needsControl": False,
                "estimatedTime": 0,
                "xmlId": None,
                "guid": self.guid(),
                "containsResults": n_results > 0,
            }
            tasks.insert(row)
            for _ in range(n_results):
                at = iso(self.rint(created, max(created, changed)))
                results.insert(
                    {
                        "id": None,
                        "taskId": n,
                        "text": f"Result for task #{n}: {self.pick(('done', 'client agreed', 'sent'))}",
                        "authorId": responsible,
                        "createdAt": at,
                        "updatedAt": at,
                        "status": "closed" if status == "completed" else "open",
                        "messageId": None,
                        "fileIds": [],
                    }
                )


# Entities whose stage moves crm.stagehistory.list reports, by entityTypeId (DOCS
# api-reference/crm/crm-stage-history-list.md: leads, deals, new invoices and smart processes).
HISTORY_TYPES: dict[str, int] = {
    "leads": 1,
    "deals": 2,
    **{e: t.entity_type_id for e, t in ITEM_TYPES.items() if t.entity_type_id != 7},
}
# crm-stage-history-list.md, TYPE_ID: 1 creation, 2 move to an intermediate stage, 3 to a final one,
# 5 change of pipeline.
HISTORY_CREATED, HISTORY_MOVED, HISTORY_FINAL, HISTORY_PIPELINE = 1, 2, 3, 5


def stage_history_row(
    entity: str, owner_id: int, kind: int, at: str, stage: str, category: int | None
) -> dict[str, Any]:
    """A crm.stagehistory.list item (crm-stage-history-list.md): leads carry STATUS_SEMANTIC_ID/STATUS_ID,
    deals, invoices and smart processes CATEGORY_ID/STAGE_SEMANTIC_ID/STAGE_ID."""
    row: dict[str, Any] = {"ID": None, "TYPE_ID": kind, "OWNER_ID": owner_id, "CREATED_TIME": at}
    if entity == "leads":
        row.update(STATUS_SEMANTIC_ID=stage_semantic(entity, stage), STATUS_ID=stage)
    else:
        row.update(CATEGORY_ID=category or 0, STAGE_SEMANTIC_ID=stage_semantic(entity, stage), STAGE_ID=stage)
    return row


def pipeline_stages(entity: str, category: int | None) -> tuple[str, ...]:
    """The stage ids of an entity's pipeline, in pipeline order."""
    if entity == "leads":
        return LEAD_STATUSES
    if entity == "deals":
        return DEAL_STAGES[category or 0]
    item = ITEM_TYPES[entity]
    pipeline = item.pipeline(category) or item.default
    return pipeline.stages


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


class _More(_Gen):
    """Departments, quotes, invoices, smart-process items, stage history and activities.

    Drawn from a random stream of their own after `_Gen` has run, so that the rows `_Gen` makes for a seed
    are the same as before these tables existed.
    """

    def __init__(self, seed: int, counts: SeedCounts, tables: dict[str, Table]) -> None:
        super().__init__(seed, counts, tables)
        self.rng = random.Random(f"coverage-{seed}")
        self.user_ids = [int(r["ID"]) for r in tables["users"].all()]

    def departments(self) -> None:
        table = self.t["departments"]
        # Names of department.get's response example (DOCS api-reference/departments/department-get.md).
        names = ("Sales Department", "Accounting", "Marketing and Advertising Department", "R&D")
        extra = ("Legal Department", "Support", "Logistics", "Purchasing", "Security", "HR")
        # The root has no PARENT; its head is the portal admin.
        table.insert({"ID": None, "NAME": "Company", "SORT": 500, "PARENT": None, "UF_HEAD": 1})
        for n in range(2, max(5, self.counts.departments) + 1):
            name = names[n - 2] if n - 2 < len(names) else f"{extra[(n - 6) % len(extra)]} {n}"
            parent = 1 if n <= 5 else self.rint(1, n - 1)
            table.insert({"ID": None, "NAME": name, "SORT": 500, "PARENT": parent, "UF_HEAD": None})

    def _blank(self, entity: str) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for spec in CRM_FIELDS[entity]:
            row[spec.name] = [] if spec.multiple else ("N" if spec.type == "boolean" else None)
        return row

    def _item_ufs(self, entity: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in CRM_FIELDS[entity]:
            if not spec.user_field:
                continue
            filled = self.maybe(0.7)
            if spec.type == "enumeration":
                out[spec.name] = self.pick([i for i, _ in spec.items]) if filled else None
            elif spec.type == "double":
                out[spec.name] = round(self.rng.random() * 100000, 2) if filled else None
            elif spec.type == "datetime":
                out[spec.name] = iso(self.when()) if filled else None
            else:
                out[spec.name] = f"REF-{self.rint(1000, 9999)}" if filled else None
        return out

    def items(self, entity: str, count: int) -> None:
        item = ITEM_TYPES[entity]
        table = self.t[entity]
        n_companies, n_contacts, n_deals = (
            len(self.t["companies"]),
            len(self.t["contacts"]),
            len(self.t["deals"]),
        )
        for n in range(1, count + 1):
            pipeline = self.pick(item.pipelines)
            stage = self.pick(pipeline.stages)
            created, stamps = self.stamps(moved=entity != "quotes")
            contact = self.rint(1, n_contacts) if n_contacts and self.maybe(0.7) else None
            row = self._blank(entity)
            row.update(
                {
                    "id": None,
                    "title": f"{item.title} #{n}",
                    "stageId": stage,
                    "opportunity": float(self.rint(1, 500) * 1000),
                    "isManualOpportunity": "N",
                    "taxValue": 0.0,
                    "currencyId": "RUB",
                    "companyId": self.rint(1, n_companies) if n_companies and self.maybe(0.8) else None,
                    "contactId": contact,
                    "contactIds": [contact] if contact else [],
                    "begindate": self.day(created),
                    "closedate": self.day(created + self.rint(7, 90) * DAY),
                    "opened": "Y",
                    **stamps,
                    **self._item_ufs(entity),
                }
            )
            if entity == "quotes":
                row["closed"] = "N" if stage_semantic(entity, stage) == "P" else "Y"
                row["dealId"] = self.rint(1, n_deals) if n_deals and self.maybe(0.6) else None
            else:
                first = pipeline.stages[0]
                row["categoryId"] = pipeline.id
                row["previousStageId"] = None if stage == first else first
                row["sourceId"] = self.pick(SOURCES)
            inserted = table.insert(row)
            if entity == "quotes":
                inserted["quoteNumber"] = str(inserted["id"])
            elif entity == "invoices":
                inserted["accountNumber"] = f"INV-{inserted['id']:05d}"

    def stage_history(self) -> None:
        for entity, type_id in HISTORY_TYPES.items():
            events: list[tuple[str, int, dict[str, Any]]] = []
            for row in self.t[entity].all():
                category = row.get("categoryId")
                stages = pipeline_stages(entity, category)
                current = row["stageId"]
                created = row["createdTime"]
                kind = HISTORY_CREATED
                events.append(
                    (
                        created,
                        row["id"],
                        stage_history_row(entity, row["id"], kind, created, stages[0], category),
                    )
                )
                if current == stages[0]:
                    continue
                moved = row.get("movedTime") or row["updatedTime"]
                pos = stages.index(current)
                if pos > 1 and self.maybe(0.6):
                    middle = stages[self.rint(1, min(pos, len(stages)) - 1)]
                    if stage_semantic(entity, middle) == "P":
                        at = iso(self.rint(_ts(created), _ts(moved)))
                        events.append(
                            (
                                at,
                                row["id"],
                                stage_history_row(entity, row["id"], HISTORY_MOVED, at, middle, category),
                            )
                        )
                final = HISTORY_FINAL if stage_semantic(entity, current) != "P" else HISTORY_MOVED
                events.append(
                    (moved, row["id"], stage_history_row(entity, row["id"], final, moved, current, category))
                )
            # Ids grow with time, as an autoincrement key written when the move happens.
            events.sort(key=lambda e: (e[0], e[1]))
            table = self.t[f"stage_history_{type_id}"]
            for _, _, record in events:
                table.insert(record)

    def activities(self) -> None:
        table = self.t["activities"]
        owners = [
            (t, len(self.t[e])) for t, e in ((1, "leads"), (2, "deals"), (3, "contacts"), (4, "companies"))
        ]
        owners = [(t, n) for t, n in owners if n]
        if not owners:
            return
        for _ in range(self.counts.activities):
            owner_type, size = self.pick(owners)
            start = self.when()
            completed = self.maybe(0.6)
            direction = self.pick((1, 2))
            author = self.user()
            updated = min(ANCHOR, start + self.rint(0, 30 * DAY))
            first, last = self.person()
            # Field set and value kinds of crm.activity.list's response example (a call, TYPE_ID 2,
            # VOXIMPLANT_CALL; DOCS crm-activity-list.md); DIRECTION 1 incoming, 2 outgoing.
            # Defaults shared with crm.activity.add (methods_activity.blank_activity); the seeded values are
            # drawn in the same order as before, so a seed gives the same portal.
            overrides = {
                "OWNER_ID": self.rint(1, size),
                "OWNER_TYPE_ID": owner_type,
                "SUBJECT": f"{'Incoming' if direction == 1 else 'Outgoing'} call {first} {last}",
                "CREATED": iso(start),
                "LAST_UPDATED": iso(updated),
                "START_TIME": iso(start),
                "END_TIME": iso(start + 1800),
                "DEADLINE": iso(start),
                "COMPLETED": "Y" if completed else "N",
                "STATUS": 2 if completed else 1,
                "RESPONSIBLE_ID": self.user(),
                "PRIORITY": self.pick((1, 2, 3)),
                "DIRECTION": direction,
            }
            table.insert({"ID": None, **blank_activity(user_id=author, now=start), **overrides})


def generate(seed: int, counts: SeedCounts, tables: dict[str, Table]) -> None:
    """Fill empty `tables` (keyed by entity name) with seeded data."""
    gen = _Gen(seed, counts, tables)
    gen.users()
    gen.companies()
    gen.contacts()
    gen.leads()
    gen.deals()
    gen.tasks()
    more = _More(seed, counts, tables)
    more.departments()
    more.items("quotes", counts.quotes)
    more.items("invoices", counts.invoices)
    for entity, item in ITEM_TYPES.items():
        if item.type_id is not None:
            more.items(entity, counts.spa_items)
    more.stage_history()
    more.activities()
