"""Fault injection: the :class:`Fault` value and the thread-safe registry that matches it to requests.

Three families of kinds (DESIGN.md "Sandbox contract"):

* transport faults, matched against the top-level method of an HTTP request (``batch`` for batches):
  ``http_503`` (``QUERY_LIMIT_EXCEEDED``), ``http_429`` (``OPERATION_TIME_LIMIT``), ``http_500``
  (``INTERNAL_SERVER_ERROR``), ``reset`` (the connection is closed with no response), ``hang`` (sleep
  ``delay`` seconds, then answer if the client is still there) and ``truncated`` (the JSON body is cut in
  half), ``moved`` (302 to the portal's other loopback name, §1.6 "portal renamed"). With ``phase="after"`` the request is fully executed first (writes committed) and the fault then
  replaces the response: that is how tests create "unknown outcome" writes.
* call faults, matched against every executed method call, i.e. a single call or one sub-command of a
  batch (``command_index`` selects the position inside a batch): ``command_error`` fails the call with
  ``error_code`` and ``empty_error`` fails it with ``"error": ""`` (§2.2). ``phase="after"`` executes the
  call and then reports the error.
* ``expire_token``: when a matching request arrives, the current OAuth access token expires at once, so
  that request (if it uses OAuth) gets 401 ``expired_token``.

``after`` skips that many matching requests first; ``times`` is how often the fault fires (None: always).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "http_503",
    "http_429",
    "http_500",
    "reset",
    "hang",
    "truncated",
    "moved",
    "command_error",
    "empty_error",
    "expire_token",
]

TRANSPORT_KINDS = frozenset({"http_503", "http_429", "http_500", "reset", "hang", "truncated", "moved"})
CALL_KINDS = frozenset({"command_error", "empty_error"})
_ALL_KINDS = TRANSPORT_KINDS | CALL_KINDS | {"expire_token"}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault; see the module docstring for the kinds.

    Args:
        kind: what goes wrong.
        method: lowercased method name to match (``batch`` for a whole batch); None matches any.
        times: how many times the fault fires; None fires on every match.
        after: matching requests (or calls) to let through before the first firing.
        command_index: for call faults, the 0-based position inside a batch; None matches any position
            and single calls too.
        phase: ``"before"`` (nothing is executed) or ``"after"`` (executed, then the fault replaces the
            response).
        error_code: the error code of ``command_error`` (default ``INTERNAL_SERVER_ERROR``).
        delay: seconds a ``hang`` sleeps (default 5).
    """

    kind: FaultKind
    method: str | None = None
    times: int | None = 1
    after: int = 0
    command_index: int | None = None
    phase: Literal["before", "after"] = "before"
    error_code: str | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _ALL_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(_ALL_KINDS)}")
        if self.phase not in ("before", "after"):
            raise ValueError(f"phase must be 'before' or 'after', not {self.phase!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None")
        if self.after < 0:
            raise ValueError("after must be >= 0")


class _Armed:
    __slots__ = ("fault", "fired", "seen")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.seen = 0
        self.fired = 0


class FaultRegistry:
    """Holds armed faults and decides, under a lock, which one fires for a request or call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._armed.append(_Armed(fault))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def __bool__(self) -> bool:
        return bool(self._armed)

    def pending(self) -> list[Fault]:
        """Faults that can still fire."""
        with self._lock:
            return [a.fault for a in self._armed if a.fault.times is None or a.fired < a.fault.times]

    def take(
        self,
        kinds: frozenset[str],
        method: str,
        *,
        command_index: int | None = None,
        in_batch: bool = False,
    ) -> Fault | None:
        """Return the first armed fault of ``kinds`` matching this request or call, counting it as fired.

        Every matching armed fault counts the event toward its ``after`` skip, so two faults on the same
        method see the same sequence of requests.
        """
        if not self._armed:
            return None
        with self._lock:
            chosen: Fault | None = None
            for armed in self._armed:
                fault = armed.fault
                if fault.kind not in kinds:
                    continue
                if fault.times is not None and armed.fired >= fault.times:
                    continue
                if fault.method is not None and fault.method.lower() != method:
                    continue
                if fault.command_index is not None and (not in_batch or fault.command_index != command_index):
                    continue
                armed.seen += 1
                if chosen is None and armed.seen > fault.after:
                    armed.fired += 1
                    chosen = fault
            return chosen
