"""Loading a predictor and running it, whatever shape its author gave it.

A predictor is a class (instantiated once, ``setup()`` run once) or a plain function.
``predict`` may be ``def`` or ``async def`` and may return a value or be a (async)
generator. Async code runs in the calling trio task and is stopped by cancelling its
cancel scope. Sync code runs in a worker thread (:class:`ModelThread`) and is stopped by
raising :class:`CancelationException` inside that thread.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import inspect
import logging
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import aclosing, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import trio

from ._inputs import PredictorSignatureError, input_model
from ._logs import capture_logs

__all__ = [
    "CancelationException",
    "LoadedPredictor",
    "ModelThread",
    "PredictorLoadError",
    "load_predictor",
]

log = logging.getLogger("service.predictor")

T = TypeVar("T")

# Abandoned threads must not hold back anyone else's: no limit on worker threads here;
# the runner's slots already bound how many predictions run. (Trio's default limiter
# would be used up by 40 abandoned threads, and with it every to_thread call.)
_THREADS = trio.CapacityLimiter(float("inf"))


class CancelationException(BaseException):
    """Raised inside a sync model's thread when its prediction is canceled.

    A model may catch it to clean up, and must re-raise it. It derives from
    ``BaseException`` so that a model's ``except Exception`` does not swallow it.
    """


class PredictorLoadError(Exception):
    """The ``--predictor`` reference does not lead to a usable predictor."""


class ModelThread:
    """One call of blocking model code in a trio worker thread, and the way to stop it.

    The only way to stop a Python thread from outside is to have CPython raise an
    exception in it (``PyThreadState_SetAsyncExc``). It fires at the next bytecode the
    thread runs: pure-Python code stops at once, a thread inside a long C call only once
    that call returns. Fired anywhere else than in model code, it would do harm: in trio's
    thread-pool code it kills a worker thread that trio reuses, which hangs the next call
    handed to it. What makes it safe:

    - It is raised at most once, under ``_lock``, and only while the thread is inside the
      model region of :meth:`call` (``_ident`` is set).
    - Leaving that region takes the same lock, unsets ``_ident`` and clears a pending
      exception: once the thread is back in trio's code nothing is left to fire.
    - The thread reports output and logs through :meth:`report`, which holds the lock, so
      the exception never fires halfway through an update of the prediction.
    - When the trio side stops listening (the call returned, or was abandoned after the
      grace period), it sets ``_detached`` under the lock; from then on :meth:`report`
      drops everything, so an abandoned thread cannot change a finished prediction.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._ident = 0  # the worker thread while it runs model code, else 0
        self._interrupted = False
        self._detached = False
        #: Set when the trio side gave up waiting while the model still ran.
        self.abandoned = False
        self._token: trio.lowlevel.TrioToken | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is still inside the model's code."""
        return self._ident != 0

    def interrupt(self) -> None:
        """Raise :class:`CancelationException` in the thread (once; later calls do nothing).

        Called before the thread has started, the model is never entered."""
        with self._lock:
            if self._interrupted:
                return
            self._interrupted = True
            if self._ident:
                _set_async_exc(self._ident, CancelationException)

    def report(self, update: Callable[[T], object], value: T) -> None:
        """Apply ``update(value)`` to the prediction, unless nobody listens any more."""
        with self._lock:
            if not self._detached:
                update(value)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in a worker thread and return its result.

        When the calling task is cancelled the thread is interrupted and abandoned at
        once (``trio.Cancelled`` propagates); :attr:`abandoned` tells whether the model
        was still running then. The runner delays that cancel by its grace period."""
        self._token = trio.lowlevel.current_trio_token()

        def work() -> T:
            try:
                with self._lock:
                    if self._interrupted:
                        raise CancelationException()
                    self._ident = threading.get_ident()
                return fn()
            finally:
                try:
                    self._leave()
                except CancelationException:
                    # It fired inside _leave, before the clear: it is delivered now, and
                    # interrupt() raises only once, so this second pass is undisturbed.
                    self._leave()
                    raise

        try:
            return await trio.to_thread.run_sync(
                work, abandon_on_cancel=True, limiter=_THREADS, thread_name=self.name
            )
        except trio.Cancelled:
            self.interrupt()  # an outer cancel (a forced shutdown): ask it to stop anyway
            with self._lock:
                self.abandoned = self._ident != 0
            raise
        finally:
            with self._lock:
                self._detached = True

    def _leave(self) -> None:
        with self._lock:
            was_running, self._ident = self._ident != 0, 0
            if self._interrupted:
                _set_async_exc(threading.get_ident(), None)
            ended_abandoned = was_running and self.abandoned
        if ended_abandoned and self._token is not None:
            # Log from the trio thread: here, log records would go to the prediction.
            with suppress(trio.RunFinishedError):
                self._token.run_sync_soon(log.info, "abandoned thread %r has stopped", self.name)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    """Make ``exc`` pending in thread ``thread_id``; ``None`` clears a pending one."""
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )
    if n > 1:  # cannot happen with a live thread id; the C API says: undo it
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def _drain(items: Iterator[Any], emit: Callable[[Any], object]) -> None:
    """Emit each item of a sync model's iterator; on cancel, stop it where it stopped.

    The exception may fire here, between two items, rather than inside the generator:
    then it is thrown into the generator at its ``yield``, so the model sees
    :class:`CancelationException` where it paused and can clean up as documented."""
    try:
        for item in items:
            emit(item)
    except CancelationException as exc:
        if _suspended(items):
            assert isinstance(items, Generator)
            with suppress(StopIteration):
                items.throw(exc)  # re-raises it, unless the model swallows it
        raise
    finally:
        if _suspended(items):
            assert isinstance(items, Generator)
            items.close()


def _suspended(items: Iterator[Any]) -> bool:
    return inspect.isgenerator(items) and inspect.getgeneratorstate(items) in (
        inspect.GEN_CREATED,
        inspect.GEN_SUSPENDED,
    )


@dataclass
class LoadedPredictor:
    """A predictor ready to run: its ``predict``, optional ``setup`` and input model."""

    predict: Callable[..., Any]
    setup: Callable[[], Any] | None
    inputs: type[pydantic.BaseModel]
    name: str

    @property
    def is_async(self) -> bool:
        fn = self.predict
        return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)

    async def run_setup(self) -> None:
        """Run ``setup()``; a cancel (shutdown during setup) interrupts a sync one."""
        if self.setup is None:
            return
        if inspect.iscoroutinefunction(self.setup):
            await self.setup()
        else:
            await ModelThread("setup").call(self.setup)

    async def run(
        self,
        inputs: dict[str, Any],
        prediction: Any,
        on_abandon: Callable[[ModelThread], object] | None = None,
    ) -> None:
        """Run ``predict`` once, reporting each output to ``prediction``.

        Async models see ``trio.Cancelled`` when ``prediction.cancel_scope`` is cancelled.
        Sync models run in a :class:`ModelThread`; ``prediction.interrupt_thread()`` raises
        :class:`CancelationException` in it. If the thread is still in the model when the
        cancel scope fires, it is abandoned: ``prediction.abandoned_thread`` names it and
        ``on_abandon`` gets it.
        """
        if self.is_async:
            await self._run_async(inputs, prediction)
            return
        thread = ModelThread(f"prediction {prediction.id}")
        predict = self.predict

        def predict_in_thread() -> None:
            with capture_logs(partial(thread.report, prediction.append_logs)):
                result = predict(**inputs)
                if inspect.isgenerator(result) or isinstance(result, Iterator):
                    _drain(result, partial(thread.report, prediction.append_output))
                else:
                    thread.report(prediction.set_output, result)

        prediction.interrupt_thread = thread.interrupt
        try:
            await thread.call(predict_in_thread)
        finally:
            prediction.interrupt_thread = None
            if thread.abandoned:
                prediction.abandoned_thread = thread.name
                if on_abandon is not None:
                    on_abandon(thread)

    async def _run_async(self, inputs: dict[str, Any], prediction: Any) -> None:
        result = self.predict(**inputs)
        if not inspect.isasyncgen(result):
            prediction.set_output(await result)
            return
        agen: AsyncGenerator[Any, None] = result  # type: ignore[assignment]
        pause_at = time.perf_counter() + _MAX_RUN_WITHOUT_PAUSE
        async with aclosing(agen):
            async for item in agen:
                prediction.append_output(item)
                # Cancelled, yet it yielded without reaching a checkpoint (one that never
                # awaits would run forever): stop it here. This costs a flag check.
                await trio.lowlevel.checkpoint_if_cancelled()
                # A generator that never awaits would starve the webhook task and the HTTP
                # layer: let them run every few ms (not every item: a reschedule costs
                # several µs, more than the rest of an output), without taking the cancel
                # away from the model's own next checkpoint.
                if time.perf_counter() >= pause_at:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    pause_at = time.perf_counter() + _MAX_RUN_WITHOUT_PAUSE


#: The longest an async generator that never awaits runs before other tasks get a turn.
_MAX_RUN_WITHOUT_PAUSE = 0.002


def load_predictor(ref: str) -> LoadedPredictor:
    """Import ``path/to/file.py:Name`` or ``package.module:Name`` and wrap it.

    Raises :class:`PredictorLoadError` with a message a person can act on. ``setup()`` is
    not run here; the runner runs it once the server is up, so health can say STARTING.
    """
    module_ref, sep, name = ref.rpartition(":")
    if not sep or not module_ref or not name:
        raise PredictorLoadError(
            f"--predictor {ref!r}: expected 'path/to/file.py:Name' or 'package.module:Name'"
        )
    module = _import(module_ref)
    try:
        target = getattr(module, name)
    except AttributeError:
        raise PredictorLoadError(f"--predictor {ref!r}: {module_ref} has no {name!r}") from None
    return wrap_predictor(target, name=ref)


def wrap_predictor(target: Any, *, name: str = "") -> LoadedPredictor:
    """Wrap a predictor class, instance or function (tests pass one in directly)."""
    name = name or getattr(target, "__qualname__", repr(target))
    if inspect.isclass(target):
        try:
            instance = target()
        except Exception as exc:
            raise PredictorLoadError(f"{name}: creating the predictor failed: {exc!r}") from exc
        target = instance
    predict: Any
    setup: Any
    if inspect.isfunction(target) or inspect.ismethod(target):
        predict, setup = target, None
    else:
        predict = getattr(target, "predict", None)
        if not callable(predict):
            raise PredictorLoadError(f"{name}: a predictor needs a predict() method")
        setup = getattr(target, "setup", None)
        if setup is not None and not callable(setup):
            setup = None
    try:
        inputs = input_model(predict)
    except PredictorSignatureError as exc:
        raise PredictorLoadError(f"{name}: {exc}") from exc
    return LoadedPredictor(predict=predict, setup=setup, inputs=inputs, name=name)


def _import(module_ref: str) -> Any:
    if module_ref.endswith(".py") or "/" in module_ref or "\\" in module_ref:
        path = Path(module_ref)
        if not path.is_file():
            raise PredictorLoadError(f"--predictor: no such file: {module_ref}")
        module_name = f"_predictor_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PredictorLoadError(f"--predictor: cannot import {module_ref}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise PredictorLoadError(
                f"--predictor: importing {module_ref} failed: {exc!r}"
            ) from exc
        return module
    try:
        return importlib.import_module(module_ref)
    except ImportError as exc:
        raise PredictorLoadError(f"--predictor: cannot import {module_ref}: {exc}") from exc
    except Exception as exc:
        raise PredictorLoadError(f"--predictor: importing {module_ref} failed: {exc!r}") from exc
