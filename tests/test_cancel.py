"""Cancellation: every moment of a prediction's life, sync and async models, functions and
generators. Exactly one terminal status and one terminal webhook, always.

Tests with sync models run on the real clock (MockClock's autojump and worker threads do not
mix) with generous bounds; tests with async models only run on the autojump clock.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from service import CancelationException
from service._predictor import ModelThread, _drain
from service._schema import PredictionRequest

from .cancel_helpers import (
    HOOK,
    Gate,
    assert_one_terminal_webhook,
    busy_threads,
    cancel,
    no_leftover_threads,
    serving,
    start,
    terminal_bodies,
    until,
    wait_event,
)
from .conftest import RecordingTransport

pytestmark = pytest.mark.usefixtures("no_leftover_threads")
__all__ = ["no_leftover_threads"]  # the fixture, imported to be used here

FOREVER = 3000  # iterations of 10 ms: a model "running forever" still ends within 30 s


def model_thread_alive(prediction_id: str) -> bool:
    return any(t.name == f"prediction {prediction_id}" for t in threading.enumerate())


# -- sync models: CancelationException in the worker thread ---------------------------------


def cleaning_function(gate: Gate) -> Any:
    def predict() -> str:
        print("before the cancel")
        try:
            gate.started.set()
            for _ in range(FOREVER):
                time.sleep(0.01)
            return "never"
        except CancelationException:
            gate.note("CancelationException")
            print("cleaning up")
            raise
        finally:
            gate.stopped.set()

    return predict


def cleaning_generator(gate: Gate) -> Any:
    def predict() -> Iterator[int]:
        print("before the cancel")
        try:
            for i in range(FOREVER):
                yield i
                if i == 2:
                    gate.started.set()
                time.sleep(0.01)
        except CancelationException:
            gate.note("CancelationException")
            print("cleaning up")
            raise
        finally:
            gate.stopped.set()

    return predict


@pytest.mark.parametrize("shape", [cleaning_function, cleaning_generator])
async def test_sync_model_sees_cancelation_exception_cleans_up_and_stops(
    shape: Any, transport: RecordingTransport
) -> None:
    gate = Gate()
    # A grace period far beyond the bound below: the model must stop by the exception.
    async with serving(shape(gate), transport=transport, cancel_grace=60) as (app, client):
        pid = await start(client)
        await wait_event(gate.started)
        status, body = await cancel(client, pid)
        assert status == 200
        assert body["status"] == "processing"
        p = app.runner.get(pid)
        assert p is not None
        with trio.fail_after(5):
            await p.done.wait()
        final = p.snapshot()
        assert final["status"] == "canceled"
        assert final["error"] is None
        assert gate.seen == ["CancelationException"]
        # Logs and output from before the cancel are kept, the cleanup's too.
        assert "before the cancel" in final["logs"]
        assert "cleaning up" in final["logs"]
        if shape is cleaning_generator:
            assert len(final["output"]) >= 3
            assert final["output"] == list(range(len(final["output"])))
        # Stopped, not abandoned: its thread no longer runs the model.
        assert p.abandoned_thread is None
        assert app.runner.abandoned_threads == 0
        assert not model_thread_alive(pid)
        health = await (await client.get("/health-check")).get_json()
        assert health["status"] == "READY"
    webhook = assert_one_terminal_webhook(transport.bodies, "canceled")
    assert webhook["output"] == final["output"]
    assert webhook["logs"] == final["logs"]


def stubborn_model(gate: Gate, kind: str) -> Any:
    """``swallows``: catches CancelationException and goes on; ``blocks``: sits in one long
    C call (a lock wait), where the exception can only fire once the call returns."""
    give_up = time.monotonic() + 30

    def wait_for_release() -> None:
        try:
            gate.started.set()
            while not gate.release.wait(0.01) and time.monotonic() < give_up:
                pass
        except CancelationException:
            gate.note("swallowed")
            wait_for_release()

    def predict(mode: str = "stubborn") -> str:
        if mode == "quick":
            return "quick"
        try:
            if kind == "swallows":
                wait_for_release()
            else:
                gate.started.set()
                gate.release.wait(30)
            print("after the grace period")
            return "late output"
        except BaseException as exc:
            gate.note(type(exc).__name__)
            raise
        finally:
            gate.stopped.set()

    return predict


@pytest.mark.parametrize("kind", ["swallows", "blocks"])
async def test_sync_model_that_does_not_stop_is_abandoned_after_the_grace_period(
    kind: str, transport: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gate = Gate()
    model = stubborn_model(gate, kind)
    async with serving(model, transport=transport, cancel_grace=0.3) as (app, client):
        pid = await start(client)
        await wait_event(gate.started)
        assert (await cancel(client, pid))[0] == 200
        p = app.runner.get(pid)
        assert p is not None
        with trio.fail_after(10):
            await p.done.wait()
        final = p.snapshot()
        assert final["status"] == "canceled"
        assert final["error"] is None
        assert not gate.stopped.is_set()  # the model still runs...
        assert p.abandoned_thread == f"prediction {pid}"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(f"'prediction {pid}'" in w and "abandoned" in w for w in warnings), warnings
        health = await (await client.get("/health-check")).get_json()
        assert health["abandoned_threads"] == 1
        assert health["status"] == "READY"  # ...but its slot is free again:
        r = await client.post("/predictions", json={"input": {"mode": "quick"}})
        assert r.status_code == 200
        assert (await r.get_json())["output"] == "quick"

        gate.release.set()
        await wait_event(gate.stopped)
        await until(lambda: app.runner.abandoned_threads == 0)
        # Whatever the abandoned thread did afterwards did not reach the prediction.
        assert p.snapshot() == final
        assert final["output"] is None
        assert "after the grace period" not in final["logs"]
        health = await (await client.get("/health-check")).get_json()
        assert health["abandoned_threads"] == 0
    if kind == "swallows":
        assert gate.seen == ["swallowed"]
    else:  # it fired as soon as the blocking call returned
        assert gate.seen == ["CancelationException"]
    assert any("has stopped" in r.getMessage() for r in caplog.records)
    assert_one_terminal_webhook(transport.bodies, "canceled")
    assert len(terminal_bodies(transport.bodies)) == 1


async def test_cancel_twice_and_from_two_clients_at_once(transport: RecordingTransport) -> None:
    gate = Gate()
    async with serving(cleaning_function(gate), transport=transport, cancel_grace=60) as (
        app,
        client,
    ):
        pid = await start(client)
        await wait_event(gate.started)
        answers: list[tuple[int, Any]] = []

        async def cancel_once() -> None:
            answers.append(await cancel(client, pid))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_once)
            nursery.start_soon(cancel_once)
        p = app.runner.get(pid)
        assert p is not None
        with trio.fail_after(5):
            await p.done.wait()
        answers.append(await cancel(client, pid))
        assert [status for status, _ in answers] == [200, 200, 200]
        assert answers[-1][1] == p.snapshot()
        assert p.status == "canceled"
        assert gate.seen == ["CancelationException"]  # raised in the thread once
    assert_one_terminal_webhook(transport.bodies, "canceled")


@pytest.mark.parametrize("is_async", [False, True])
async def test_cancel_after_the_prediction_finished_changes_nothing(
    is_async: bool, transport: RecordingTransport
) -> None:
    def sync_model() -> str:
        print("working")
        return "done"

    async def async_model() -> str:
        print("working")
        return "done"

    model = async_model if is_async else sync_model
    async with serving(model, transport=transport) as (_app, client):
        r = await client.post("/predictions", json={"id": "p1", "webhook": HOOK})
        final = await r.get_json()
        assert final["status"] == "succeeded"
        for _ in range(2):
            status, body = await cancel(client, "p1")
            assert status == 200
            assert body == final
    assert_one_terminal_webhook(transport.bodies, "succeeded")


async def test_cancel_unknown_prediction_is_404() -> None:
    async with serving(lambda: "x") as (_app, client):
        r = await client.post("/predictions/no-such-id/cancel")
        assert r.status_code == 404
        assert "no-such-id" in (await r.get_json())["detail"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_cancel_before_the_model_starts(
    is_async: bool, transport: RecordingTransport
) -> None:
    called: list[bool] = []

    def sync_model() -> str:
        called.append(True)
        return "ran"

    async def async_model() -> str:
        called.append(True)
        return "ran"

    model = async_model if is_async else sync_model
    async with serving(model, transport=transport) as (app, _client):
        # Created and canceled in one step of the event loop: the model task has not run.
        p = app.runner.create(PredictionRequest.model_validate({"webhook": HOOK}), {})
        assert p.status == "starting"
        app.runner.cancel(p.id)
        with trio.fail_after(5):
            await p.done.wait()
        assert p.status == "canceled"
        assert p.started_at is None
        assert p.snapshot()["output"] is None
    assert called == []
    assert [b["status"] for b in transport.bodies] == ["starting", "canceled"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_waiting_sync_request_gets_200_with_canceled(is_async: bool) -> None:
    gate = Gate()

    async def async_model() -> str:
        gate.started.set()
        await trio.sleep(30)
        return "never"

    model = async_model if is_async else cleaning_function(gate)
    async with serving(model, cancel_grace=60) as (_app, client):
        answer: list[Any] = []

        async def wait_for_it() -> None:
            r = await client.post("/predictions", json={"id": "w1"})
            answer.append((r.status_code, await r.get_json()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            await wait_event(gate.started)
            assert (await cancel(client, "w1"))[0] == 200
            with trio.fail_after(5):
                await until(lambda: answer)
    status, body = answer[0]
    assert status == 200
    assert body["status"] == "canceled"
    assert body["metrics"]["predict_time"] >= 0


async def test_a_model_calling_sys_exit_fails_its_prediction_not_the_service() -> None:
    def predict() -> str:
        sys.exit(3)

    async with serving(predict) as (_app, client):
        for _ in range(2):
            r = await client.post("/predictions", json={})
            assert r.status_code == 200
            body = await r.get_json()
            assert body["status"] == "failed"
            assert body["error"] == "3"


# -- async models: trio.Cancelled at the next checkpoint (autojump clock) --------------------


async def test_async_function_sees_cancelled_and_cleans_up(
    autojump_clock: trio.testing.MockClock, transport: RecordingTransport
) -> None:
    seen: list[str] = []

    async def predict() -> str:
        print("before the cancel")
        try:
            await trio.sleep(1000)
            return "never"
        except trio.Cancelled:
            seen.append("Cancelled")
            print("cleaning up")
            raise

    async with serving(predict, transport=transport) as (app, client):
        pid = await start(client)
        await trio.sleep(1)
        p = app.runner.get(pid)
        assert p is not None and p.status == "processing"
        canceled_at = trio.current_time()
        assert (await cancel(client, pid))[0] == 200
        await p.done.wait()
        assert trio.current_time() == canceled_at  # at once, not when the sleep ends
        assert p.status == "canceled"
        assert seen == ["Cancelled"]
        assert "before the cancel" in p.logs and "cleaning up" in p.logs
    assert_one_terminal_webhook(transport.bodies, "canceled")


async def test_async_generator_canceled_between_yields_keeps_its_output(
    autojump_clock: trio.testing.MockClock, transport: RecordingTransport
) -> None:
    seen: list[str] = []

    async def predict() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                print(f"item {i}")
                yield i
                await trio.sleep(1)
        except trio.Cancelled:
            seen.append("Cancelled")
            raise

    async with serving(predict, transport=transport) as (app, client):
        pid = await start(client)
        p = app.runner.get(pid)
        assert p is not None
        await until(lambda: p.output_version == 3)
        assert (await cancel(client, pid))[0] == 200
        await p.done.wait()
        assert p.status == "canceled"
        assert p.output == [0, 1, 2]
        assert p.logs == "item 0\nitem 1\nitem 2\n"
        assert seen == ["Cancelled"]
    webhook = assert_one_terminal_webhook(transport.bodies, "canceled")
    assert webhook["output"] == [0, 1, 2]


async def test_async_generator_that_never_awaits_is_still_stopped(
    transport: RecordingTransport,
) -> None:
    # Real clock: on the autojump clock time stands still while this model keeps running.
    closed: list[str] = []
    total = 1_000_000

    async def predict() -> AsyncIterator[int]:
        try:
            for i in range(total):
                yield i  # no checkpoint of its own
        finally:
            closed.append("closed")

    async with serving(predict, transport=transport) as (app, client):
        pid = await start(client)
        p = app.runner.get(pid)
        assert p is not None
        await until(lambda: p.output_version >= 10)  # the service still answers meanwhile
        assert (await cancel(client, pid))[0] == 200
        await p.done.wait()
        assert p.status == "canceled"
        assert 10 <= len(p.output) < total
        assert closed == ["closed"]
    assert_one_terminal_webhook(transport.bodies, "canceled")


async def test_async_model_that_swallows_cancelled_is_still_canceled(
    autojump_clock: trio.testing.MockClock, transport: RecordingTransport
) -> None:
    async def predict() -> str:
        try:
            await trio.sleep(1000)
        except trio.Cancelled:
            pass
        return "swallowed it"

    async with serving(predict, transport=transport) as (app, client):
        pid = await start(client)
        await trio.sleep(1)
        await cancel(client, pid)
        p = app.runner.get(pid)
        assert p is not None
        await p.done.wait()
        assert p.status == "canceled"
        assert p.error is None
    assert_one_terminal_webhook(transport.bodies, "canceled")


async def test_cancel_while_a_webhook_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The model is canceled at once; the terminal request waits for the slow one before
    it, and is still the only terminal one, and the last."""

    async def slow_receiver(request: Any, n: int) -> Any:
        import httpx

        if request.json["status"] == "processing" and n == 1:
            await trio.sleep(3)
        return httpx.Response(200)

    transport = RecordingTransport(responder=slow_receiver)

    async def predict() -> AsyncIterator[str]:
        yield "first"
        await trio.sleep(1000)

    async with serving(predict, transport=transport) as (app, client):
        pid = await start(client)
        await trio.sleep(1)
        assert transport.in_flight == 1  # the output request, held up by the receiver
        canceled_at = trio.current_time()
        await cancel(client, pid)
        p = app.runner.get(pid)
        assert p is not None
        await p.done.wait()
        assert trio.current_time() == canceled_at
        assert p.status == "canceled"
    bodies = transport.bodies
    webhook = assert_one_terminal_webhook(bodies, "canceled")
    assert webhook["output"] == ["first"]
    assert transport.requests[-1].at >= canceled_at + 2  # after the slow one, not beside it


