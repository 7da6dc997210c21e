"""One prediction's state, and the signal that tells its webhook task that it changed.

The model side (a trio task, or a worker thread for sync models) only ever appends output,
appends logs and bumps a version counter; it never awaits anything. The webhook task reads
a :meth:`Prediction.snapshot` whenever it decides to send.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import trio

from ._schema import ALL_EVENTS, Status

__all__ = ["ChangeSignal", "Prediction", "new_prediction_id", "utcnow"]


def utcnow() -> str:
    return datetime.now(UTC).isoformat()


def new_prediction_id() -> str:
    """26 characters of lower-case base32 from a UUID4, as Cog makes them."""
    return base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=").lower()


class ChangeSignal:
    """Wakes the webhook task when the prediction changed; never blocks, never grows.

    A memory channel of capacity 1 carries wake-ups: any number of changes between two
    reads of it collapse into one wake-up, since the webhook task always sends the latest
    snapshot anyway. While a wake-up is pending, :meth:`notify` is a flag check: no
    allocation, no exception, no call into Trio. It may be called from any thread; from a
    worker thread it schedules at most one call into the Trio loop at a time. Closing the
    channel (when the model task is done) tells the webhook task that the prediction is
    terminal; :meth:`wait_finished` lets it wait for just that, ignoring changes.
    """

    def __init__(self) -> None:
        self._send, self.receive = trio.open_memory_channel[None](1)
        self._token = trio.lowlevel.current_trio_token()
        self._loop_thread = threading.get_ident()
        self._queued = False  # a wake-up is in the channel or on its way there
        self._closed = False
        self._finished = trio.Event()

    def notify(self) -> None:
        if self._queued or self._closed:
            return
        self._queued = True
        if threading.get_ident() == self._loop_thread:
            self._wake()
        else:
            try:
                self._token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        try:
            self._send.send_nowait(None)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._queued = False

    async def wait(self) -> bool:
        """Wait for a change; ``False`` once the model is done and nothing more will come."""
        try:
            await self.receive.receive()
        except trio.EndOfChannel:
            return False
        self._queued = False
        return True

    @property
    def finished(self) -> bool:
        """The model is done: no change will come any more."""
        return self._closed

    async def wait_finished(self) -> None:
        """Wait until the model is done, whatever changes meanwhile."""
        await self._finished.wait()

    def close(self) -> None:
        self._closed = True
        self._send.close()
        self._finished.set()


class Prediction:
    """The mutable state of one prediction, owned by the runner.

    ``output_version`` and ``logs_version`` only ever increase; the webhook task compares
    them with what it last sent to know which events a new request would report.
    """

    def __init__(
        self,
        id: str,
        input: dict[str, Any],
        webhook: str | None = None,
        webhook_events_filter: frozenset[str] = ALL_EVENTS,
    ) -> None:
        self.id = id
        self.input = input
        self.webhook = webhook
        self.webhook_events_filter = webhook_events_filter
        self.status = Status.STARTING
        self.created_at = utcnow()
        self.started_at: str | None = None
        self.completed_at: str | None = None
        self.error: str | None = None
        self.predict_time: float | None = None
        self._output: Any = None
        self._output_is_list = False
        self._logs: list[str] = []
        self._logs_lock = threading.Lock()  # a worker thread appends while the loop joins
        self.output_version = 0
        self.logs_version = 0
        #: Cancelling it stops the model; created here so a cancel before start works too.
        self.cancel_scope = trio.CancelScope()
        self.cancel_requested = False
        #: Set by the runner while a sync model runs in a thread: raises in that thread.
        self.interrupt_thread: Callable[[], None] | None = None
        self.done = trio.Event()
        self.signal: ChangeSignal | None = None
        # Only changes the webhook reports wake its task (a ["completed"] filter: none).
        self._wake_on_output = "output" in webhook_events_filter
        self._wake_on_logs = "logs" in webhook_events_filter
        #: Name of the worker thread left behind when a sync model ignored its cancel.
        self.abandoned_thread: str | None = None
        self._frozen = False  # terminal: an abandoned thread can no longer change it
        self._started_clock: float | None = None

    # -- model side: cheap, never awaits, safe from the model's worker thread --------

    def append_output(self, item: Any) -> None:
        if self._frozen:
            return
        if not self._output_is_list:
            self._output = []
            self._output_is_list = True
        self._output.append(item)
        self.output_version += 1
        if self._wake_on_output and self.signal is not None:
            self.signal.notify()

    def set_output(self, value: Any) -> None:
        if self._frozen:
            return
        self._output = value
        self._output_is_list = False
        self.output_version += 1
        if self._wake_on_output and self.signal is not None:
            self.signal.notify()

    def append_logs(self, text: str) -> None:
        if not text or self._frozen:
            return
        with self._logs_lock:
            self._logs.append(text)
            self.logs_version += 1
        if self._wake_on_logs and self.signal is not None:
            self.signal.notify()

    # -- runner side ------------------------------------------------------------------

    @property
    def logs(self) -> str:
        with self._logs_lock:
            if len(self._logs) > 1:
                self._logs[:] = ["".join(self._logs)]
            return self._logs[0] if self._logs else ""

    @property
    def output(self) -> Any:
        return list(self._output) if self._output_is_list else self._output

    def mark_processing(self) -> None:
        self.status = Status.PROCESSING
        self.started_at = utcnow()
        self._started_clock = trio.current_time()

    def mark_terminal(self, status: Status, error: str | None = None) -> None:
        """Record the one terminal status; later calls change nothing."""
        if self.status.terminal:
            return
        self._frozen = True
        self.status = status
        self.error = error
        self.completed_at = utcnow()
        if self._started_clock is not None:
            self.predict_time = trio.current_time() - self._started_clock
        else:
            self.predict_time = 0.0

    def snapshot(self) -> dict[str, Any]:
        """The prediction object as the API renders it, detached from further changes."""
        return {
            "id": self.id,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "logs": self.logs,
            "error": self.error,
            "metrics": None if self.predict_time is None else {"predict_time": self.predict_time},
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "webhook": self.webhook,
            "webhook_events_filter": sorted(
                self.webhook_events_filter, key=["start", "output", "logs", "completed"].index
            ),
        }
