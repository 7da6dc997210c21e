"""Every setting of the service in one object.

The CLI only fills a :class:`Config` in; tests build their own. Nothing else reads the
environment, so two apps in one process never share settings by accident.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Config"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    #: ``path/to/file.py:Name`` or ``package.module:Name``; ``None`` serves the demo model.
    predictor: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    #: How many predictions may run at once; the next one is answered ``409``.
    concurrency: int = 1
    #: Request bodies larger than this are answered ``413``.
    max_body_bytes: int = 16 * MiB

    #: Output/logs webhooks are sent at most once per this many seconds per prediction.
    webhook_interval: float = 0.5
    #: How long the terminal webhook is retried before it is given up.
    webhook_retry_budget: float = 300.0
    #: First retry delay; it doubles on every attempt (with full jitter) up to the cap.
    webhook_backoff_initial: float = 0.5
    webhook_backoff_max: float = 30.0
    #: Timeout of one webhook request (connect, read, write and pool each).
    webhook_timeout: float = 10.0
    #: Most webhook connections open at once, over all predictions.
    webhook_max_connections: int = 64
    #: ``Authorization: Bearer <token>`` on every webhook request when set.
    webhook_auth_token: str | None = field(default=None, repr=False)
    #: A Standard Webhooks key (``whsec_...``); requests are signed when set.
    webhook_secret: str | None = field(default=None, repr=False)

    #: How long a sync model may take to stop after CancelationException was raised in
    #: its thread; after that the prediction is reported canceled and the thread abandoned.
    cancel_grace: float = 5.0
    #: On shutdown, how long running predictions may go on before they are cancelled.
    shutdown_grace: float = 0.0
    #: On shutdown, how long terminal webhooks may take to be delivered.
    shutdown_webhook_deadline: float = 10.0

    #: How many finished predictions are remembered for idempotent PUT and cancel.
    finished_history: int = 1000

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        # The messages never quote the value: it is a secret, and error messages get logged.
        token = self.webhook_auth_token
        if token is not None and not re.fullmatch(r"[\x21-\x7e]+", token):
            # Such a token cannot be a header: every webhook would fail, and the HTTP
            # library's error message would quote it into the log.
            raise ValueError(
                "WEBHOOK_AUTH_TOKEN must be printable ASCII without spaces or line breaks "
                "(a trailing newline from a file?)"
            )
        if self.webhook_secret is not None:
            try:
                key = base64.b64decode(self.webhook_secret.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                key = b""
            if not self.webhook_secret.startswith("whsec_") or not key:
                raise ValueError(
                    "WEBHOOK_SECRET must be a Standard Webhooks key: 'whsec_' and base64"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Build a config from ``PORT``, ``PREDICTOR``, ``WEBHOOK_AUTH_TOKEN`` and
        ``WEBHOOK_SECRET``; keyword overrides (from the CLI) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("PORT"):
            values["port"] = int(env["PORT"])
        if env.get("PREDICTOR"):
            values["predictor"] = env["PREDICTOR"]
        if env.get("WEBHOOK_AUTH_TOKEN"):
            values["webhook_auth_token"] = env["WEBHOOK_AUTH_TOKEN"]
        if env.get("WEBHOOK_SECRET"):
            values["webhook_secret"] = env["WEBHOOK_SECRET"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
