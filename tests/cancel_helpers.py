"""Helpers of the cancellation and shutdown tests: no leftover threads or tasks, waiting
for a condition, and a model whose pace the test controls across threads."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from quart.typing import TestClientProtocol

from service import PredictionApp

from .conftest import running_app

HOOK = "http://hooks.test/h"
ASYNC = {"Prefer": "respond-async"}
_IDLE_WORKER = re.compile(r"Trio thread \d+")


def busy_threads() -> set[threading.Thread]:
    """Every live thread except trio's idle pool workers (kept ~10 s for reuse; a worker
    running a model is named after its prediction while it does)."""
    return {t for t in threading.enumerate() if not _IDLE_WORKER.fullmatch(t.name)}


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """Fails the test if it leaves a thread running (other than idle trio workers)."""
    before = busy_threads()
    yield
    give_up = time.monotonic() + 5
    while (left := busy_threads() - before) and time.monotonic() < give_up:
        time.sleep(0.01)
    assert not left, f"threads left running: {sorted(t.name for t in left)}"


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait (bounded) until ``condition()`` is true."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.002)


@asynccontextmanager
async def serving(
    predictor: object, **settings: Any
) -> AsyncIterator[tuple[PredictionApp, TestClientProtocol]]:
    """``running_app``, and a check that no task of it outlives it."""
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with running_app(predictor, **settings) as (app, client):
        yield app, client
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before


async def start(client: TestClientProtocol, webhook: str | None = HOOK, **inputs: Any) -> str:
    """Create a prediction with ``Prefer: respond-async``; return its id."""
    body: dict[str, Any] = {"input": inputs}
    if webhook is not None:
        body["webhook"] = webhook
    response = await client.post("/predictions", json=body, headers=ASYNC)
    assert response.status_code == 202, await response.get_data(as_text=True)
    return str((await response.get_json())["id"])


async def cancel(client: TestClientProtocol, prediction_id: str) -> tuple[int, Any]:
    response = await client.post(f"/predictions/{prediction_id}/cancel")
    return response.status_code, await response.get_json()


def terminal_bodies(bodies: list[Any]) -> list[Any]:
    return [b for b in bodies if b["status"] in ("succeeded", "failed", "canceled")]


def assert_one_terminal_webhook(bodies: list[Any], status: str) -> Any:
    """Exactly one terminal request, the last one, with ``status``; returns its body."""
    terminal = terminal_bodies(bodies)
    assert len(terminal) == 1, [b["status"] for b in bodies]
    assert bodies[-1] is terminal[0]
    assert terminal[0]["status"] == status
    return terminal[0]


class Gate:
    """Lets a test and a sync model (in its worker thread) wait for each other."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.stopped = threading.Event()  # the model left its code, whichever way
        self.seen: list[str] = []  # what the model saw: exceptions, cleanup steps

    def note(self, what: str) -> None:
        self.seen.append(what)


async def wait_event(event: threading.Event, timeout: float = 5.0) -> None:
    await until(event.is_set, timeout)


def health(app: PredictionApp) -> dict[str, Any]:
    return {"status": app.runner.health.value, "abandoned": app.runner.abandoned_threads}


__all__ = [
    "ASYNC",
    "HOOK",
    "Gate",
    "assert_one_terminal_webhook",
    "busy_threads",
    "cancel",
    "health",
    "no_leftover_threads",
    "serving",
    "start",
    "terminal_bodies",
    "until",
    "wait_event",
]
