"""The local Bitrix24 sandbox portal: a real HTTP server on 127.0.0.1 speaking REST v2 and v3.

Quick start::

    from bitrix24_source.sandbox import Sandbox, RateLimit, Fault

    with Sandbox(seed=7, deals=2000) as portal:
        print(portal.webhook_url)      # http://127.0.0.1:<port>/rest/1/<code>/
        portal.inject(Fault("http_503", method="batch"))
        print(portal.stats())

The sandbox never imports the client modules: it implements the server side from the protocol notes on its
own, so one misunderstanding of the protocol cannot hide on both sides of a test.
"""

from __future__ import annotations

from bitrix24_source.sandbox.auth import OAuthApp
from bitrix24_source.sandbox.faults import Fault
from bitrix24_source.sandbox.server import Sandbox, SandboxStats
from bitrix24_source.sandbox.types import (
    ApiError,
    CallContext,
    CostModel,
    MethodResult,
    RateLimit,
    SeedCounts,
)

__all__ = [
    "ApiError",
    "CallContext",
    "CostModel",
    "Fault",
    "MethodResult",
    "OAuthApp",
    "RateLimit",
    "Sandbox",
    "SandboxStats",
    "SeedCounts",
]
