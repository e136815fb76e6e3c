"""What the command line prints: rich tables and progress in a terminal, plain lines otherwise.

A scheduler's or CI's log is not a terminal: there every message is one line with a timestamp, tables are
fixed-width text, and nothing redraws itself. Problems go to stderr, everything else to stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from bitrix24_source.errors import mask


def _is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class Output:
    """The one place sub-commands print through (every line is masked: no secret reaches the screen).

    Args:
        rich: use rich (colours, boxed tables, live progress); default: when stdout is a terminal.
    """

    def __init__(self, *, rich: bool | None = None) -> None:
        self.rich = _is_terminal(sys.stdout) if rich is None else rich
        self._console: Any = None
        self._errors: Any = None
        if self.rich:
            from rich.console import Console

            self._console = Console(highlight=False)
            self._errors = Console(stderr=True, highlight=False)

    def line(self, text: str) -> None:
        """An ordinary message."""
        text = mask(text)
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def problem(self, text: str) -> None:
        """One short line on stderr: something the user must fix."""
        text = mask(text)
        if self._errors is not None:
            self._errors.print(f"[bold red]problem:[/] {text}", markup=True, highlight=False)
        else:
            print(f"problem: {text}", file=sys.stderr, flush=True)

    def ok(self, text: str) -> None:
        """A check that passed."""
        text = mask(text)
        if self._console is not None:
            self._console.print(f"[green]ok[/]  {text}", markup=True, highlight=False)
        else:
            print(f"ok: {text}", flush=True)

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table; columns whose header starts with a space are right-aligned (numbers)."""
        cells = [[mask("" if value is None else str(value)) for value in row] for row in rows]
        if self._console is not None:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for header in headers:
                table.add_column(header.strip(), justify="right" if header.startswith(" ") else "left")
            for row in cells:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [max([len(h.strip()), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

        def render(values: Sequence[str]) -> str:
            parts = [
                v.rjust(w) if h.startswith(" ") else v.ljust(w)
                for v, w, h in zip(values, widths, headers, strict=True)
            ]
            return "  ".join(parts).rstrip()

        print(title, flush=False)
        print(render([h.strip() for h in headers]))
        for row in cells:
            print(render(row))
        sys.stdout.flush()

    @contextmanager
    def step(self, text: str, *, spinner: bool = True) -> Iterator[None]:
        """A stage of work: a start and an end line with seconds; in a terminal, a spinner in between.

        Args:
            text: what is being done.
            spinner: False when something else draws progress meanwhile (dlt's bars), so the two do not fight.
        """
        started = time.monotonic()
        if self._console is not None:
            if spinner:
                with self._console.status(mask(text)):
                    yield
            else:
                self._console.print(f"[bold]>[/] {mask(text)}")
                yield
            self._console.print(f"[green]done[/] {mask(text)} ({time.monotonic() - started:.1f} s)")
            return
        self.line(f"{text} ...")
        yield
        self.line(f"{text}: done in {time.monotonic() - started:.1f} s")
