"""Each sub-command runs as its own process (`python -m bitrix24_source …`) against an in-process sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bitrix24_source.sandbox import Sandbox
from tests.cli.process import WEBHOOK_CODE, clean_env


@pytest.fixture(scope="package")
def portal() -> Iterator[Sandbox]:
    with Sandbox(
        seed=11,
        deals=120,
        leads=20,
        contacts=40,
        companies=10,
        users=10,
        tasks=20,
        webhook_code=WEBHOOK_CODE,
    ) as p:
        yield p


@pytest.fixture
def portal_env(portal: Sandbox) -> dict[str, str]:
    """Credentials the dlt way: an env var, as a scheduler or a container would pass them."""
    return clean_env(SOURCES__BITRIX24__WEBHOOK_URL=portal.webhook_url)
