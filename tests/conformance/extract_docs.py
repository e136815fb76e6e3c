"""Extract the documented requests, answers and field catalogues from a checkout of the official REST docs.

Usage::

    python tests/conformance/extract_docs.py <path to a bitrix24/b24restdocs checkout or bare git dir> [ref]

It writes ``tests/fixtures/docs-responses/``: one ``methods/<version>/<method>.json`` per method (page path,
the request of the page's first "cURL (Webhook)" example, the JSON of its "Response Handling" and "Error
Handling" sections), ``catalogues/crm-object-fields.json`` (the per-entity tables of
``api-reference/crm/universal/object-fields.md`` with the access each field has according to the crm.item.add
and crm.item.update parameter tables), ``catalogues/task-fields-rest-v3.json`` (``fields-rest-v3.md``) and
``SOURCE.json`` (docs commit). The output is committed, so the conformance tests need neither the docs nor
the network; rerun this script to refresh it.

Only the standard library is used; the docs are read with ``git show`` so a bare mirror works.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "docs-responses"

# (version, method): what the sandbox serves (bitrix24_source/sandbox/methods_*.py tables) plus what the
# product calls (bitrix24_source/{client,source,destination}). tests/conformance/test_corpus.py checks that
# every method the sandbox serves is listed here.
METHODS: tuple[tuple[int, str], ...] = (
    (2, "app.info"),
    (2, "batch"),
    (2, "crm.activity.add"),
    (2, "crm.activity.delete"),
    (2, "crm.activity.fields"),
    (2, "crm.activity.list"),
    (2, "crm.activity.update"),
    (2, "crm.category.list"),
    (2, "crm.company.add"),
    (2, "crm.company.delete"),
    (2, "crm.company.fields"),
    (2, "crm.company.get"),
    (2, "crm.company.list"),
    (2, "crm.company.update"),
    (2, "crm.contact.add"),
    (2, "crm.contact.delete"),
    (2, "crm.contact.fields"),
    (2, "crm.contact.get"),
    (2, "crm.contact.list"),
    (2, "crm.contact.update"),
    (2, "crm.deal.add"),
    (2, "crm.duplicate.findbycomm"),
    (2, "crm.deal.delete"),
    (2, "crm.deal.fields"),
    (2, "crm.deal.get"),
    (2, "crm.deal.list"),
    (2, "crm.deal.update"),
    (2, "crm.dealcategory.stage.list"),
    (2, "crm.item.add"),
    (2, "crm.item.delete"),
    (2, "crm.item.fields"),
    (2, "crm.item.get"),
    (2, "crm.item.list"),
    (2, "crm.item.productrow.add"),
    (2, "crm.item.productrow.delete"),
    (2, "crm.item.productrow.fields"),
    (2, "crm.item.productrow.get"),
    (2, "crm.item.productrow.list"),
    (2, "crm.item.productrow.update"),
    (2, "crm.item.update"),
    (2, "crm.lead.add"),
    (2, "crm.lead.delete"),
    (2, "crm.lead.fields"),
    (2, "crm.lead.get"),
    (2, "crm.lead.list"),
    (2, "crm.lead.update"),
    (2, "crm.status.entity.items"),
    (2, "crm.status.entity.types"),
    (2, "crm.status.fields"),
    (2, "crm.stagehistory.list"),
    (2, "crm.status.list"),
    (2, "crm.type.list"),
    (2, "department.get"),
    (2, "server.time"),
    (2, "tasks.task.add"),
    (2, "tasks.task.delete"),
    (2, "tasks.task.get"),
    (2, "tasks.task.getfields"),
    (2, "tasks.task.list"),
    (2, "tasks.task.result.list"),
    (2, "tasks.task.update"),
    (2, "user.admin"),
    (2, "user.current"),
    (2, "user.fields"),
    (2, "user.get"),
    (3, "tasks.task.add"),
    (3, "tasks.task.delete"),
    (3, "tasks.task.field.list"),
    (3, "tasks.task.get"),
    (3, "tasks.task.list"),
    (3, "tasks.task.result.list"),
    (3, "tasks.task.update"),
)

OBJECT_FIELDS = "api-reference/crm/universal/object-fields.md"
ITEM_ADD = "api-reference/crm/universal/crm-item-add.md"
ITEM_UPDATE = "api-reference/crm/universal/crm-item-update.md"
TASK_FIELDS_V3 = "api-reference/tasks/fields-rest-v3.md"
# object-fields.md section anchor -> (entity key, entityTypeId); crm-item-add/update tab titles use the names.
SECTIONS = {
    "lead": ("leads", 1, "Lead"),
    "deal": ("deals", 2, "Deal"),
    "contact": ("contacts", 3, "Contact"),
    "company": ("companies", 4, "Company"),
    "quote": ("quotes", 7, "Estimate"),
    "invoice": ("invoices", 31, "Invoice"),
    "spa": ("smart_processes", None, "SPA"),
}

_CURL = re.compile(r"- cURL \(Webhook\)\s*```[a-z]*\n(?P<body>.*?)```", re.S)
_DATA = re.compile(r"-d '(?P<data>.*?)' \\", re.S)
_URL = re.compile(r"https://\S+/rest/(?P<api>api/)?\S+?/(?P<method>[A-Za-z0-9_.]+)\s*$", re.M)
_SHELL = re.compile(r"'\"\$\([^)]*\)\"'")
SHELL_DATE = "2025-06-01T00:00:00+03:00"
_JSON_BLOCK = re.compile(r"```json\s*\n(?P<body>.*?)```", re.S)
_ROW = re.compile(
    r"\|\|\s*\*\*(?P<name>[^*]+)\*\*\s*\n\s*(?:\[`(?P<type>[^`]+)`\]\([^)]*\)|`(?P<type2>[^`]+)`)\s*\|"
    r"(?P<desc>.*?)\|\|",
    re.S,
)


class Docs:
    """Read-only access to one commit of the docs (a work tree or a bare git dir)."""

    def __init__(self, path: str, ref: str = "HEAD") -> None:
        self.path, self.ref = path, ref
        self.commit = self._git("rev-parse", ref).strip()
        self._files = self._git("ls-tree", "-r", "--name-only", self.commit).splitlines()

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", self.path, *args], check=True, capture_output=True, text=True
        ).stdout

    def show(self, page: str) -> str:
        return self._git("show", f"{self.commit}:{page}")

    def pages(self) -> list[str]:
        return [f for f in self._files if f.startswith(("api-reference/", "settings/")) and f.endswith(".md")]


# Lines the docs put in JSON examples to elide rows: `// ...`, `...`, or prose such as "48 more leads".
_ELIDED = re.compile(r'^\s*(//.*|\.\.\.|(?!\s*(true|false|null)\b)[^"{}\[\]:]*[A-Za-z][^"{}\[\]:]*)$')


def loose_json(text: str) -> Any:
    """Parse a docs JSON example: elision lines (see `_ELIDED`) and trailing commas are dropped."""
    lines = [ln for ln in text.splitlines() if not _ELIDED.match(ln)]
    cleaned = re.sub(r",(\s*[}\]])", r"\1", "\n".join(lines))
    return json.loads(cleaned)


def _section(text: str, title: str) -> str | None:
    match = re.search(rf"^## {title}\b.*?$(?P<body>.*?)(?=^## |\Z)", text, re.S | re.M | re.I)
    return match.group("body") if match else None


def _first_json(section: str | None) -> dict[str, Any] | None:
    if section is None:
        return None
    block = _JSON_BLOCK.search(section)
    if block is None:
        return None
    raw = block.group("body")
    status = re.search(r"HTTP [Ss]tatus: \*\*(\d+)\*\*", section)
    out: dict[str, Any] = {"http_status": int(status.group(1)) if status else None}
    try:
        out["body"] = loose_json(raw)
    except json.JSONDecodeError as err:
        out["body"], out["unparsed"], out["parse_error"] = None, raw, str(err)
    return out


def curl_example(text: str) -> tuple[int, str, Any] | None:
    """(version, method, params) of a page's first cURL (Webhook) example whose JSON parses.

    A page whose first example holds broken JSON (crm-type-list.md: an object inside an array) is taken
    from its next webhook example; if none parses, the first one is returned with ``{"unparsed": …}``.
    """
    found = [_curl_block(m.group("body")) for m in _CURL.finditer(text)]
    found = [f for f in found if f is not None]
    parsed = [f for f in found if not (isinstance(f[2], dict) and "unparsed" in f[2])]
    return (parsed or found or [None])[0]


def _curl_block(body: str) -> tuple[int, str, Any] | None:
    url = _URL.search(body)
    if url is None:
        return None
    data = _DATA.search(body)
    params: Any = {}
    if data is not None:
        # `'"$(date …)"'` splices a shell command's output into the JSON; a fixed date stands in for it.
        text = _SHELL.sub(SHELL_DATE, data.group("data"))
        try:
            params = loose_json(text)
        except json.JSONDecodeError:
            params = {"unparsed": data.group("data")}
    return (3 if url.group("api") else 2), url.group("method"), params


def method_pages(docs: Docs) -> dict[tuple[int, str], list[str]]:
    """Every page whose first webhook example calls a method, keyed by (version, lowercased method)."""
    out: dict[tuple[int, str], list[str]] = {}
    for page in docs.pages():
        text = docs.show(page)
        found = curl_example(text)
        if found is not None:
            out.setdefault((found[0], found[1].lower()), []).append(page)
    return out


def _pick(method: str, pages: list[str]) -> str:
    stem = method.replace(".", "-").lower()
    ranked = sorted(pages, key=lambda p: (Path(p).stem.lower() not in (stem, stem + "-rest-v3"), len(p)))
    return ranked[0]


def extract_method(docs: Docs, version: int, method: str, page: str) -> dict[str, Any]:
    text = docs.show(page)
    found = curl_example(text)
    assert found is not None
    return {
        "method": method,
        "version": version,
        "page": page,
        "request": found[2],
        "response": _first_json(_section(text, "Response Handling") or _section(text, "Response on Success")),
        "error": _first_json(_section(text, "Error Handling")),
    }


def _rows(table: str) -> list[dict[str, str]]:
    out = []
    for m in _ROW.finditer(table):
        if m.group("name").strip() == "Name":  # the header row
            continue
        desc = " ".join(m.group("desc").split())
        out.append(
            {"name": m.group("name").strip(), "type": m.group("type") or m.group("type2"), "desc": desc}
        )
    return out


def _tables_by_heading(text: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for m in re.finditer(
        r"^#{2,3} .*?\{#(?P<anchor>[a-z]+)\}\s*$(?P<body>.*?)(?=^#{2,3} |\Z)", text, re.S | re.M
    ):
        out[m.group("anchor")] = _rows(m.group("body"))
    return out


def _tabs(text: str) -> dict[str, set[str]]:
    """crm.item.add/update: the field names of each entity tab of "Parameter fields"."""
    part = text.split("### Parameter fields", 1)[1].split("## Code Examples", 1)[0]
    out: dict[str, set[str]] = {}
    pieces = re.split(r"^- (Lead|Deal|Contact|Company|Estimate|Invoice|SPA)\s*$", part, flags=re.M)
    for title, body in zip(pieces[1::2], pieces[2::2], strict=True):
        out[title] = {r["name"].rstrip("*") for r in _rows(body)}
    return out


def _notes(desc: str) -> list[str]:
    notes = []
    for word, note in (
        ("Field is disabled", "disabled"),
        ("Deprecated", "deprecated"),
        ("System field", "system"),
        ("Available only when", "conditional"),
    ):
        if word.lower() in desc.lower():
            notes.append(note)
    return notes


def crm_catalogue(docs: Docs) -> dict[str, Any]:
    """object-fields.md tables with an access word per field.

    access: ``read-write`` (in both the crm.item.add and crm.item.update tables), ``set on creation`` (add
    only), ``read-only`` (neither: the portal fills it), ``not returned`` (the table says "Field is disabled").
    Patterns (``parentId...``, ``ufCrm...``) are kept with ``pattern: true``.
    """
    tables = _tables_by_heading(docs.show(OBJECT_FIELDS))
    adds, updates = _tabs(docs.show(ITEM_ADD)), _tabs(docs.show(ITEM_UPDATE))
    common = tables["common"]
    entities: dict[str, Any] = {}
    for anchor, (key, type_id, tab) in SECTIONS.items():
        rows = []
        for source, table in (("common", common), (anchor, tables[anchor])):
            for r in table:
                name = r["name"]
                pattern = name.endswith("...")
                notes = _notes(r["desc"])
                if "disabled" in notes:
                    access = "not returned"
                elif name in adds.get(tab, set()) and name in updates.get(tab, set()):
                    access = "read-write"
                elif name in adds.get(tab, set()):
                    access = "set on creation"
                else:
                    access = "read-only"
                rows.append(
                    {
                        "name": name.rstrip("."),
                        "type": r["type"],
                        "access": access,
                        "notes": notes,
                        "section": source,
                        "pattern": pattern,
                    }
                )
        entities[key] = {"entityTypeId": type_id, "fields": rows}
    return {"page": OBJECT_FIELDS, "access_from": [ITEM_ADD, ITEM_UPDATE], "entities": entities}


def task_catalogue(docs: Docs) -> dict[str, Any]:
    tables = _tables_by_heading(docs.show(TASK_FIELDS_V3))
    return {
        "page": TASK_FIELDS_V3,
        "objects": {
            anchor: [{"name": r["name"], "type": r["type"]} for r in rows] for anchor, rows in tables.items()
        },
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    docs = Docs(argv[1], argv[2] if len(argv) == 3 else "HEAD")
    index = method_pages(docs)
    (OUT / "methods").mkdir(parents=True, exist_ok=True)
    missing = []
    for version, method in METHODS:
        pages = index.get((version, method.lower()))
        if not pages:
            missing.append(f"v{version} {method}")
            continue
        record = extract_method(docs, version, method, _pick(method, pages))
        target = OUT / "methods" / f"v{version}" / f"{method}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (OUT / "catalogues").mkdir(exist_ok=True)
    for name, data in (
        ("crm-object-fields.json", crm_catalogue(docs)),
        ("task-fields-rest-v3.json", task_catalogue(docs)),
    ):
        (OUT / "catalogues" / name).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", "utf-8")
    source = {"repository": "bitrix24/b24restdocs", "commit": docs.commit, "no_webhook_example": missing}
    (OUT / "SOURCE.json").write_text(json.dumps(source, indent=1) + "\n", encoding="utf-8")
    print(f"docs {docs.commit}: {len(METHODS) - len(missing)} methods extracted; no example for: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