# -- the thread machinery itself ---------------------------------------------------------------


async def test_interrupt_before_the_thread_starts_means_the_model_never_runs() -> None:
    ran: list[bool] = []
    thread = ModelThread("test")
    thread.interrupt()
    with pytest.raises(CancelationException):
        await thread.call(lambda: ran.append(True))
    assert ran == []
    assert not thread.abandoned


def test_cancel_between_two_items_is_thrown_into_the_generator_at_its_yield() -> None:
    seen: list[str] = []

    def gen() -> Iterator[int]:
        try:
            yield 1
            yield 2
            yield 3
        except CancelationException:
            seen.append("CancelationException at the yield")
            raise

    emitted: list[int] = []

    def emit(item: int) -> None:
        emitted.append(item)
        if item == 2:  # as if the exception fired in the runner's loop, not the model
            raise CancelationException()

    items = gen()
    with pytest.raises(CancelationException):
        _drain(items, emit)
    assert emitted == [1, 2]
    assert seen == ["CancelationException at the yield"]


def test_a_generator_that_swallows_the_cancel_is_closed() -> None:
    seen: list[str] = []

    def gen() -> Iterator[int]:
        for i in range(100):
            try:
                yield i
            except CancelationException:
                seen.append("swallowed")
            except GeneratorExit:
                seen.append("closed")
                raise

    def emit(item: int) -> None:
        if item == 1:
            raise CancelationException()

    with pytest.raises(CancelationException):
        _drain(gen(), emit)
    assert seen == ["swallowed", "closed"]


