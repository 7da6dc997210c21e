"""Running predictions: slots, the prediction registry, setup, cancel and shutdown.

Shape, in one place (:meth:`PredictionRunner._run_prediction`): the runner owns one
long-lived nursery; each prediction gets a nursery of its own inside it with exactly two
children, the model task and, when the prediction has a webhook, the webhook task. The model
task closes the prediction's change signal when the model is done; that is how the webhook
task learns to send the terminal request.
"""

from __future__ import annotations

import enum
import logging
import traceback
from collections import OrderedDict
from typing import Any

import trio

from ._config import Config
from ._logs import capture_logs
from ._prediction import ChangeSignal, Prediction, new_prediction_id, utcnow
from ._predictor import CancelationException, LoadedPredictor, ModelThread
from ._schema import ALL_EVENTS, PredictionRequest, Status
from ._webhooks import WebhookSender

__all__ = ["Busy", "Health", "NotReady", "PredictionRunner"]

log = logging.getLogger("service.runner")


class Health(enum.StrEnum):
    STARTING = "STARTING"
    READY = "READY"
    BUSY = "BUSY"
    SETUP_FAILED = "SETUP_FAILED"
    DEFUNCT = "DEFUNCT"


class Busy(Exception):
    """Every slot is taken."""


class NotReady(Exception):
    """Setup has not finished, has failed, or the service is shutting down."""


