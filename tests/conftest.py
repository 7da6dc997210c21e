"""Shared fixtures: an app running in-process, a recording webhook transport (for MockClock
tests) and a real webhook receiver on 127.0.0.1 (for end-to-end tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart.typing import TestClientProtocol

from service import Config, PredictionApp, create_app

#: Every field of the prediction object (SPEC section 4), in every answer and webhook.
PREDICTION_FIELDS = frozenset(
    {
        "id",
        "status",
        "input",
        "output",
        "logs",
        "error",
        "metrics",
        "created_at",
        "started_at",
        "completed_at",
        "webhook",
        "webhook_events_filter",
    }
)


@asynccontextmanager
async def running_app(
    predictor: object | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    wait_ready: bool = True,
    **settings: Any,
) -> AsyncIterator[tuple[PredictionApp, TestClientProtocol]]:
    """An app with its lifespan running (runner started, setup begun), and a test client.

    The app is shut down on exit, so no prediction task outlives the test."""
    app = create_app(Config(**settings), predictor=predictor, webhook_transport=transport)
    async with app.test_app() as test_app:
        if wait_ready:
            await app.runner.setup_done.wait()
        yield app, test_app.test_client()
        app.request_shutdown()
        await app.drained.wait()


@dataclass
class WebhookRequest:
    at: float  # trio.current_time() when the request arrived
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[["WebhookRequest", int], Awaitable[httpx.Response]]


@dataclass
class RecordingTransport(httpx.AsyncBaseTransport):
    """Records every webhook request; answers 200 unless ``responder`` says otherwise.

    ``responder(request, n)`` (n counts from 0) may sleep, to play a slow receiver, or
    raise ``httpx.ConnectError``, to play one that is down. It runs on trio's clock, so
    it works under MockClock."""

    responder: Responder | None = None
    requests: list[WebhookRequest] = field(default_factory=list)
    attempts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        record = WebhookRequest(trio.current_time(), dict(request.headers), body)
        n = self.attempts
        self.attempts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.responder is not None:
                response = await self.responder(record, n)
            else:
                response = httpx.Response(200)
        finally:
            self.in_flight -= 1
        if response.status_code < 300:
            self.requests.append(record)
        return response

    @property
    def bodies(self) -> list[Any]:
        return [r.json for r in self.requests]


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records the webhook requests it accepts."""

    def __init__(self) -> None:
        self.requests: list[WebhookRequest] = []
        self.url = ""
        self.status = 200
        self.delay = 0.0
        self.changed = trio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.delay:
            await trio.sleep(self.delay)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if self.status < 300:
            self.requests.append(WebhookRequest(trio.current_time(), headers, body))
            self.changed.set()
            self.changed = trio.Event()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @property
    def bodies(self) -> list[Any]:
        return [r.json for r in self.requests]

    async def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while not predicate(self.bodies):
                await self.changed.wait()


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> AsyncIterator[WebhookReceiver]:
    rec = WebhookReceiver()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds = await nursery.start(serve, rec, config)
    rec.url = binds[0] + "/hook"
    yield rec


@asynccontextmanager
async def real_server(
    app: PredictionApp,
) -> AsyncIterator[str]:
    """Serve ``app`` with Hypercorn's Trio worker on 127.0.0.1; yields its base URL."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        stop = trio.Event()

        async def trigger() -> None:
            await stop.wait()

        binds = await nursery.start(
            lambda task_status: serve(
                app, config, shutdown_trigger=trigger, task_status=task_status
            )
        )
        await app.runner.setup_done.wait()
        try:
            yield binds[0]
        finally:
            app.request_shutdown()
            await app.drained.wait()
            stop.set()


def live_threads() -> int:
    return threading.active_count()
