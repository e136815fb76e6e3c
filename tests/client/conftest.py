"""Fixtures for the client tests: a small seeded sandbox portal over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bitrix24_source.client import Bitrix24Client, RetryPolicy
from bitrix24_source.client.limits import PortalLimiter
from bitrix24_source.sandbox import Sandbox

# Short waits keep fault tests fast; the policy's shape (which errors are retried) is what is tested.
FAST_RETRY = RetryPolicy(
    max_attempts=4, backoff_503=0.01, backoff_error=0.01, min_wait_429=0.05, max_backoff=0.2
)


@pytest.fixture(scope="session")
def portal() -> Iterator[Sandbox]:
    with Sandbox(seed=11, deals=120, leads=20, contacts=20, companies=10, users=5, tasks=60) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "portal" in request.fixturenames:
        request.getfixturevalue("portal").clear_faults()


@pytest.fixture
def make_client(portal: Sandbox) -> Iterator[Callable[..., Bitrix24Client]]:
    """Build clients against the session portal, without a client-side bucket unless asked for."""
    made: list[Bitrix24Client] = []

    def make(**kwargs: Any) -> Bitrix24Client:
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("timeout", 10.0)
        if "oauth" not in kwargs:
            kwargs.setdefault("webhook_url", portal.webhook_url)
        if "rate_limit" not in kwargs and "limiter" not in kwargs:
            kwargs["limiter"] = PortalLimiter(None, None)
        client = Bitrix24Client(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Bitrix24Client]) -> Bitrix24Client:
    return make_client()