async def test_hammer_cancel_at_random_moments_never_breaks_the_worker_threads(
    transport: RecordingTransport,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A few hundred quick sync predictions, each canceled at a random moment: before it
    starts, while it runs, as it returns, after it finished. The injected exception must
    never escape into trio's thread pool (a dead or poisoned worker thread would hang or
    break a later prediction) and every prediction ends exactly once."""
    thread_errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    rng = random.Random(4)

    def quick(spin: int = 0) -> int:
        total = 0
        for i in range(spin):
            total += i
        return total

    lanes, per_lane = 4, 75
    statuses: dict[str, tuple[int, str]] = {}
    async with serving(quick, transport=transport, concurrency=lanes) as (app, client):
        runner = app.runner

        async def lane(n: int) -> None:
            for i in range(per_lane):
                how = i % 4
                request = PredictionRequest.model_validate({"id": f"h{n}-{i}", "webhook": HOOK})
                p = runner.create(request, {"spin": rng.randrange(0, 20_000)})
                if how == 1:
                    await trio.sleep(rng.uniform(0, 0.002))
                elif how == 2:
                    await until(lambda p=p: p.status != "starting")
                    await trio.sleep(rng.uniform(0, 0.0005))
                elif how == 3:
                    await p.done.wait()
                runner.cancel(p.id)
                await p.done.wait()
                statuses[p.id] = (how, p.status.value)

        with trio.fail_after(30):  # a poisoned pool thread shows up as a hang
            async with trio.open_nursery() as nursery:
                for n in range(lanes):
                    nursery.start_soon(lane, n)
        assert len(statuses) == lanes * per_lane
        assert {s for how, s in statuses.values() if how == 0} == {"canceled"}
        assert {s for how, s in statuses.values() if how == 3} == {"succeeded"}
        assert {s for _, s in statuses.values()} <= {"canceled", "succeeded"}
        # The service still works, on the same (reused) worker threads.
        with trio.fail_after(20):
            for i in range(20):
                r = await client.post("/predictions", json={"input": {"spin": i}})
                assert (await r.get_json())["output"] == sum(range(i))
        assert runner.abandoned_threads == 0
        assert not [t for t in busy_threads() if t.name.startswith("prediction ")]
    assert thread_errors == []
    assert "Exception while delivering result" not in capfd.readouterr().err
    terminal: dict[str, int] = {}
    for body in terminal_bodies(transport.bodies):
        terminal[body["id"]] = terminal.get(body["id"], 0) + 1
    assert len(terminal) == lanes * per_lane
    assert set(terminal.values()) == {1}
