"""The console: progress bars and log lines (rich), silent with --quiet.

Implements the progress interface the engine reports to
(shared.flows.engine.NullProgress: task, advance, done, log).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

__all__ = ["ConsoleUI", "native_output_captured"]


@contextlib.contextmanager
def native_output_captured(fds: tuple = (2,)):
    """Point file descriptors `fds` (default 2, stderr) at one temporary file for
    the block, then give them back.

    For native code that writes to the process' streams directly, past Python's
    sys.stdout/sys.stderr: TensorFlow's start-up lines on 2
    (keras_impl.quiet_tensorflow), the torch ONNX exporter's "Torch IR graph at
    exception" dump on 1 (shared/onnx_export.quiet_exporter). Yields a function
    returning what was written so far (text), so a caller can show it when the
    block failed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    with tempfile.TemporaryFile() as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)

        def written() -> str:
            sink.flush()
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield written
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)

class ConsoleUI:
    """Console output and the progress display; use as a context manager."""

    def __init__(self, quiet: bool):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet)
        # Wide enough for one line per check, also when CI captures the output.
        self.out = Console(quiet=quiet, width=max(260, Console().width))
        self._progress = None

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, disable=self.quiet, transient=True,
        )
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        self._progress.__exit__(*exc)

    def task(self, description: str, total: int):
        return self._progress.add_task(description, total=total)

    def advance(self, task_id, n: int = 1, description: str | None = None):
        kw = {"description": description} if description else {}
        self._progress.update(task_id, advance=n, **kw)

    def done(self, task_id):
        self._progress.remove_task(task_id)

    def log(self, msg: str):
        self.console.print(msg)
