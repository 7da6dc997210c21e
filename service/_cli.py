"""``python -m service``: fill a Config in from the command line and serve it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from ._app import PredictionApp, create_app
from ._config import Config
from ._predictor import PredictorLoadError
from ._version import __version__

__all__ = ["main"]

log = logging.getLogger("service")


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve a model over HTTP with throttled webhooks (Cog-compatible API).",
    )
    parser.add_argument(
        "--predictor",
        help="path/to/file.py:Name or package.module:Name "
        "(env PREDICTOR; default: the built-in demo model)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (env PORT; default 5000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="how many predictions may run at once (default 1)",
    )
    parser.add_argument(
        "--cancel-grace",
        type=float,
        default=5.0,
        help="seconds a sync model may take to stop after a cancel (default 5)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=0.0,
        help="seconds running predictions may go on at shutdown before they "
        "are cancelled (default 0)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    try:
        return Config.from_env(
            predictor=args.predictor,
            host=args.host,
            port=args.port,
            concurrency=args.concurrency,
            cancel_grace=args.cancel_grace,
            shutdown_grace=args.shutdown_grace,
        )
    except ValueError as exc:
        parser.error(str(exc))


async def serve_app(app: PredictionApp, config: Config) -> None:
    """Serve until SIGTERM, SIGINT or ``POST /shutdown``, then drain and return.

    The first signal starts a graceful shutdown; a second one skips its grace periods.
    Signals are consumed until the server has stopped: one left pending would be
    redelivered to the default handler when the receiver closes and kill the process."""
    hconfig = HypercornConfig()
    hconfig.bind = [f"{config.host}:{config.port}"]
    hconfig.accesslog = None
    hconfig.graceful_timeout = 5.0
    # Hypercorn's messages go through the root handler of main(), in its format, once
    # (given a name instead, Hypercorn adds a handler of its own and every line shows twice).
    hconfig.errorlog = logging.getLogger("hypercorn.error")

    async def on_signals(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not app.runner.shutting_down:
                log.info("received %s; shutting down", name)
                app.request_shutdown()
            else:
                log.warning("received %s again; stopping without waiting", name)
                app.runner.stop_now()

    with _ignored_once_stopped(signal.SIGTERM, signal.SIGINT):
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_signals, signals)
                await serve(app, hconfig, shutdown_trigger=app.drained.wait)
                nursery.cancel_scope.cancel()


@contextmanager
def _ignored_once_stopped(*signums: int) -> Iterator[None]:
    """Ignore these signals from just before a receiver opens until the block ends, so a
    signal still pending when the receiver closes is dropped, not redelivered."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = parse_args(argv)
    try:
        app = create_app(config)
    except PredictorLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("serving %s on http://%s:%d", app.runner.predictor.name, config.host, config.port)
    # Ignored until the process exits, except while serve_app handles them: a signal that
    # comes once the server has stopped must not turn a clean exit into a kill.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    try:
        trio.run(serve_app, app, config)
    except BaseExceptionGroup as group:
        error = _os_error(group)
        if error is None:
            raise
        # The usual one: the port is taken. A message, not a traceback of nurseries.
        print(f"error: cannot serve on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 1
    return 0


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None
