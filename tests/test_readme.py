"""The README's examples run as written.

Every ```python block that brings its own sandbox portal (`Sandbox(`) is executed and must print something;
blocks that need a real portal's credentials are checked to at least compile. The quick start must name the
two commands CI and users rely on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
RUNNABLE = [i for i, block in enumerate(BLOCKS) if "Sandbox(" in block]


def test_quick_start_names_the_two_commands() -> None:
    quick_start = TEXT.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start
    assert "make test" in quick_start


def test_there_are_runnable_examples() -> None:
    assert len(RUNNABLE) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_compiles(index: int) -> None:
    compile(BLOCKS[index], f"README.md[{index}]", "exec")


EXPECTED = {
    # a marker that identifies the block -> text its output must contain
    "deals_push_results": ["NOT_FOUND", "add", "update"],
    "bitrix24_try": ["is LOADED", "Decimal("],
}


@pytest.mark.parametrize("index", RUNNABLE)
def test_example_runs(
    index: int, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write DuckDB files into the working directory
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))  # and their pipelines, not the global dir
    exec(compile(BLOCKS[index], f"README.md[{index}]", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert out.strip()
    for marker, expected in EXPECTED.items():
        if marker in BLOCKS[index]:
            for text in expected:
                assert text in out, (marker, text)
