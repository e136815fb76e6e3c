"""The package layout: public names, wings that do not import each other, moved modules (no I/O)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import bitrix24_source

PACKAGE = Path(bitrix24_source.__file__).parent


def _imports(folder: Path) -> set[str]:
    found: set[str] = set()
    for file in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("wing", "forbidden"),
    [
        ("client", ("bitrix24_source.source", "bitrix24_source.destination", "bitrix24_source.sandbox")),
        ("sandbox", ("bitrix24_source.client", "bitrix24_source.source", "bitrix24_source.destination")),
        ("source", ("bitrix24_source.destination", "bitrix24_source.sandbox")),
        ("destination", ("bitrix24_source.source", "bitrix24_source.sandbox")),
    ],
)
def test_a_wing_imports_only_what_the_layout_allows(wing: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(m for m in _imports(PACKAGE / wing) if m.startswith(forbidden))
    assert wrong == [], f"{wing}/ imports {wrong}"


def test_the_shared_modules_import_no_wing() -> None:
    for name in ("errors.py", "fields.py"):
        found = _module_imports(PACKAGE / name)
        assert not {m for m in found if m.startswith("bitrix24_source.") and m != "bitrix24_source.errors"}


def _module_imports(file: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", ["Bitrix24Client", "bitrix24_source", "bitrix24_destination", "errors"])
def test_public_names_load_from_the_package(name: str) -> None:
    assert getattr(bitrix24_source, name) is not None


@pytest.mark.parametrize(
    ("old", "new", "attribute"),
    [
        ("bitrix24_source.limits", "bitrix24_source.client.limits", "RateLimit"),
        ("bitrix24_source.commands", "bitrix24_source.client.commands", "ref_array"),
        ("bitrix24_source.config", "bitrix24_source.source.credentials", "save_tokens_to_toml"),
    ],
)
def test_a_moved_module_still_imports_under_its_old_name_with_a_warning(
    old: str, new: str, attribute: str
) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, attribute) is getattr(importlib.import_module(new), attribute)
