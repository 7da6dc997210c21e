"""Benchmark models for the project's server.

``Stream`` (async generator) and ``SyncStream`` (plain generator, run in a worker thread)
yield ``n`` outputs spread evenly over ``seconds`` (as fast as they can when ``seconds`` is
0). With ``stamp`` each output is ``"#<index> <time.monotonic()>"`` and each comes with a
log line ``"@<index> <time>"``: the receiver, on the same machine and clock, can tell how
stale every webhook body is, and count outputs and log lines in a body by its ``"#`` and
``@`` markers without parsing megabytes of JSON. Without ``stamp`` outputs are the bare
indexes and there are no log lines (the hot-path scenario).

``cog_predict.py`` holds the same models for Cog's server; keep the two in step.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import trio


class Stream:
    async def predict(
        self,
        n: int = 10,
        seconds: float = 0.0,
        delay: float = 0.0,
        stamp: bool = True,
        checkpoint_every: int = 100,
    ) -> AsyncIterator[str]:
        if delay > 0:
            await trio.sleep(delay)
        step = seconds / n if n > 0 else 0.0
        every = max(1, checkpoint_every)
        t0 = time.monotonic()
        for i in range(n):
            ahead = t0 + i * step - time.monotonic() if step else 0.0
            if ahead > 0.001:
                await trio.sleep(ahead)
            elif i % every == 0:
                await trio.lowlevel.checkpoint()
            if stamp:
                now = time.monotonic()
                print(f"@{i} {now:.6f}")
                yield f"#{i} {now:.6f}"
            else:
                yield str(i)


class SyncStream:
    def predict(
        self,
        n: int = 10,
        seconds: float = 0.0,
        delay: float = 0.0,
        stamp: bool = True,
        checkpoint_every: int = 100,
    ) -> Iterator[str]:
        if delay > 0:
            time.sleep(delay)
        step = seconds / n if n > 0 else 0.0
        t0 = time.monotonic()
        for i in range(n):
            ahead = t0 + i * step - time.monotonic() if step else 0.0
            if ahead > 0.001:
                time.sleep(ahead)
            if stamp:
                now = time.monotonic()
                print(f"@{i} {now:.6f}")
                yield f"#{i} {now:.6f}"
            else:
                yield str(i)


class Trivial:
    def predict(self, x: int = 0) -> int:
        return x + 1
