"""Values the client returns: :class:`CallResult`, :class:`BatchResult` and the :class:`ClientStats` counters; no I/O.

:class:`BatchResult` also offers the b24jssdk ``Result`` view (``isSuccess``, ``getErrors()``,
``getErrorMessages()``, ``getData()`` become ``is_success``, ``errors``, ``error_messages``, ``data``) so that
code written against the documented batch API translates line by line (README "Using the client directly").
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bitrix24_source.client.commands import CommandResult, TimeInfo
from bitrix24_source.errors import Bitrix24Error

__all__ = ["BatchResult", "CallResult", "ClientStats", "StatsCounter"]


@dataclass(frozen=True, slots=True)
class CallResult:
    """A successful single call.

    Attributes:
        result: the ``result`` payload as the portal sent it.
        total: top-level ``total`` (v2 list methods), else None.
        next: top-level ``next`` (v2 list methods, only when more rows remain), else None.
        time: the ``time`` object.
        http_status: HTTP status of the answer.
        request_id: the request id that was sent.
        raw: the whole decoded body.
    """

    result: Any
    total: int | None = None
    next: int | None = None
    time: TimeInfo | None = None
    http_status: int = 200
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_success(self) -> bool:
        return True

    @property
    def data(self) -> Any:
        return self.result


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-command results of a batch, in input order.

    Attributes:
        results: one :class:`CommandResult` per input command, in input order.
        named: True when the input was a dict of named commands (``data`` is then a dict).
        return_raw: when True, ``data`` holds the :class:`CommandResult` objects themselves (b24jssdk's
            ``returnAjaxResult: true``); otherwise only successful commands' ``result`` values.
        time: the batch-level ``time`` of the last HTTP request.
        request_id: the request id that was sent.
    """

    results: Sequence[CommandResult]
    named: bool = False
    return_raw: bool = False
    time: TimeInfo | None = None
    request_id: str | None = None

    @property
    def by_key(self) -> dict[str, CommandResult]:
        """Command key -> result (keys are the names for named input, ``c<index>`` otherwise)."""
        return {r.key: r for r in self.results}

    @property
    def is_success(self) -> bool:
        """True when every command succeeded."""
        return all(r.ok for r in self.results)

    @property
    def errors(self) -> list[Bitrix24Error]:
        """Errors of failed, halted and unknown-outcome commands, in input order.

        Each carries the command's input position (``index``), ``method``, ``code``, ``description`` and
        ``command_key``.
        """
        return [r.error for r in self.results if not r.ok and r.error is not None]

    @property
    def error_messages(self) -> list[str]:
        return [str(e) for e in self.errors]

    @property
    def failed(self) -> list[CommandResult]:
        """Commands whose outcome is not ``ok``."""
        return [r for r in self.results if not r.ok]

    @property
    def unknown(self) -> list[CommandResult]:
        """Write commands whose outcome is unknown (the request ended ambiguously, §6.6)."""
        return [r for r in self.results if r.outcome == "unknown"]

    @property
    def data(self) -> list[Any] | dict[str, Any]:
        """SDK-like data: successful results only (by name for named input), or every
        :class:`CommandResult` when ``return_raw`` was requested."""
        if self.return_raw:
            if self.named:
                return {r.key: r for r in self.results}
            return list(self.results)
        if self.named:
            return {r.key: r.result for r in self.results if r.ok}
        return [r.result for r in self.results if r.ok]

    def raise_for_errors(self) -> None:
        """Raise the first command's error (input order) when any command did not succeed.

        Commands skipped by a halt have no error of their own; the error that caused the halt is raised.
        """
        for r in self.results:
            if not r.ok and r.error is not None:
                raise r.error

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, key: int | str) -> CommandResult:
        """``batch[0]`` by input position, ``batch["name"]`` by command key."""
        if isinstance(key, int):
            return self.results[key]
        return self.by_key[key]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counters of one client (a snapshot)."""

    http_requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    rejected_503: int = 0
    rejected_429: int = 0
    token_refreshes: int = 0


class StatsCounter:
    """The running :class:`ClientStats` of one client; the transport, auth and retry parts add to it from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = ClientStats()

    @property
    def snapshot(self) -> ClientStats:
        with self._lock:
            return self._stats

    def add(self, **deltas: float) -> None:
        """Add ``deltas`` to the named counters (``add(retries=1, waited_seconds=0.5)``)."""
        with self._lock:
            values = {name: getattr(self._stats, name) + delta for name, delta in deltas.items()}
            self._stats = replace(self._stats, **values)
