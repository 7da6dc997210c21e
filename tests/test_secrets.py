"""Secrets stay out of the service's own logs.

The ``Authorization`` token (``WEBHOOK_AUTH_TOKEN``) and the Standard Webhooks key
(``WEBHOOK_SECRET``) travel in every webhook request. Whatever goes wrong with those
requests (refused, reset, timed out, answered 4xx/5xx, a header the HTTP library rejects)
and whatever the clients send, the service's log records, at every level down to DEBUG,
with their tracebacks, never contain either of them, nor the decoded key.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from service import Config

from .conftest import RecordingTransport, WebhookRequest, running_app
from .fault_helpers import CLOSE, HANG, OK, RESET, FaultyReceiver, Hit, InFlight, Reply

KEY = b"k3y-bytes-nobody-may-see-0123456"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
TOKEN = "tok-DO-NOT-LOG-4f9a2c"


def leaks(caplog: pytest.LogCaptureFixture, *secrets: str) -> list[str]:
    """Every log line (message, arguments, traceback) that shows one of ``secrets``."""
    found = []
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    for record in caplog.records:
        text = handler.format(record)  # the message, its arguments and any traceback
        if any(s in text for s in secrets):
            found.append(text[:300])
    return found


def secret_forms(token: str = TOKEN, secret: str = SECRET) -> tuple[str, ...]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return (token, secret, secret.removeprefix("whsec_"), repr(key)[2:-1], key.hex())


async def stream(n: int = 4) -> AsyncIterator[int]:
    for i in range(n):
        print(f"line {i}")
        await trio.sleep(0.01)
        yield i


FAULTS: dict[str, Any] = {
    "ok": OK,
    "500": Reply(500),
    "410": Reply(410),
    "429": Reply(429, (("Retry-After", "0"),)),
    "reset": RESET,
    "closed": CLOSE,
    "hangs": HANG,
}


@pytest.mark.parametrize("fault", [*FAULTS, "refused"])
async def test_failing_webhooks_never_log_the_token_or_the_key(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's included
    answer = FAULTS.get(fault, OK)
    receiver = FaultyReceiver(plan=lambda hit: answer)
    await nursery.start(
        lambda task_status: receiver.run(fault != "refused", task_status=task_status)
    )
    settings = {
        "webhook_auth_token": TOKEN,
        "webhook_secret": SECRET,
        "webhook_timeout": 0.3,
        "webhook_backoff_initial": 0.05,
        "webhook_backoff_max": 0.1,
        "webhook_retry_budget": 0.6,
    }
    async with running_app(stream, transport=InFlight(), **settings) as (app, client):
        r = await client.post("/predictions", json={"webhook": receiver.url})
        assert (await r.get_json())["status"] == "succeeded"
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    if fault in ("ok", "hangs", "500", "reset"):
        assert receiver.hits, "the receiver was reached"
        assert receiver.hits[0].headers["authorization"] == f"Bearer {TOKEN}"
    if fault != "ok":
        # the failure was logged (so the check below looked at real failure lines)
        assert any(
            "webhook" in r.getMessage() and r.levelno >= logging.INFO for r in caplog.records
        )
    assert not leaks(caplog, *secret_forms())


@pytest.mark.parametrize(
    "token",
    [
        TOKEN + "\n",  # a token read from a file, newline and all
        "tok with\r\nInjected: header",
        "tök-\x00-DO-NOT-LOG",
    ],
    ids=["trailing-newline", "crlf", "nul-and-non-ascii"],
)
def test_a_token_that_cannot_be_a_header_is_refused_at_startup_without_echoing_it(
    token: str,
) -> None:
    """Such a token used to reach the HTTP library, which refused every webhook with an
    error message quoting the header, token and all, into the service's log."""
    with pytest.raises(ValueError) as error:
        Config(webhook_auth_token=token)
    assert "WEBHOOK_AUTH_TOKEN" in str(error.value)
    assert "DO-NOT-LOG" not in str(error.value) and "Injected" not in str(error.value)


@pytest.mark.parametrize(
    "secret",
    ["whsec_", "whsec_DO-NOT-LOG!!", "whsec_abc", "DO-NOT-LOG" + SECRET],
    ids=["empty", "not-base64", "bad-padding", "no-prefix"],
)
def test_a_malformed_signing_key_is_refused_at_startup_without_echoing_it(secret: str) -> None:
    """A key that is not base64 used to be accepted, then every single webhook failed
    to be signed (and so was never sent)."""
    with pytest.raises(ValueError) as error:
        Config(webhook_secret=secret)
    assert "WEBHOOK_SECRET" in str(error.value)
    assert "DO-NOT-LOG" not in str(error.value)
    assert secret.removeprefix("whsec_") not in str(error.value) or secret == "whsec_"


