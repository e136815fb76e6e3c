"""The only code touching dlt internals: the load-completion hook, checkpoint commits, reading load job files.

Its only I/O is reading the load job file dlt hands over. Everything else the destination needs from
dlt is public API (``dlt.current.load_package_state()``, ``dlt.current.destination_state()``,
``dlt.current.pipeline()``, ``dlt.destinations``, the destination exceptions) and is used where it is needed.

Why internals at all:

* **Completion hook.** The results are flushed when dlt completes a load package, and dlt 1.31 has no public
  hook for that moment: the @dlt.destination callable sees one job at a time and cannot tell the last one
  (dlt may retry jobs); trace and collector callbacks (dlt.pipeline.trace.TRACKING_MODULES,
  Collector.on_end_trace_step) run after the load step and swallow their exceptions (suppress_and_warn), so a
  failed flush would go unnoticed; a wrapper around pipeline.run() would miss packages that a plain
  pipeline.run() / pipeline.load() resumes. The loader calls the job client's complete_load(load_id) once per
  package, after every job completed and before the package is marked loaded; an exception there leaves the
  package pending, and the next run calls it again. So the flush hooks in there, by subclassing dlt's
  custom-destination factory and job client (dlt.destinations.impl.destination.*, not public API).
  :func:`check_dlt_internals` refuses to build the destination if they change, and
  tests/destination/test_dlt_adapter.py pins the behaviour the flush relies on.
* **Aborting failed packages.** A terminal failure must abort its package (:func:`abort_on_terminal_error`),
  which dlt does only when its loader configuration says so; the destination sets it per pipeline when the
  pipeline creates the destination's job client (:class:`_CompletingFactory`).
* **Short failures.** dlt formats a failed job's message from the exception's whole traceback and logs it
  twice with that traceback, and its ``PipelineStepFailed`` repeats it: a portal that is down printed three
  tracebacks around one line. A job error of this destination (:class:`JobFailedError`,
  :class:`JobRetryError`) is one line that already says what happened; the job's failed message is that line
  (:func:`_one_line_failures`), and :class:`_QuietJobErrors` keeps dlt's logger from printing its traceback.
* **Checkpoints.** ``dlt.current.destination_state()`` is public, but committing it mid-job is not:
  :func:`commit_destination_state`.
* **Load job files.** The file name (its file id and format), dlt's typed JSON lines, and the variant columns
  dlt writes for values whose type differs from their column's: :func:`job_file_id`, :func:`read_rows`.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any, ClassVar, Final

import dlt
from dlt.common.destination import Destination
from dlt.common.destination.client import RunnableLoadJob
from dlt.common.destination.exceptions import DestinationTerminalException, DestinationTransientException
from dlt.common.normalizers.naming.direct import NamingConvention as DirectNamingConvention
from dlt.common.storages import FileStorage
from dlt.common.storages.load_package import commit_load_package_state
from dlt.common.storages.load_storage import ParsedLoadJobFileName
from dlt.destinations.impl.destination.destination import DestinationClient as _CustomDestinationClient
from dlt.destinations.impl.destination.factory import destination as _CustomDestinationFactory

# --- job errors --------------------------------------------------------------------------------------------


class JobFailedError(DestinationTerminalException):
    """A load job of this destination failed for good; the text is one line that says why (and what to do).

    dlt fails the job without retrying it, and aborts its package (:func:`abort_on_terminal_error`).
    """


class JobRetryError(DestinationTransientException):
    """A load job of this destination failed for now; dlt runs it again. The text is one line."""


_JOB_ERRORS: Final = (JobFailedError, JobRetryError)

# --- the completion hook -----------------------------------------------------------------------------------

_DLT_INTERNALS: Final = (
    (_CustomDestinationFactory, "client_class", property),
    (_CustomDestinationClient, "complete_load", FunctionType),
    (_CustomDestinationClient, "__init__", FunctionType),
    (_CustomDestinationClient, "create_load_job", FunctionType),
    (RunnableLoadJob, "failed_message", FunctionType),
)


def check_dlt_internals() -> None:
    """Fail loudly (instead of never flushing the results) when dlt changed what the adapter overrides."""
    missing = [
        f"{owner.__module__}.{owner.__qualname__}.{name}"
        for owner, name, kind in _DLT_INTERNALS
        if not isinstance(inspect.getattr_static(owner, name, None), kind)
    ]
    if missing:
        raise RuntimeError(
            f"bitrix24 destination: dlt {dlt.__version__} no longer has {', '.join(missing)}, which the "
            "destination hooks to record its write results (it was built against dlt 1.31)"
        )


class _CompletingClient(_CustomDestinationClient):
    """dlt's custom-destination job client that also runs ``on_load_complete(load_id)`` when a load ends."""

    on_load_complete: ClassVar[Callable[[str], None]]

    def complete_load(self, load_id: str) -> None:
        super().complete_load(load_id)
        type(self).on_load_complete(load_id)

    def create_load_job(self, table: Any, file_path: str, load_id: str, restore: bool = False) -> Any:
        job = super().create_load_job(table, file_path, load_id, restore)
        return _one_line_failures(job)


