"""Shared test helpers: fixture payloads, and the event loop every async test runs on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from receiver.event_loop import new_event_loop

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture
def firing_single() -> dict[str, Any]:
    return load_fixture("firing_single.json")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on the loop `alertmail receive` runs on."""
    return {"loop": new_event_loop}