def test_config_repr_hides_the_secrets() -> None:
    config = Config(webhook_auth_token=TOKEN, webhook_secret=SECRET)
    assert not any(s in repr(config) for s in secret_forms())
    assert not any(s in str(config) for s in secret_forms())


async def test_secrets_sent_by_clients_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Requests that carry a token (an Authorization header, secrets in the body, in the
    input, in a webhook URL with credentials) are answered, and nothing of them is logged
    (not even when they are rejected)."""
    caplog.set_level(logging.DEBUG)
    # httpx logs each request's URL at INFO (a token in a webhook URL's query with it);
    # `python -m service` sets it to WARNING, as here.
    caplog.set_level(logging.WARNING, logger="httpx")
    client_secret = "client-pw-DO-NOT-LOG"
    sent = 0
    async with running_app(stream, transport=RecordingTransport()) as (app, client):
        headers = {"Authorization": f"Bearer {client_secret}", "Prefer": "respond-async"}
        bodies: list[Any] = [
            {"input": {"n": 1}, "token": client_secret},
            {"input": {"n": client_secret}},
            {"input": {"password": client_secret}},
            {"webhook": f"http://user:{client_secret}@example.test/"},
            {"webhook": f"http://example.test/?token={client_secret}", "input": {"n": 1}},
            {"id": client_secret + "/x"},
        ]
        for body in bodies:
            r = await client.post("/predictions", json=body, headers=headers)
            assert r.status_code in (202, 409, 422)
            sent += 1
        r = await client.post(
            "/predictions", data=b'{"x": "' + client_secret.encode() + b'"', headers=headers
        )
        assert r.status_code == 400
        with trio.fail_after(10):
            await app.webhooks.wait_idle()
    assert sent == len(bodies)
    assert not leaks(caplog, client_secret)


async def test_receiver_sees_the_token_the_logs_do_not_under_retry_logging(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The terminal request retried many times logs each retry at INFO: none shows the
    token, while every attempt carried it."""
    caplog.set_level(logging.DEBUG)
    count = 0

    def plan(hit: Hit) -> Any:
        nonlocal count
        if not hit.terminal:
            return OK
        count += 1
        return Reply(503) if count < 5 else OK

    receiver = FaultyReceiver(plan=plan)
    await nursery.start(receiver.run)
    settings = {
        "webhook_auth_token": TOKEN,
        "webhook_secret": SECRET,
        "webhook_backoff_initial": 0.01,
        "webhook_backoff_max": 0.05,
    }
    async with running_app(stream, transport=InFlight(), **settings) as (app, client):
        await client.post("/predictions", json={"webhook": receiver.url})
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    terminal = [h for h in receiver.hits if h.terminal]
    assert len(terminal) == 5
    assert all(h.headers["authorization"] == f"Bearer {TOKEN}" for h in terminal)
    retries = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert len(retries) == 4
    assert not leaks(caplog, *secret_forms())


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError, httpx.LocalProtocolError, RuntimeError],
    ids=["retried", "not-retried", "a-bug"],
)
async def test_an_error_message_quoting_the_headers_is_redacted(
    caplog: pytest.LogCaptureFixture, error: type[Exception]
) -> None:
    """Should any failure's message quote the request's headers (the HTTP library's
    does for a header it rejects), the service logs it with the secrets cut out."""
    caplog.set_level(logging.DEBUG, logger="service")

    async def quoting(request: WebhookRequest, n: int) -> httpx.Response:
        raise error(f"bad headers: {request.headers} key={SECRET}")

    settings = {
        "webhook_auth_token": TOKEN,
        "webhook_secret": SECRET,
        "webhook_backoff_initial": 0.01,
        "webhook_retry_budget": 0.2,
    }
    async with running_app(stream, transport=RecordingTransport(quoting), **settings) as (
        app,
        client,
    ):
        await client.post("/predictions", json={"webhook": "http://r.test/"})
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    failures = [r for r in caplog.records if "bad headers" in caplog.handler.format(r)]
    assert failures and any("[redacted]" in caplog.handler.format(r) for r in failures)
    assert not leaks(caplog, *secret_forms())