def _one_line_failures(job: Any) -> Any:
    """`job` (as dlt's custom destination created it) whose failed message, when one of this destination's
    job errors (:data:`_JOB_ERRORS`) failed it, is the error's one line instead of the formatted traceback
    (dlt puts that message into its log and into the ``PipelineStepFailed`` the caller gets)."""
    if not isinstance(job, RunnableLoadJob):
        return job
    formatted = job.failed_message

    def failed_message() -> str:
        exc = job.exception()
        return str(exc) if isinstance(exc, _JOB_ERRORS) else formatted()

    job.failed_message = failed_message  # type: ignore[method-assign]
    return job


class _QuietJobErrors(logging.Filter):
    """On dlt's logger: a job error of this destination is logged as its one line, without the traceback.

    dlt logs every failed job with ``logger.exception`` (the traceback of our code and of its own frames),
    then once more with the failed message. A terminal failure reaches the caller in ``PipelineStepFailed``
    with the same line, so dlt's records of it are dropped; a job that dlt retries keeps a one-line record
    (that it will be retried, and why).
    """

    def __init__(self) -> None:
        super().__init__()
        self._raised: deque[str] = deque(maxlen=32)  # texts of the terminal errors dropped so far

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, JobFailedError):
            self._raised.append(str(exc))
            return False
        if isinstance(exc, JobRetryError):
            record.msg, record.args = f"{record.getMessage()}: {exc}", ()
            record.exc_info, record.exc_text = None, None
            return True
        if self._raised and record.levelno >= logging.ERROR:
            message = record.getMessage()
            return not any(text in message for text in list(self._raised))
        return True


_QUIET: Final = _QuietJobErrors()


def quiet_job_errors() -> None:
    """Install :class:`_QuietJobErrors` on dlt's logger (once per process)."""
    dlt_logger = logging.getLogger("dlt")
    if _QUIET not in dlt_logger.filters:
        dlt_logger.addFilter(_QUIET)


class _CompletingFactory(_CustomDestinationFactory):
    """dlt's custom-destination factory whose job client runs a completion hook (see the module docstring).

    It keeps the base class's ``__init__``: dlt reads the factory's options from that signature.
    """

    _client_class: type[_CompletingClient]

    @property
    def client_class(self) -> type[_CustomDestinationClient]:
        return self._client_class

    def client(self, schema: Any, initial_config: Any = None) -> Any:
        abort_on_terminal_error()
        return super().client(schema, initial_config)


_AUTO_ABORT: Final = "load.auto_abort_on_terminal_error"


def abort_on_terminal_error() -> None:
    """Make dlt abort a load package whose job fails terminally, for the pipeline loading right now.

    dlt keeps a package whose job failed terminally pending, and the next ``pipeline.run(new_data)`` loads
    that package instead of the new data: a failed push (a wrong webhook) would be replayed when the user
    fixes it and pushes a new frame. dlt's ``auto_abort_on_terminal_error`` aborts the package instead. The
    pipeline creates the destination client just before it resolves its loader configuration, so the
    option is set here, in the config under the pipeline's own name (other pipelines are not affected), and
    only when the user has not set it either way.
    """
    pipeline = dlt.current.pipeline()
    scoped = f"{pipeline.pipeline_name}.{_AUTO_ABORT}"
    if scoped not in dlt.config and _AUTO_ABORT not in dlt.config:
        dlt.config[scoped] = True


def completing_destination(
    destination_callable: Callable[..., None], on_load_complete: Callable[[str], None], **kwargs: Any
) -> Destination[Any, Any]:
    """What ``@dlt.destination(**kwargs)`` builds from `destination_callable`, plus a call to
    ``on_load_complete(load_id)`` when dlt completes a load package."""
    check_dlt_internals()
    quiet_job_errors()
    factory = _CompletingFactory(destination_callable=destination_callable, **kwargs)
    # A client class per factory: dlt builds the job client from the class alone (Destination.client()).
    factory._client_class = type(
        "_Bitrix24JobClient", (_CompletingClient,), {"on_load_complete": staticmethod(on_load_complete)}
    )
    return factory


# --- checkpoints -------------------------------------------------------------------------------------------


def commit_destination_state() -> None:
    """Persist the load package state (with ``dlt.current.destination_state()``) now, mid-job."""
    commit_load_package_state()


# --- load job files ----------------------------------------------------------------------------------------


def job_file_id(path: str) -> str:
    """The file id dlt gave a load job file: the job's identity within its load."""
    return ParsedLoadJobFileName.parse(path).file_id


def read_rows(path: str) -> list[dict[str, Any]]:
    """All rows of a load job file, in file order, without dlt's own columns."""
    parsed = ParsedLoadJobFileName.parse(path)
    if parsed.file_format == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        from dlt.common.json import json as dlt_json

        rows = []
        with FileStorage.open_zipsafe_ro(path) as f:
            for line in f:
                if line.strip():
                    loaded = dlt_json.typed_loads(line)
                    rows.extend(loaded if isinstance(loaded, list) else [loaded])
    return [fold_variants(row) for row in rows]


# dlt stores a value whose type differs from its column's in a variant column `<name>▶v_<type>` (direct
# naming convention's path separator); the user wrote `<name>`, so validation must see `<name>`.
_VARIANT_MARK: Final = f"{DirectNamingConvention.PATH_SEPARATOR}v_"


def fold_variants(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the user wrote it: variant columns folded back into their column, dlt's columns dropped."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column.startswith("_dlt_"):
            continue
        base = column.split(_VARIANT_MARK, 1)[0] if _VARIANT_MARK in column else column
        if base not in out or out[base] is None:
            out[base] = value
    return out
