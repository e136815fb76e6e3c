"""PortalReader: the source's one way to the portal (I/O: batches and calls through `Bitrix24Client`).

Every request a resource makes goes through `PortalReader.batch` or `PortalReader.call`, which count it in the
resource's `ResourceStats` and note the portal time of the first answer of a scan: rows changed after that
moment are left to the next run (`PortalReader.after_scan_start`), so the stored incremental cursor never
jumps past an edit made during the scan. The paging loops themselves are in keyset.py (v2 lists) and
task_pages.py (v3 tasks); the commands they send are built in queries.py.

Long waits of the client's limiter (operating budget, a full request bucket, 429/503 answers) are shown in
the running pipeline's progress display (`show_wait`), next to the WARNING the limiter logs.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlt.common.pipeline import current_pipeline
from dlt.common.runtime.collector import LogCollector

from bitrix24_source.client import Bitrix24Client
from bitrix24_source.client.commands import CommandResult, TimeInfo
from bitrix24_source.client.limits import WaitNotice
from bitrix24_source.client.result import CallResult
from bitrix24_source.source.queries import Cmd

WAIT_COUNTER = "bitrix24 limiter waits"
"""The progress counter of the limiter's long waits (one per wait; the message says why and how long)."""


def show_wait(notice: WaitNotice) -> None:
    """Show a long limiter wait in the progress display of the pipeline that is running, if any.

    dlt's progress collectors (`dlt.pipeline(progress=...)`, used by `bitrix24-dlt sync`) count named items
    and carry a message; the wait becomes a counter with the reason and length as its message. The log
    collector prints its counters at most every `log_period` seconds, so it is told to print them now: a
    wait of minutes is shown when it starts.
    """
    pipeline = current_pipeline()
    if pipeline is None:
        return
    collector = pipeline.collector
    if isinstance(collector, LogCollector) and collector.counters is None:
        # between dlt's steps: no step is being counted
        return
    collector.update(WAIT_COUNTER, inc=0 if notice.ongoing else 1, message=notice.describe())
    if isinstance(collector, LogCollector):
        collector.dump_counters()


@dataclass(slots=True)
class ResourceStats:
    """What one resource cost in the current run.

    Attributes:
        rows: rows read from the portal (before dlt's incremental filtering).
        requests: HTTP requests the resource made (batches count once; task results ride with tasks).
        seconds: time spent waiting for those requests, client-side rate limiting included.
    """

    rows: int = 0
    requests: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "requests": self.requests, "seconds": round(self.seconds, 3)}


@dataclass(slots=True)
class RunStats:
    """`ResourceStats` by resource name, shared by the resources of one source (they may run in threads)."""

    by_resource: dict[str, ResourceStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_request(self, resource: str, seconds: float) -> None:
        with self.lock:
            own = self.by_resource.setdefault(resource, ResourceStats())
            own.requests += 1
            own.seconds += seconds

    def get(self, resource: str) -> ResourceStats:
        with self.lock:
            return self.by_resource.setdefault(resource, ResourceStats())

    def reset(self, resource: str) -> ResourceStats:
        """Start a new run of `resource` (a source object may be run more than once)."""
        with self.lock:
            fresh = self.by_resource[resource] = ResourceStats()
            return fresh


class PortalReader:
    """Sends a resource's batches and calls over one shared client, counting each in the resource's stats.

    The client's limiter is process-wide per portal, so one reader may serve every resource and thread.

    Args:
        client: the client of the portal.
        stats: where requests are counted (a fresh `RunStats` when not given).
    """

    def __init__(self, client: Bitrix24Client, stats: RunStats | None = None) -> None:
        self.client = client
        self.stats = stats if stats is not None else RunStats()
        client.limiter.add_wait_listener(show_wait)
        self._scan_start: dict[str, _dt.datetime | None] = {}
        self._scan_lock = threading.Lock()

    def batch(self, resource: str, calls: Mapping[str, Cmd], *, version: int = 2) -> Sequence[CommandResult]:
        """Send named commands as one batch (halting on the first error); their results in order."""
        started = time.monotonic()
        try:
            answer = self.client.batch(dict(calls), halt_on_error=True, version=version)
            self._note_portal_time(resource, answer.time)
            return answer.results
        finally:
            self.stats.add_request(resource, time.monotonic() - started)

    def call(self, resource: str, method: str, params: Mapping[str, Any], *, version: int = 2) -> Any:
        """Call one method; its `result`."""
        return self.answer(resource, method, params, version=version).result

    def answer(
        self, resource: str, method: str, params: Mapping[str, Any], *, version: int = 2
    ) -> CallResult:
        """Call one method; the whole answer (a v2 list's `total` and `next` tell which pages remain)."""
        started = time.monotonic()
        try:
            answer = self.client.call(method, dict(params), version=version)
            self._note_portal_time(resource, answer.time)
            return answer
        finally:
            self.stats.add_request(resource, time.monotonic() - started)

    def begin_scan(self, resource: str) -> None:
        """Forget the start time of `resource`'s previous scan; the next answer's portal time is the new one.

        Rows are walked in id order while the cursor (`updatedTime`/`changed`) that dlt stores is the largest
        value seen. A row edited during the scan after its id was passed is not seen, while a row with a
        higher id edited even later is, so the stored cursor could jump past the missed edit for good. Rows
        changed after the scan's first answer are therefore left to the next run (`after_scan_start`), so the
        stored cursor never exceeds the scan's start and every edit made during a run is read by the next one.
        """
        with self._scan_lock:
            self._scan_start[resource] = None

    def after_scan_start(self, resource: str, value: Any) -> bool:
        """Whether a row's cursor value is later than the portal time at which `resource`'s scan started."""
        with self._scan_lock:
            start = self._scan_start.get(resource)
        if start is None or not isinstance(value, str) or not value:
            return False
        stamp = _dt.datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            return False
        return stamp > start

    def _note_portal_time(self, resource: str, when: TimeInfo | None) -> None:
        if when is None or when.start is None:
            return
        with self._scan_lock:
            if resource in self._scan_start and self._scan_start[resource] is None:
                # `time.start` is the portal's clock (§2.1), so the cap does not depend on this machine's.
                self._scan_start[resource] = _dt.datetime.fromtimestamp(when.start, _dt.timezone.utc)
