"""ChatModel against servers nobody here wrote: LiteLLM's proxy with mock models, and the
llmock chaos server (which also judges the client's retry behaviour).

Each lives in its own virtualenv under ``.venv-servers/`` (their pins clash with ours),
installed by ``scripts/install-llm-servers.sh`` (``make servers``, part of ``make test``);
the tests are skipped, with the reason, when it is not there (or point
``BATCHLINE_LITELLM`` / ``BATCHLINE_LLMOCK`` at the executables). No network at
run time: both answer from mock models.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchline.engine import RetryPolicy
from batchline.llm import ChatModel

SERVERS = Path(__file__).resolve().parents[2] / ".venv-servers"  # scripts/install-llm-servers.sh
LITELLM = Path(os.environ.get("BATCHLINE_LITELLM", SERVERS / "litellm" / "bin" / "litellm"))
LLMOCK = Path(os.environ.get("BATCHLINE_LLMOCK", SERVERS / "llmock" / "bin" / "llmock"))
MOCK_TEXT = "hello from the mock model"
KEY = "sk-anything"  # no master key: a local proxy on 127.0.0.1 with no database


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http:// URL
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"the server did not start: {log.read_text()[-500:]}")
            time.sleep(0.3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not LITELLM.exists():
        pytest.skip(f"LiteLLM's proxy is not installed at {LITELLM} (see this module's docstring)")
    folder = tmp_path_factory.mktemp("litellm")
    config = folder / "config.yaml"
    config.write_text(f"""model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: not-needed
      mock_response: "{MOCK_TEXT}"
""")
    port = _free_port()
    log = (folder / "proxy.log").open("w")
    process = subprocess.Popen(
        [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
        env={
            **os.environ,
            "LITELLM_LOG": "ERROR",
            "NO_DOCS": "True",
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        },  # 127.0.0.1, no DB
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base_url}/health/liveliness", process, folder / "proxy.log", 120)
        yield f"{base_url}/v1"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_litellm_mock_model_answers_and_its_cost_header_is_used(
    litellm_proxy: str, tmp_path: Path
) -> None:
    model = ChatModel("mock-gpt", base_url=litellm_proxy, api_key="sk-anything", cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # `mock-gpt` has no price here: the header gives it
        answer = model.complete("hello?")
    assert answer.text == MOCK_TEXT
    assert answer.finish_reason == "stop"
    assert answer.usage.cost_usd > 0  # x-litellm-response-cost, priced as gpt-4o-mini
    again = model.complete("hello?")
    assert again.cached
    assert model.usage.cost_usd == answer.usage.cost_usd


@pytest.fixture
def llmock(tmp_path: Path) -> Iterator[Any]:
    if not LLMOCK.exists():
        pytest.skip(f"llmock is not installed at {LLMOCK} (see this module's docstring)")
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def serve(*options: str) -> str:
        port = _free_port()
        log_path = tmp_path / f"llmock-{port}.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [
                str(LLMOCK),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        _wait_until_up(f"http://127.0.0.1:{port}/health", process, log_path, 60)  # no chaos there
        return f"http://127.0.0.1:{port}"

    yield serve
    for process, log in started:
        process.terminate()
        process.wait(30)
        log.close()


def _verdict(root: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LLMOCK), "report", "--url", root],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def _gather(model: ChatModel, count: int) -> list[Any]:
    async def many() -> list[Any]:
        try:
            calls = (model.acomplete(f"question {i}", max_tokens=20) for i in range(count))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await model.aclose()

    return asyncio.run(many())


def test_llmock_injected_429s_lose_nothing_and_the_verdict_passes(
    llmock: Any, tmp_path: Path
) -> None:
    root = llmock("--error-rate-429", "0.2", "--response-style", "echo")
    model = ChatModel(
        "gpt-4o-mini",
        base_url=f"{root}/v1",
        api_key="sk-llmock",
        cache=False,
        cache_dir=tmp_path,
        max_concurrency=8,
        retry=RetryPolicy(max_attempts=1),  # a 429 that used an attempt would fail
    )
    results = _gather(model, 20)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert model.usage.rate_limited > 0
    verdict = _verdict(root)
    assert verdict.returncode == 0, verdict.stdout  # waited Retry-After, no retry storm


@pytest.mark.slow  # llmock's bucket refills at rpm/60 a second: 10 s of real waiting
def test_llmock_rpm_bucket_without_rpm_given_loses_nothing(llmock: Any, tmp_path: Path) -> None:
    # llmock advertises x-ratelimit-limit/remaining/reset: the client paces itself by them
    root = llmock("--rpm", "60")
    model = ChatModel(
        "gpt-4o-mini",
        base_url=f"{root}/v1",
        api_key="sk-llmock",
        cache=False,
        cache_dir=tmp_path,
        max_concurrency=16,
        retry=RetryPolicy(max_attempts=1),
    )
    results = _gather(model, 70)  # 60 at once, then one a second
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert model.governor.advertised_rpm is not None
    verdict = _verdict(root)
    assert verdict.returncode == 0, verdict.stdout
