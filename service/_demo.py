"""The built-in demo model: streams a few words, with a log line for each."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import trio

from ._inputs import Input

log = logging.getLogger("demo")


class DemoPredictor:
    """Echoes ``prompt`` back one word at a time, like a tiny language model."""

    def setup(self) -> None:
        print("demo model loaded")

    async def predict(
        self,
        prompt: str = Input(
            default="hello from the trio prediction service",
            description="Text to stream back, word by word",
        ),
        delay: float = Input(default=0.2, ge=0.0, le=5.0, description="Seconds between two words"),
    ) -> AsyncIterator[str]:
        words = prompt.split() or [""]
        for i, word in enumerate(words):
            print(f"word {i + 1}/{len(words)}: {word}")
            yield word + (" " if i < len(words) - 1 else "")
            await trio.sleep(delay)
