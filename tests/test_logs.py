"""Log capture: what a model prints or logs lands in its own prediction's ``logs``."""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from typing import Any

import pytest
import trio

from service import _logs

from .conftest import running_app

log = logging.getLogger("test_logs.model")


class TrioBarrier:
    """Lets ``parties`` tasks pass together, again and again: forces interleaving."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.released = trio.Event()

    async def wait(self) -> None:
        released = self.released
        self.arrived += 1
        if self.arrived == self.parties:
            self.arrived = 0
            self.released = trio.Event()
            released.set()
        else:
            with trio.fail_after(10):
                await released.wait()


async def post_all(client: Any, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send sync predictions at once; their final predictions, in the order given."""
    results: list[dict[str, Any]] = [{} for _ in bodies]

    async def one(i: int) -> None:
        r = await client.post("/predictions", json=bodies[i])
        assert r.status_code == 200
        results[i] = await r.get_json()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(len(bodies)):
                nursery.start_soon(one, i)
    return results


# -- the mechanism ------------------------------------------------------------------------


def test_capture_routes_by_context_and_install_is_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_stdout = sys.stdout
    _logs.install()
    _logs.install()
    try:
        lines: list[str] = []
        with _logs.capture_logs(lines.append):
            print("inside")
            sys.stderr.write("err inside\n")
        print("outside")
        _logs.uninstall()
        assert sys.stdout is not real_stdout  # still installed once
    finally:
        _logs.uninstall()
    assert sys.stdout is real_stdout
    assert "".join(lines) == "inside\nerr inside\n"
    captured = capsys.readouterr()
    assert captured.out == "outside\n"
    assert captured.err == ""


async def test_capture_follows_into_worker_threads() -> None:
    _logs.install()
    try:
        lines: list[str] = []

        def work() -> None:
            print("from a thread")

        with _logs.capture_logs(lines.append):
            await trio.to_thread.run_sync(work)
    finally:
        _logs.uninstall()
    assert "".join(lines) == "from a thread\n"


# -- through the service ------------------------------------------------------------------


def noisy_sync(word: str) -> str:
    print(f"print {word}")
    sys.stderr.write(f"stderr {word}\n")
    log.warning("logging %s", word)
    return word


async def noisy_async(word: str) -> str:
    print(f"print {word}")
    await trio.sleep(0)
    sys.stderr.write(f"stderr {word}\n")
    log.warning("logging %s", word)
    return word


@pytest.mark.parametrize("predictor", [noisy_sync, noisy_async])
async def test_print_stderr_and_logging_land_in_logs(predictor: Any) -> None:
    async with running_app(predictor) as (_, client):
        (body,) = await post_all(client, [{"input": {"word": "w"}}])
    assert body["status"] == "succeeded"
    assert body["logs"] == ("print w\nstderr w\nWARNING:test_logs.model:logging w\n")


async def test_interleaved_sync_predictions_keep_their_own_lines() -> None:
    barrier = threading.Barrier(2, timeout=10)
    order: list[str] = []

    def predict(name: str) -> str:
        for i in range(5):
            print(f"{name} line {i}")
            log.warning("%s record %d", name, i)
            order.append(name)
            barrier.wait()
        return name

    async with running_app(predict, concurrency=2) as (_, client):
        a, b = await post_all(client, [{"input": {"name": "A"}}, {"input": {"name": "B"}}])
    assert order[:2] != ["A", "A"] and order[:2] != ["B", "B"]  # they really interleaved
    for name, body in (("A", a), ("B", b)):
        assert body["status"] == "succeeded"
        assert body["logs"] == "".join(
            f"{name} line {i}\nWARNING:test_logs.model:{name} record {i}\n" for i in range(5)
        )


