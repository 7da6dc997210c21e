"""Webhooks: one sender task per prediction, a trailing 500 ms throttle, ordered delivery.

:meth:`WebhookSender.run` is the webhook task of one prediction. It sends ``start`` at
once; after that it sleeps on the prediction's change signal. When output or logs changed
and the interval since the last request has passed, it sends the latest snapshot at once;
otherwise it holds a Trio deadline at last-request + interval and sends then. Many changes
inside one interval become one request, and no change waits for a later change to be sent.
When the model is done the signal's channel ends, and ``completed`` goes out at once,
superseding whatever was pending, retried until accepted or the retry budget is spent.

Requests of one prediction go one at a time from this one task, so they arrive in order
and no body is older than the one before it. The model never waits for any of this.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import logging
import math
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import trio

from ._config import Config
from ._prediction import Prediction
from ._schema import to_json

__all__ = ["WebhookSender", "sign", "snapshot_json"]

log = logging.getLogger("service.webhooks")

RETRYABLE_STATUS = frozenset({408, 429})


def snapshot_json(snapshot: dict[str, Any]) -> bytes:
    """Serialise a prediction; see :func:`to_json` (NaN, lone surrogates, odd objects)."""
    return to_json(snapshot)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` header value for one request."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class WebhookSender:
    """Sends the webhooks of every prediction of one app through one shared client."""

    def __init__(self, client: httpx.AsyncClient, config: Config, version: str) -> None:
        self.client = client
        self.config = config
        self.user_agent = f"service/{version}"
        #: Terminal requests given up after the retry budget or a final 4xx.
        self.terminal_failures = 0

    async def run(self, p: Prediction) -> None:
        """The webhook task of prediction ``p``; returns once ``completed`` is settled."""
        assert p.signal is not None and p.webhook is not None
        signal, url, events = p.signal, p.webhook, p.webhook_events_filter
        interval = self.config.webhook_interval
        watch_output, watch_logs = "output" in events, "logs" in events
        sent_output = sent_logs = 0
        last_request = -math.inf

        async def send_snapshot() -> None:
            nonlocal sent_output, sent_logs, last_request
            sent_output, sent_logs = p.output_version, p.logs_version
            last_request = trio.current_time()
            await self._send_once(url, p.snapshot())

        with signal.receive:
            if "start" in events:
                await send_snapshot()
            running = True
            while running:
                pending = (watch_output and p.output_version != sent_output) or (
                    watch_logs and p.logs_version != sent_logs
                )
                if pending and trio.current_time() >= last_request + interval:
                    await send_snapshot()
                    continue
                with trio.move_on_at(last_request + interval if pending else math.inf):
                    running = await signal.wait()
        if "completed" in events:
            await self._deliver_terminal(url, p.snapshot())

    # -- delivery --------------------------------------------------------------------

    def _headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json", "user-agent": self.user_agent}
        if self.config.webhook_auth_token:
            headers["authorization"] = f"Bearer {self.config.webhook_auth_token}"
        if self.config.webhook_secret:
            timestamp = int(time.time())
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self.config.webhook_secret, msg_id, timestamp, body)
        return headers

    async def _post(self, url: str, msg_id: str, body: bytes) -> httpx.Response:
        return await self.client.post(url, content=body, headers=self._headers(msg_id, body))

    async def _send_once(self, url: str, snapshot: dict[str, Any]) -> None:
        """A non-terminal request: one attempt; the next snapshot supersedes a lost one."""
        body = snapshot_json(snapshot)
        try:
            response = await self._post(url, f"msg_{uuid.uuid4().hex}", body)
        except httpx.HTTPError as exc:
            log.warning("webhook for %s failed: %s", snapshot["id"], _describe(exc))
            return
        if response.is_error:
            log.warning("webhook for %s answered %d", snapshot["id"], response.status_code)

    async def _deliver_terminal(self, url: str, snapshot: dict[str, Any]) -> bool:
        """The ``completed`` request: retried on connection errors, timeouts, 408, 429 and
        5xx, with exponential backoff and full jitter, honouring ``Retry-After``, until
        ``webhook_retry_budget`` is spent. Other answers are final."""
        body = snapshot_json(snapshot)
        msg_id = f"msg_{uuid.uuid4().hex}"  # the same for every retry of this request
        give_up_at = trio.current_time() + self.config.webhook_retry_budget
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await self._post(url, msg_id, body)
            except httpx.HTTPError as exc:
                reason = _describe(exc)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return True
                if status not in RETRYABLE_STATUS and status < 500:
                    log.warning(
                        "terminal webhook for %s answered %d; not retried", snapshot["id"], status
                    )
                    self.terminal_failures += 1
                    return False
                reason = f"HTTP {status}"
                retry_after = _retry_after(response)
            backoff = min(
                self.config.webhook_backoff_max,
                self.config.webhook_backoff_initial * 2 ** (attempt - 1),
            )
            delay = random.uniform(0, backoff) if retry_after is None else retry_after
            if trio.current_time() + delay > give_up_at:
                log.warning(
                    "terminal webhook for %s given up after %d attempt(s): %s",
                    snapshot["id"],
                    attempt,
                    reason,
                )
                self.terminal_failures += 1
                return False
            log.info(
                "terminal webhook for %s: %s; retry %d in %.2f s",
                snapshot["id"],
                reason,
                attempt,
                delay,
            )
            await trio.sleep(delay)


def _describe(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
