"""Fixtures for the end-to-end tests: the whole stack (receiver.stack.Stack) built from
the shipped deploy/ files, time-scaled 1/20, on free loopback ports; always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from receiver.stack import Stack, missing_packages
from receiver.stack_config import Ports
from tests.e2e.helpers import LogWriter


def start_stack(tmp: pytest.TempPathFactory, name: str, **kw: object) -> Stack:
    missing = missing_packages()
    if missing:
        pytest.skip(f"needs the Debian packages {' '.join(missing)}")
    stack = Stack(tmp.mktemp(name), Ports.free(), **kw)  # type: ignore[arg-type]
    return stack.start()  # stops what it started if any part fails to come up


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory, "stack")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Iterator[LogWriter]:
    with LogWriter(stack) as writer:
        yield writer
