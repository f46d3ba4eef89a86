"""The event loop alertmail's servers run on: uvloop where it is installed, else asyncio's.

uvloop (libuv, in C) is a drop-in loop for aiohttp that does each socket read, write and
wake-up for less CPU: the webhook path spends a good part of its time there. The test
suite runs on the same loop (tests/conftest.py), so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # a platform uvloop does not support: asyncio's own loop
    uvloop = None  # type: ignore[assignment]


def new_event_loop() -> asyncio.AbstractEventLoop:
    if uvloop is not None:
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the loop above."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