class PredictionRunner:
    """Owns the predictions of one app: creates, runs, cancels and remembers them."""

    def __init__(self, predictor: LoadedPredictor, config: Config, webhooks: WebhookSender):
        self.predictor = predictor
        self.config = config
        self.webhooks = webhooks
        self._nursery: trio.Nursery | None = None
        self._active: dict[str, Prediction] = {}  # holding a slot
        self._open: dict[str, Prediction] = {}  # nursery still open (webhooks pending)
        self._finished: OrderedDict[str, Prediction] = OrderedDict()
        self._all_closed = trio.Event()
        self._all_closed.set()
        self.setup_status = Status.STARTING
        self.setup_logs: list[str] = []
        self.setup_started_at: str | None = None
        self.setup_completed_at: str | None = None
        self.shutting_down = False
        self.setup_done = trio.Event()
        self._stopped = trio.Event()  # set when run() has returned
        #: Cancelled by stop_now(): shutdown skips its grace periods and deadlines.
        self._patience = trio.CancelScope()
        #: Worker threads of sync models that ignored a cancel and still run.
        self._abandoned: list[ModelThread] = []
        #: How many threads were ever abandoned.
        self.abandoned_total = 0

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the runner's nursery, run setup, then serve until :meth:`shutdown`."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._setup()
                await trio.sleep_forever()
        finally:
            self._stopped.set()

    async def _setup(self) -> None:
        self.setup_started_at = utcnow()
        self.setup_status = Status.PROCESSING
        try:
            with capture_logs(self.setup_logs.append):
                await self.predictor.run_setup()
        except Exception:
            self.setup_logs.append(traceback.format_exc())
            self.setup_status = Status.FAILED
            log.error("setup of %s failed:\n%s", self.predictor.name, self.setup_logs[-1])
        else:
            self.setup_status = Status.SUCCEEDED
            log.info("setup of %s done; ready for predictions", self.predictor.name)
        finally:
            # Also when a shutdown cancels setup: nobody may wait for it forever.
            self.setup_completed_at = utcnow()
            self.setup_done.set()

    async def shutdown(self) -> None:
        """Stop: refuse new predictions, let running ones go on for ``shutdown_grace``,
        cancel the rest, wait for their terminal webhooks (at most ``cancel_grace`` +
        ``shutdown_webhook_deadline``), then stop every task of the runner.

        Returns once the runner's nursery has closed. :meth:`stop_now` cuts the waits short.
        """
        self.shutting_down = True
        with self._patience:
            try:
                with trio.move_on_after(self.config.shutdown_grace):
                    for p in list(self._active.values()):
                        await p.done.wait()
            finally:
                for p in list(self._active.values()):
                    self.cancel(p.id)
            deadline = self.config.cancel_grace + self.config.shutdown_webhook_deadline
            with trio.move_on_after(deadline):
                await self._all_closed.wait()
        if self._open:
            log.warning(
                "shutdown: %d prediction(s) not finished (model or webhook); stopped",
                len(self._open),
            )
        if self._nursery is not None:
            # Whatever is left is cancelled from outside: models are canceled at once
            # (sync threads interrupted and abandoned), webhook deliveries stop.
            self._nursery.cancel_scope.cancel()
            await self._stopped.wait()

    def stop_now(self) -> None:
        """Make a running (or coming) :meth:`shutdown` skip its grace periods (a second
        signal): predictions are canceled and abandoned at once, webhooks not awaited."""
        self.shutting_down = True
        self._patience.cancel()

    # -- queries ---------------------------------------------------------------------

    @property
    def health(self) -> Health:
        if self.shutting_down:
            return Health.DEFUNCT
        if self.setup_status is Status.FAILED:
            return Health.SETUP_FAILED
        if self.setup_status is not Status.SUCCEEDED:
            return Health.STARTING
        if len(self._active) >= self.config.concurrency:
            return Health.BUSY
        return Health.READY

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def abandoned_threads(self) -> int:
        """Worker threads left behind by sync models that ignored a cancel, still running."""
        self._abandoned = [t for t in self._abandoned if t.running]
        return len(self._abandoned)

    def setup_info(self) -> dict[str, Any]:
        return {
            "started_at": self.setup_started_at,
            "completed_at": self.setup_completed_at,
            "status": self.setup_status.value if self.setup_status.terminal else None,
            "logs": "".join(self.setup_logs),
        }

    def get(self, prediction_id: str) -> Prediction | None:
        return self._active.get(prediction_id) or self._finished.get(prediction_id)

    # -- commands --------------------------------------------------------------------

    def create(self, request: PredictionRequest, validated_input: dict[str, Any]) -> Prediction:
        """Start a prediction, or return the one that already has this id.

        Raises :class:`NotReady` or :class:`Busy`; never waits.
        """
        if request.id is not None:
            existing = self.get(request.id)
            if existing is not None:
                return existing
        if self.shutting_down or self.setup_status is not Status.SUCCEEDED:
            raise NotReady(self._not_ready_reason())
        if len(self._active) >= self.config.concurrency:
            raise Busy(f"all {self.config.concurrency} prediction slot(s) are in use")
        assert self._nursery is not None
        events = (
            ALL_EVENTS
            if request.webhook_events_filter is None
            else frozenset(request.webhook_events_filter)
        )
        p = Prediction(
            id=request.id or new_prediction_id(),
            input=request.input,
            webhook=None if request.webhook is None else str(request.webhook),
            webhook_events_filter=events,
        )
        self._active[p.id] = p
        self._open[p.id] = p
        self._all_closed = trio.Event()
        self._nursery.start_soon(
            self._run_prediction, p, validated_input, name=f"prediction {p.id}"
        )
        return p

    def cancel(self, prediction_id: str) -> Prediction | None:
        """Ask a prediction to stop; a finished one (or one already asked) is returned
        unchanged. It ends ``canceled``, whatever its model does after this call."""
        p = self.get(prediction_id)
        if p is None or p.status.terminal or p.cancel_requested:
            return p
        p.cancel_requested = True
        if p.interrupt_thread is not None:
            # A sync model: raise CancelationException in its thread, and abandon the
            # thread if it has not stopped when the grace period is over.
            p.interrupt_thread()
            p.cancel_scope.deadline = min(
                p.cancel_scope.deadline, trio.current_time() + self.config.cancel_grace
            )
        else:
            p.cancel_scope.cancel()
        return p

    # -- one prediction --------------------------------------------------------------

    async def _run_prediction(self, p: Prediction, inputs: dict[str, Any]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if p.webhook is not None:
                    p.signal = ChangeSignal()
                    nursery.start_soon(self.webhooks.run, p, name=f"webhooks {p.id}")
                nursery.start_soon(self._model_task, p, inputs, name=f"model {p.id}")
        finally:
            del self._open[p.id]
            if not self._open:
                self._all_closed.set()

    async def _model_task(self, p: Prediction, inputs: dict[str, Any]) -> None:
        # Left as is only when the runner itself is torn down from outside.
        status, error = Status.CANCELED, None
        try:
            with p.cancel_scope:
                await trio.lowlevel.checkpoint()  # a cancel that came before start wins here
                p.mark_processing()
                with capture_logs(p.append_logs):
                    await self.predictor.run(inputs, p, self._abandoned.append)
            status = Status.SUCCEEDED
        except CancelationException:
            status = Status.CANCELED
        except (Exception, SystemExit) as exc:  # a model's sys.exit() must not end the server
            status, error = Status.FAILED, str(exc) or type(exc).__name__
            p.append_logs(traceback.format_exc())
        finally:
            # One terminal status, always, also when an outer cancel passes through here.
            if p.cancel_requested:
                # Whatever the model did after the cancel (stopped, swallowed it, failed),
                # the client asked for a cancel and gets exactly that.
                status, error = Status.CANCELED, None
            if p.abandoned_thread is not None:
                self.abandoned_total += 1
                log.warning(
                    "prediction %s: the model did not stop after its cancel (grace %.1f s); "
                    "reported canceled and abandoned its thread %r, which still runs",
                    p.id,
                    0.0 if self._patience.cancel_called else self.config.cancel_grace,
                    p.abandoned_thread,
                )
            self._finish(p, status, error)

    def _finish(self, p: Prediction, status: Status, error: str | None) -> None:
        p.mark_terminal(status, error)
        # The slot is free before anyone waiting on `done` can answer their client.
        del self._active[p.id]
        self._finished[p.id] = p
        while len(self._finished) > self.config.finished_history:
            self._finished.popitem(last=False)
        p.done.set()
        if p.signal is not None:
            p.signal.close()

    def _not_ready_reason(self) -> str:
        if self.shutting_down:
            return "the service is shutting down"
        if self.setup_status is Status.FAILED:
            return "setup failed; see /health-check"
        return "setup has not finished yet"
