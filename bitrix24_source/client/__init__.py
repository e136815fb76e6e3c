"""The REST client wing: everything that speaks HTTP to a portal (this file only re-exports the public names).

``Bitrix24Client`` (client.py) is the facade; the other modules are its parts. Nothing here imports the
source, the destination or the sandbox.
"""

from __future__ import annotations

from bitrix24_source.client.auth import OAuthCredentials, OAuthTokens
from bitrix24_source.client.client import Bitrix24Client
from bitrix24_source.client.commands import Command, CommandResult, TimeInfo, ref, ref_array, result_ref
from bitrix24_source.client.limits import RateLimit
from bitrix24_source.client.result import BatchResult, CallResult, ClientStats
from bitrix24_source.client.retry import RetryPolicy

__all__ = [
    "BatchResult",
    "Bitrix24Client",
    "CallResult",
    "ClientStats",
    "Command",
    "CommandResult",
    "OAuthCredentials",
    "OAuthTokens",
    "RateLimit",
    "RetryPolicy",
    "TimeInfo",
    "ref",
    "ref_array",
    "result_ref",
]
