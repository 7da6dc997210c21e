"""Benchmark models for Cog's server: the models of ``project.py``, written against Cog's
SDK (``BasePredictor``, ``cog.Input``) and asyncio. The benchmark copies this file as
``predict.py`` into a temporary directory and starts Cog's server there, in Cog's own
virtual environment; the project never imports it. Keep it in step with ``project.py``.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from cog import BasePredictor, Input


class Stream(BasePredictor):
    async def predict(
        self,
        n: int = Input(default=10),
        seconds: float = Input(default=0.0),
        delay: float = Input(default=0.0),
        stamp: bool = Input(default=True),
        checkpoint_every: int = Input(default=100),
    ) -> AsyncIterator[str]:
        if delay > 0:
            await asyncio.sleep(delay)
        step = seconds / n if n > 0 else 0.0
        every = max(1, checkpoint_every)
        t0 = time.monotonic()
        for i in range(n):
            ahead = t0 + i * step - time.monotonic() if step else 0.0
            if ahead > 0.001:
                await asyncio.sleep(ahead)
            elif i % every == 0:
                await asyncio.sleep(0)
            if stamp:
                now = time.monotonic()
                print(f"@{i} {now:.6f}")
                yield f"#{i} {now:.6f}"
            else:
                yield str(i)


class SyncStream(BasePredictor):
    def predict(
        self,
        n: int = Input(default=10),
        seconds: float = Input(default=0.0),
        delay: float = Input(default=0.0),
        stamp: bool = Input(default=True),
        checkpoint_every: int = Input(default=100),
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


class Trivial(BasePredictor):
    def predict(self, x: int = Input(default=0)) -> int:
        return x + 1
