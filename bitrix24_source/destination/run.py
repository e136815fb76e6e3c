"""``run_push``: ``pipeline.run`` into ``bitrix24_destination`` whose failure is one short line; no I/O of its own.

dlt wraps a failed load in ``PipelineStepFailed``: several lines of dlt's own text around the destination's
one line, and a traceback through dlt's frames when nothing catches it. :func:`run_push` raises the
destination's line instead (:class:`PushFailedError`); the CLI's ``push`` prints it as its one problem line.
"""

from __future__ import annotations

from typing import Any

from bitrix24_source.destination.dlt_adapter import JobFailedError, JobRetryError


class PushFailedError(Exception):
    """A push failed: the destination's one line (what happened and what to do).

    Attributes:
        load_id: the dlt load id of the failed push.
        pending: True when dlt kept the load package to resume on the next run (a failure that may pass:
            the portal kept answering with server errors); False when the package was aborted (the next run
            pushes the data it is given).
    """

    def __init__(self, text: str, *, load_id: str | None, pending: bool) -> None:
        super().__init__(text)
        self.load_id = load_id
        self.pending = pending


def failure_line(exc: BaseException) -> str | None:
    """The destination's one line inside a dlt ``PipelineStepFailed`` (or any exception chain), or None when
    the failure is not the destination's."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, JobFailedError):
            return str(node)
        if isinstance(node, JobRetryError):
            return f"{node} (dlt stopped retrying: the load resumes on the next run)"
        inner = getattr(node, "client_exception", None) or getattr(node, "exception", None)
        node = inner if isinstance(inner, BaseException) else (node.__cause__ or node.__context__)
    return None


def run_push(pipeline: Any, data: Any = None, **run_kwargs: Any) -> Any:
    """``pipeline.run(data, **run_kwargs)`` for a pipeline that pushes to ``bitrix24_destination``.

    Args:
        pipeline: the push pipeline.
        data: what ``pipeline.run`` takes (a DataFrame, records, :func:`~.rows.bitrix24_rows`, ...).
        **run_kwargs: passed to ``pipeline.run`` (``table_name=...``).

    Returns:
        dlt's ``LoadInfo``.

    Raises:
        PushFailedError: the push failed because of the portal or the destination's settings (a portal that
            is down, a wrong webhook, a missing scope, ...): one line, without dlt's wrapping and traceback.
            Other failures are raised as dlt raises them.
    """
    from dlt.pipeline.exceptions import PipelineStepFailed

    try:
        return pipeline.run(data, **run_kwargs)
    except PipelineStepFailed as exc:
        line = failure_line(exc)
        if line is None:
            raise
        pending = bool(getattr(exc, "has_pending_data", False))
        raise PushFailedError(line, load_id=exc.load_id, pending=pending) from None
