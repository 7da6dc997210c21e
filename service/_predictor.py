"""Loading a predictor and running it, whatever shape its author gave it.

A predictor is a class (instantiated once, ``setup()`` run once) or a plain function.
``predict`` may be ``def`` or ``async def`` and may return a value or be a (async)
generator. Sync code runs in a worker thread; async code runs in the calling trio task.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import trio

from ._inputs import PredictorSignatureError, input_model

__all__ = [
    "CancelationException",
    "LoadedPredictor",
    "PredictorLoadError",
    "load_predictor",
]

# Abandoned threads must not hold back anyone else's: no limit on worker threads here;
# the runner's slots already bound how many predictions run.
_THREADS = trio.CapacityLimiter(float("inf"))


class CancelationException(BaseException):
    """Raised inside a sync model's thread when its prediction is canceled.

    A model may catch it to clean up, and must re-raise it. It derives from
    ``BaseException`` so that a model's ``except Exception`` does not swallow it.
    """


class PredictorLoadError(Exception):
    """The ``--predictor`` reference does not lead to a usable predictor."""


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
        if self.setup is None:
            return
        if inspect.iscoroutinefunction(self.setup):
            await self.setup()
        else:
            await trio.to_thread.run_sync(self.setup, limiter=_THREADS)

    async def run(self, inputs: dict[str, Any], prediction: Any) -> None:
        """Run ``predict`` once, reporting each output to ``prediction``.

        Async models see ``trio.Cancelled`` when ``prediction.cancel_scope`` is cancelled.
        Sync models run in a worker thread that ``prediction.interrupt_thread()`` stops by
        raising :class:`CancelationException` in it.
        """
        if self.is_async:
            result = self.predict(**inputs)
            if inspect.isasyncgen(result):
                agen: AsyncGenerator[Any, None] = result  # type: ignore[assignment]
                async with aclosing(agen):
                    async for item in agen:
                        prediction.append_output(item)
            else:
                prediction.set_output(await result)
            return
        await _run_in_thread(self.predict, inputs, prediction)


async def _run_in_thread(
    predict: Callable[..., Any], inputs: dict[str, Any], prediction: Any
) -> None:
    lock = threading.Lock()
    state: dict[str, int] = {"thread": 0, "canceled": False}

    def interrupt() -> None:
        with lock:
            if state["canceled"]:
                return
            state["canceled"] = True
            if state["thread"]:
                _raise_in_thread(state["thread"], CancelationException)

    def work() -> None:
        with lock:
            if state["canceled"]:
                raise CancelationException()
            state["thread"] = threading.get_ident()
        try:
            result = predict(**inputs)
            if inspect.isgenerator(result) or isinstance(result, Iterator):
                for item in result:
                    prediction.append_output(item)
            else:
                prediction.set_output(result)
        finally:
            with lock:
                state["thread"] = 0
                if state["canceled"]:
                    # The exception may still be pending if the model ended just as it
                    # was raised: clear it, so it never escapes into trio's thread code.
                    _raise_in_thread(threading.get_ident(), None)

    prediction.interrupt_thread = interrupt
    name = f"prediction {prediction.id}"
    try:
        await trio.to_thread.run_sync(
            work, abandon_on_cancel=True, limiter=_THREADS, thread_name=name
        )
    except trio.Cancelled:
        with lock:
            if state["thread"]:
                prediction.abandoned_thread = name
        raise
    finally:
        prediction.interrupt_thread = None


def _raise_in_thread(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


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