async def test_interleaved_async_predictions_keep_their_own_lines() -> None:
    barrier = TrioBarrier(2)
    order: list[str] = []

    async def predict(name: str) -> str:
        for i in range(5):
            print(f"{name} line {i}")
            log.warning("%s record %d", name, i)
            order.append(name)
            await barrier.wait()
        return name

    async with running_app(predict, concurrency=2) as (_, client):
        a, b = await post_all(client, [{"input": {"name": "A"}}, {"input": {"name": "B"}}])
    assert order[:2] in (["A", "B"], ["B", "A"])  # they really interleaved
    for name, body in (("A", a), ("B", b)):
        assert body["logs"] == "".join(
            f"{name} line {i}\nWARNING:test_logs.model:{name} record {i}\n" for i in range(5)
        )


async def test_writes_outside_predictions_go_to_the_real_streams(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    started, release = trio.Event(), trio.Event()

    async def predict() -> str:
        print("model line")
        log.warning("model record")
        started.set()
        await release.wait()
        return "ok"

    async with running_app(predict) as (_, client):
        async with trio.open_nursery() as nursery:
            results: list[dict[str, Any]] = []

            async def run() -> None:
                results.extend(await post_all(client, [{}]))

            nursery.start_soon(run)
            with trio.fail_after(10):
                await started.wait()
            # The service's own task writes while the prediction runs.
            print("service line")
            sys.stderr.write("service err\n")
            logging.getLogger("test_logs.service").warning("service record")
            release.set()
    (body,) = results
    assert body["logs"] == "model line\nWARNING:test_logs.model:model record\n"
    captured = capsys.readouterr()
    assert "service line\n" in captured.out
    assert "service err\n" in captured.err
    assert "model" not in captured.out + captured.err
    # The service's own log handlers see its records, not the model's.
    messages = [r.getMessage() for r in caplog.records]
    assert "service record" in messages
    assert "model record" not in messages


async def test_setup_output_goes_to_health_check() -> None:
    class Predictor:
        def setup(self) -> None:
            print("loading weights")
            log.warning("weights loaded")

        def predict(self) -> str:
            return "ok"

    async with running_app(Predictor) as (_, client):
        health = await (await client.get("/health-check")).get_json()
        (body,) = await post_all(client, [{}])
    assert health["setup"]["logs"] == ("loading weights\nWARNING:test_logs.model:weights loaded\n")
    assert body["logs"] == ""


async def test_failed_model_has_its_traceback_in_logs() -> None:
    def predict() -> str:
        print("about to fail")
        raise ValueError("no good")

    async with running_app(predict) as (_, client):
        (body,) = await post_all(client, [{}])
    assert body["status"] == "failed"
    assert body["error"] == "no good"
    assert body["logs"].startswith("about to fail\nTraceback (most recent call last):")
    assert "ValueError: no good" in body["logs"]


async def test_writing_bytes_fails_the_model_like_a_real_stream() -> None:
    def predict() -> str:
        print("text first")
        sys.stdout.write(b"bytes")  # type: ignore[arg-type]
        return "unreachable"

    async with running_app(predict) as (_, client):
        (body,) = await post_all(client, [{}])
        (again,) = await post_all(client, [{}])
    assert body["status"] == "failed"
    assert body["error"] == "write() argument must be str, not bytes"
    assert body["logs"].startswith("text first\nTraceback")
    assert again["status"] == "failed"  # and the service goes on serving


async def test_threads_the_model_starts_itself(capsys: pytest.CaptureFixture[str]) -> None:
    def predict() -> str:
        def say(text: str) -> None:
            print(text)

        plain = threading.Thread(target=say, args=("plain thread",))
        carried = threading.Thread(
            target=contextvars.copy_context().run, args=(say, "context carried")
        )
        for thread in (plain, carried):
            thread.start()
            thread.join(timeout=10)
        return "ok"

    async with running_app(predict) as (_, client):
        (body,) = await post_all(client, [{}])
    # As the README says: a thread of the model's own does not carry the prediction's
    # context unless the model hands it over.
    assert body["logs"] == "context carried\n"
    assert "plain thread\n" in capsys.readouterr().out
