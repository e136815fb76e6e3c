"""The committed docs corpus covers every method the sandbox serves, and matches its extraction script."""

from __future__ import annotations

import json

from bitrix24_source.sandbox import state
from tests.conformance.corpus import CORPUS, records
from tests.conformance.extract_docs import METHODS


def test_every_served_method_has_a_documented_example() -> None:
    served = {(2, m) for m in state._V2} | {(3, m) for m in state._V3}
    listed = {(v, m.lower()) for v, m in METHODS}
    assert served - listed == set()
    assert {(r.version, r.method.lower()) for r in records()} == listed


def test_every_example_names_its_page_and_parsed_request() -> None:
    for record in records():
        assert record.page.endswith(".md") and isinstance(record.request, dict), record.key
        assert "unparsed" not in record.request, record.key


def test_attribution_names_the_extracted_commit() -> None:
    source = json.loads((CORPUS / "SOURCE.json").read_text(encoding="utf-8"))
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert source["repository"] == "bitrix24/b24restdocs" and source["commit"] in readme
    assert "MIT License" in readme
