from __future__ import annotations

import asyncio

from receiver.event_loop import new_event_loop, run


def _loop_type() -> type[asyncio.AbstractEventLoop]:
    loop = new_event_loop()
    try:
        return type(loop)
    finally:
        loop.close()


async def _running_loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_the_receiver_runs_on_uvloop() -> None:
    assert run(_running_loop_type()).__module__.startswith("uvloop")


async def test_async_tests_run_on_the_receivers_loop() -> None:
    assert type(asyncio.get_running_loop()) is _loop_type()
