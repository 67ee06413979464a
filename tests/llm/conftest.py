"""A real OpenAI-compatible server on 127.0.0.1 for every LLM test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from batchline.testing import OpenAICompatibleServer


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as running:
        yield running


@pytest.fixture
def make_server() -> Iterator[Any]:
    started: list[OpenAICompatibleServer] = []

    def make(**options: Any) -> OpenAICompatibleServer:
        running = OpenAICompatibleServer(**options).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
