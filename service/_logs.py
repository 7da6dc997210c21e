"""Per-prediction capture of ``print`` and ``logging``.

``sys.stdout`` and ``sys.stderr`` are replaced, once per process, by proxies that look up
the current prediction in a context variable: a write made while a prediction runs (in its
Trio task, or in the worker thread Trio copies the context into) goes to that prediction's
logs; any other write goes to the real stream. A ``logging`` handler on the root logger
does the same for log records. Several predictions running at once each see only their
own lines, because each runs in its own context.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TextIO

__all__ = ["capture_logs", "install", "uninstall"]

LogSink = Callable[[str], None]

_current_sink: ContextVar[LogSink | None] = ContextVar("prediction_log_sink", default=None)


class _StreamProxy(io.TextIOBase):
    def __init__(self, real: TextIO) -> None:
        self.real = real

    def write(self, text: str) -> int:
        sink = _current_sink.get()
        if sink is None:
            return self.real.write(text)
        if not isinstance(text, str):  # as a real text stream would say
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        sink(text)
        return len(text)

    def flush(self) -> None:
        if _current_sink.get() is None:
            self.real.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8")


class _SinkHandler(logging.Handler):
    """Sends records logged while a prediction runs to its logs, and only there."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _current_sink.get()
        if sink is None:
            return
        try:
            sink(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


class _OutsidePredictions(logging.Filter):
    """Keeps the service's own handlers from repeating a model's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _current_sink.get() is None


_installed = 0
_handler = _SinkHandler()
_handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
_outside = _OutsidePredictions()


def install() -> None:
    """Start routing writes by prediction. Nested calls are counted."""
    global _installed
    if _installed == 0:
        if not isinstance(sys.stdout, _StreamProxy):
            sys.stdout = _StreamProxy(sys.stdout)
        if not isinstance(sys.stderr, _StreamProxy):
            sys.stderr = _StreamProxy(sys.stderr)
        root = logging.getLogger()
        root.addHandler(_handler)
        for handler in root.handlers:
            if handler is not _handler:
                handler.addFilter(_outside)
    _installed += 1


def uninstall() -> None:
    global _installed
    _installed -= 1
    if _installed == 0:
        if isinstance(sys.stdout, _StreamProxy):
            sys.stdout = sys.stdout.real
        if isinstance(sys.stderr, _StreamProxy):
            sys.stderr = sys.stderr.real
        root = logging.getLogger()
        root.removeHandler(_handler)
        for handler in root.handlers:
            handler.removeFilter(_outside)


@contextlib.contextmanager
def capture_logs(sink: LogSink) -> Iterator[None]:
    """Within this block (and threads started from it by trio), output goes to ``sink``."""
    token = _current_sink.set(sink)
    try:
        yield
    finally:
        _current_sink.reset(token)
