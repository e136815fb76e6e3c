"""Suite-wide pytest configuration.

Tests marked ``live`` talk to a real Bitrix24 cloud portal, which this machine cannot reach. They run only when
``BITRIX24_LIVE_WEBHOOK_URL`` names a portal's incoming webhook, and are reported as skipped otherwise.
"""

from __future__ import annotations

import os

import pytest

LIVE_ENV = "BITRIX24_LIVE_WEBHOOK_URL"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(LIVE_ENV):
        return
    skip_live = pytest.mark.skip(
        reason=f"needs a real Bitrix24 portal: set {LIVE_ENV} to an incoming webhook URL"
    )
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip_live)
