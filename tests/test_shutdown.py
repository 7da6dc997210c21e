"""Graceful shutdown: in-process (POST /shutdown, grace periods, deadlines, a second signal)
and on a real ``python -m service`` process with SIGTERM, SIGINT and POST /shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from service import CancelationException

from .cancel_helpers import (
    Gate,
    assert_one_terminal_webhook,
    no_leftover_threads,
    serving,
    start,
    until,
    wait_event,
)
from .conftest import RecordingTransport, WebhookReceiver, running_app

pytestmark = pytest.mark.usefixtures("no_leftover_threads")
__all__ = ["no_leftover_threads"]  # the fixture, imported to be used here


def slow_cleanup_model(gate: Gate) -> Any:
    """Runs until canceled; its cleanup then waits for the test to release it."""

    def predict() -> str:
        give_up = time.monotonic() + 30
        try:
            gate.started.set()
            while time.monotonic() < give_up:
                time.sleep(0.01)
            return "never"
        except CancelationException:
            print("cleaning up")
            gate.release.wait(10)
            raise

    return predict


# -- in-process --------------------------------------------------------------------------


async def test_shutdown_refuses_new_predictions_and_cancels_running_ones(
    transport: RecordingTransport,
) -> None:
    gate = Gate()
    async with serving(slow_cleanup_model(gate), transport=transport, cancel_grace=60) as (
        app,
        client,
    ):
        answer: list[Any] = []

        async def waiting_client() -> None:
            r = await client.post("/predictions", json={"id": "w", "webhook": "http://h.test/"})
            answer.append((r.status_code, await r.get_json()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting_client)
            await wait_event(gate.started)
            r = await client.post("/shutdown")
            assert r.status_code == 200
            # Draining: the model is cleaning up.
            health = await (await client.get("/health-check")).get_json()
            assert health["status"] != "READY"
            r = await client.post("/predictions", json={})
            assert r.status_code == 503
            assert "shutting down" in (await r.get_json())["detail"]
            assert not app.drained.is_set()
            gate.release.set()
            with trio.fail_after(10):
                await app.drained.wait()
        # The terminal webhook went out before the drain ended; the waiting client got 200.
        webhook = assert_one_terminal_webhook(transport.bodies, "canceled")
        assert "cleaning up" in webhook["logs"]
        assert answer == [(200, webhook)]
    assert app.webhook_client.is_closed


@pytest.mark.parametrize(
    ("grace", "status", "ended_at"), [(10, "succeeded", 5), (2, "canceled", 2)]
)
async def test_shutdown_grace_lets_running_predictions_finish_first(
    autojump_clock: trio.testing.MockClock,
    transport: RecordingTransport,
    grace: float,
    status: str,
    ended_at: float,
) -> None:
    async def predict() -> str:
        await trio.sleep(5)
        return "finished"

    async with serving(predict, transport=transport, shutdown_grace=grace) as (app, client):
        pid = await start(client)
        t0 = trio.current_time()
        await client.post("/shutdown")
        r = await client.post("/predictions", json={})
        assert r.status_code == 503
        await app.drained.wait()
        p = app.runner.get(pid)
        assert p is not None
        assert p.status == status
        assert trio.current_time() - t0 == pytest.approx(ended_at)
    assert_one_terminal_webhook(transport.bodies, status)


async def test_shutdown_gives_up_on_terminal_webhooks_after_its_deadline(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def receiver_down(request: Any, n: int) -> httpx.Response:
        if request.json["status"] == "starting":
            return httpx.Response(200)
        return httpx.Response(503)

    transport = RecordingTransport(responder=receiver_down)

    async def predict() -> str:
        await trio.sleep(1000)
        return "never"

    async with serving(
        predict, transport=transport, cancel_grace=1, shutdown_webhook_deadline=3
    ) as (app, client):
        await start(client)
        t0 = trio.current_time()
        await client.post("/shutdown")
        await app.drained.wait()
        assert trio.current_time() - t0 == pytest.approx(4)  # cancel_grace + deadline
        attempts = transport.attempts
        await trio.sleep(60)
        assert transport.attempts == attempts  # the retries stopped with it
    assert any("not finished" in r.getMessage() for r in caplog.records)


async def test_shutdown_during_a_sync_setup_interrupts_it() -> None:
    gate = Gate()

    class SlowSetup:
        def setup(self) -> None:
            try:
                gate.started.set()
                for _ in range(3000):
                    time.sleep(0.01)
            except CancelationException:
                gate.note("CancelationException")
                raise

        def predict(self) -> str:
            return "x"

    async with running_app(SlowSetup, wait_ready=False) as (app, client):
        await wait_event(gate.started)
        health = await (await client.get("/health-check")).get_json()
        assert health["status"] == "STARTING"
        app.request_shutdown()
        with trio.fail_after(5):
            await app.drained.wait()
        assert app.runner.setup_done.is_set()
        # Abandoned at once, and interrupted: the setup stops soon after.
        await until(lambda: gate.seen)
        assert gate.seen == ["CancelationException"]


async def test_stop_now_skips_the_grace_periods(
    transport: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """A second signal: a model that ignores its cancel no longer holds the exit up."""
    gate = Gate()

    def stubborn() -> str:
        def wait() -> None:
            try:
                gate.started.set()
                gate.release.wait(30)
            except CancelationException:
                wait()

        try:
            wait()
        finally:
            gate.stopped.set()
        return "late"

    async with serving(stubborn, transport=transport, cancel_grace=60, shutdown_grace=60) as (
        app,
        client,
    ):
        pid = await start(client)
        await wait_event(gate.started)
        app.request_shutdown()
        await trio.sleep(0.05)
        assert not app.drained.is_set()
        app.runner.stop_now()
        with trio.fail_after(5):
            await app.drained.wait()
        p = app.runner.get(pid)
        assert p is not None
        assert p.status == "canceled"
        assert p.abandoned_thread == f"prediction {pid}"
        gate.release.set()
        await wait_event(gate.stopped)
        await until(lambda: app.runner.abandoned_threads == 0)
    assert any(f"'prediction {pid}'" in r.getMessage() for r in caplog.records)


async def test_stop_now_also_stops_an_async_generator_that_never_awaits(
    transport: RecordingTransport,
) -> None:
    total = 1_000_000

    async def predict() -> AsyncIterator[int]:
        for i in range(total):
            yield i

    async with serving(predict, transport=transport, shutdown_grace=60) as (app, client):
        pid = await start(client)
        p = app.runner.get(pid)
        assert p is not None
        await until(lambda: p.output_version >= 10)
        app.request_shutdown()
        app.runner.stop_now()
        with trio.fail_after(5):
            await app.drained.wait()
        assert p.status == "canceled"
        assert len(p.output) < total


# -- a real process ------------------------------------------------------------------------

PREDICTOR = """
import os
import time

