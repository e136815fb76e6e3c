"""`bitrix24-dlt fields ENTITY`: the portal's fields of an entity, as the portal describes them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from bitrix24_source.cli.config import find_credentials, token_saver
from bitrix24_source.cli.output import Output
from bitrix24_source.fields import FieldMeta, parse_field_map
from bitrix24_source.source.settings import SPA_PREFIX, is_spa_name

EXAMPLES = """\
examples:
  bitrix24-dlt fields deals                      # types, required, read-only, multiple, labels
  bitrix24-dlt fields contacts --custom          # only the portal's own fields (UF_*)
  bitrix24-dlt fields tasks --json > tasks.json  # machine-readable
  bitrix24-dlt fields spa_128                    # a smart process (entityTypeId 128)
"""

# (method, params, REST version) describing each entity's fields; the same methods the source reads.
_CRM_TYPE_IDS = {"leads": 1, "deals": 2, "contacts": 3, "companies": 4, "quotes": 7, "invoices": 31}
ENTITIES = (*_CRM_TYPE_IDS, "deal_products", "users", "tasks")


def entity_name(text: str) -> str:
    """An ENTITIES name or a smart process's `spa_<entityTypeId>`."""
    if text in ENTITIES or is_spa_name(text):
        return text
    raise argparse.ArgumentTypeError(f"unknown entity {text}; choose from {', '.join(ENTITIES)} or spa_<id>")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "fields",
        help="list an entity's fields (type, required, read-only, multiple, labels)",
        description="Show the portal's fields of ENTITY. Stage, source and type fields (crm_status) list "
        "the labels of the portal's directory for them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("entity", type=entity_name, help=f"{', '.join(ENTITIES)} or spa_<entityTypeId>")
    parser.add_argument("--custom", action="store_true", help="only user fields (UF_*, ufCrm*)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--webhook-url", default=None, help="instead of the configured credentials")
    parser.set_defaults(run=run)


def _describe(client: Any, entity: str) -> dict[str, FieldMeta]:
    if entity in _CRM_TYPE_IDS or is_spa_name(entity):
        type_id = _CRM_TYPE_IDS.get(entity) or int(entity.removeprefix(SPA_PREFIX))
        answer = client.call("crm.item.fields", {"entityTypeId": type_id})
    elif entity == "deal_products":
        answer = client.call("crm.item.productrow.fields", {})
    elif entity == "users":
        answer = client.call("user.fields", {})
    else:
        answer = client.call("tasks.task.field.list", {}, version=3)
    return parse_field_map(answer.result)


def _status_labels(client: Any, fields: Mapping[str, FieldMeta]) -> dict[str, dict[str, str]]:
    """Labels of crm_status fields (stages, sources, …): their directory's STATUS_ID -> NAME (§7.4)."""
    wanted = sorted({f.status_type for f in fields.values() if f.status_type})
    if not wanted:
        return {}
    answer = client.batch(
        {f"s{i}": ("crm.status.list", {"filter": {"ENTITY_ID": name}}) for i, name in enumerate(wanted)},
        halt_on_error=False,
    )
    labels: dict[str, dict[str, str]] = {}
    for name, result in zip(wanted, answer.results, strict=True):
        if result.ok and isinstance(result.result, list):
            labels[name] = {str(r.get("STATUS_ID")): str(r.get("NAME")) for r in result.result}
    return labels


def _is_custom(name: str) -> bool:
    return name.upper().startswith("UF_") or name.startswith("ufCrm")


def run(args: argparse.Namespace, out: Output) -> int:
    from bitrix24_source import Bitrix24Client

    credentials = find_credentials(args.webhook_url)
    client = Bitrix24Client(
        credentials.webhook_url,
        oauth=credentials.oauth,
        timeout=15.0,
        on_token_refresh=token_saver(credentials),
    )
    try:
        fields = _describe(client, args.entity)
        directories = _status_labels(client, fields)
    finally:
        client.close()
    if args.custom:
        fields = {name: f for name, f in fields.items() if _is_custom(name)}
    rows: list[dict[str, Any]] = []
    for name, meta in fields.items():
        labels = meta.enum_values or (directories.get(meta.status_type or "") or None)
        rows.append(
            {
                "name": name,
                "title": meta.title,
                "type": meta.type,
                "required": meta.required,
                "read_only": meta.read_only,
                "multiple": meta.multiple,
                "labels": labels,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0

    def flag(value: bool) -> str:
        return "yes" if value else ""

    def label_text(labels: Mapping[str, str] | None) -> str:
        if not labels:
            return ""
        shown = [f"{key}={value}" for key, value in list(labels.items())[:6]]
        more = f" (+{len(labels) - 6})" if len(labels) > 6 else ""
        return "; ".join(shown) + more

    out.table(
        f"{args.entity} on {credentials.portal}: {len(rows)} fields",
        ("name", "type", "title", "required", "read-only", "multiple", "labels"),
        [
            (
                r["name"],
                r["type"],
                r["title"],
                flag(r["required"]),
                flag(r["read_only"]),
                flag(r["multiple"]),
                label_text(r["labels"]),
            )
            for r in rows
        ],
    )
    return 0