from service import CancelationException


def predict(release: str, work: float = 0.0) -> str:
    print("started")
    give_up = time.monotonic() + 30
    try:
        if work:
            time.sleep(work)
            return "finished"
        while time.monotonic() < give_up:
            time.sleep(0.01)
        return "never"
    except CancelationException:
        print("cleaning up")
        while not os.path.exists(release) and time.monotonic() < give_up:
            time.sleep(0.01)
        raise


def stubborn(release: str) -> str:
    give_up = time.monotonic() + 30

    def wait():
        try:
            print("started")
            while not os.path.exists(release) and time.monotonic() < give_up:
                time.sleep(0.01)
        except CancelationException:
            wait()

    wait()
    return "late"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(self, process: trio.Process, base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log
        self.http = httpx.AsyncClient(base_url=base, timeout=10)

    async def health(self) -> str:
        return str((await self.http.get("/health-check")).json()["status"])


@asynccontextmanager
async def service_process(tmp_path: Path, name: str, *args: str) -> AsyncIterator[Service]:
    """``python -m service`` with a predictor of PREDICTOR, once it says READY. Killed if
    the test leaves it running."""
    (tmp_path / "model.py").write_text(PREDICTOR)
    port = free_port()
    log = tmp_path / "service.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "PREDICTOR")}
    command = [sys.executable, "-m", "service", "--predictor", f"{tmp_path}/model.py:{name}"]
    command += ["--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            command, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    service = Service(process, f"http://127.0.0.1:{port}", log)
    try:
        with trio.fail_after(30):
            while True:
                assert process.returncode is None, log.read_text()
                try:
                    if await service.health() == "READY":
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        yield service
    finally:
        await service.http.aclose()
        if process.returncode is None:
            process.kill()
        await process.wait()


async def started_prediction(service: Service, receiver: WebhookReceiver, release: Path) -> None:
    r = await service.http.post(
        "/predictions",
        json={"input": {"release": str(release)}, "webhook": receiver.url},
        headers={"Prefer": "respond-async"},
    )
    assert r.status_code == 202
    await receiver.wait_for(lambda bodies: any("started" in b["logs"] for b in bodies))


async def exit_code(service: Service, timeout: float = 20) -> int:
    with trio.fail_after(timeout):
        return await service.process.wait()


@pytest.mark.parametrize("trigger", ["SIGTERM", "SIGINT", "POST /shutdown"])
async def test_real_process_shuts_down_gracefully(
    tmp_path: Path, receiver: WebhookReceiver, trigger: str
) -> None:
    release = tmp_path / "release"
    async with service_process(tmp_path, "predict", "--cancel-grace", "60") as service:
        await started_prediction(service, receiver, release)
        if trigger == "POST /shutdown":
            assert (await service.http.post("/shutdown")).status_code == 200
        else:
            service.process.send_signal(getattr(signal, trigger))
        # The model is cleaning up (until released): the service is draining.
        with trio.fail_after(10):
            while await service.health() == "READY":
                await trio.sleep(0.02)
        r = await service.http.post("/predictions", json={"input": {"release": "x"}})
        assert r.status_code == 503
        release.touch()
        await receiver.wait_for(lambda bodies: bodies[-1]["status"] == "canceled")
        if trigger != "POST /shutdown":
            # Once more as it exits: neither a kill by a redelivered signal nor a traceback.
            service.process.send_signal(getattr(signal, trigger))
        assert await exit_code(service) == 0, service.log.read_text()
    webhook = assert_one_terminal_webhook(receiver.bodies, "canceled")
    assert "cleaning up" in webhook["logs"]
    log = service.log.read_text()
    if trigger != "POST /shutdown":
        assert f"received {trigger}; shutting down" in log
    assert "Traceback" not in log


async def test_real_process_shutdown_grace_lets_the_prediction_finish(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async with service_process(tmp_path, "predict", "--shutdown-grace", "30") as service:
        r = await service.http.post(
            "/predictions",
            json={"input": {"release": "x", "work": 1.0}, "webhook": receiver.url},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202
        await receiver.wait_for(lambda bodies: any("started" in b["logs"] for b in bodies))
        service.process.send_signal(signal.SIGTERM)
        assert await exit_code(service) == 0, service.log.read_text()
    webhook = assert_one_terminal_webhook(receiver.bodies, "succeeded")
    assert webhook["output"] == "finished"


async def test_real_process_second_signal_stops_at_once(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A model that swallows its cancel, a 60 s grace: a second SIGTERM ends it now, with
    exit status 0 (not killed by a redelivered signal)."""
    release = tmp_path / "release"
    async with service_process(tmp_path, "stubborn", "--cancel-grace", "60") as service:
        await started_prediction(service, receiver, release)
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            while await service.health() == "READY":
                await trio.sleep(0.02)
        service.process.send_signal(signal.SIGTERM)
        assert await exit_code(service, timeout=15) == 0, service.log.read_text()
        log = service.log.read_text()
        assert "received SIGTERM again" in log
        assert "abandoned" in log
    release.touch()
