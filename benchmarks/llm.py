"""LLM I/O against the local OpenAI-compatible server (run as its own process).

Throughput with 64 requests in flight at 50 ms a request (theoretical 1,280 requests/s)
for each transport, side by side with plain aiohttp and LangChain's ChatOpenAI; the rate
reached under a server-enforced limit of 600 requests/minute; and a re-run of 10,000
cached requests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchline.llm import ChatModel

from .common import Row

LATENCY, CONCURRENCY = 0.05, 64
THEORETICAL = CONCURRENCY / LATENCY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(*args: str) -> Iterator[str]:
    """The test server in its own process (so it does not share our GIL)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "batchline.testing.server", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


async def _drive(model: ChatModel, n: int) -> float:
    start = time.perf_counter()
    try:
        await asyncio.gather(*(model.acomplete(f"request {i}", cache=False) for i in range(n)))
    finally:
        await model.aclose()
    return n / (time.perf_counter() - start)


async def _plain_aiohttp(url: str, n: int) -> float:
    import aiohttp

    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            async with (
                gate,
                session.post(
                    f"{url}/chat/completions",
                    json={
                        "model": "test-model",
                        "messages": [{"role": "user", "content": f"r{i}"}],
                    },
                ) as response,
            ):
                await response.json()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - start)


def _langchain(url: str, n: int) -> Row:
    label = f"LLM throughput, {CONCURRENCY} in flight, {LATENCY * 1000:.0f} ms"
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        return Row(
            label, "LangChain ChatOpenAI.abatch", "not installed", "pip install langchain-openai"
        )
    chat = ChatOpenAI(model="test-model", base_url=url, api_key="t", max_retries=0)  # type: ignore[arg-type]
    prompts = [f"request {i}" for i in range(n)]
    start = time.perf_counter()
    asyncio.run(chat.abatch(prompts, config={"max_concurrency": CONCURRENCY}))
    rate = n / (time.perf_counter() - start)
    return Row(
        label,
        "LangChain ChatOpenAI.abatch",
        f"{rate:,.0f} req/s",
        f"{rate / THEORETICAL:.0%} of theoretical",
    )


async def _openai_semaphore(url: str, n: int) -> float:
    """The official ``openai`` client as users write it: ``AsyncOpenAI`` and a semaphore."""
    from openai import AsyncOpenAI

    gate = asyncio.Semaphore(CONCURRENCY)
    client = AsyncOpenAI(base_url=url, api_key="t", max_retries=0)

    async def one(i: int) -> None:
        async with gate:
            await client.chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": f"request {i}"}]
            )

    start = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()
    return n / (time.perf_counter() - start)


LITELLM_SCRIPT = """
import asyncio, sys, time
import litellm
url, n, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    gate = asyncio.Semaphore(concurrency)
    async def one(i):
        async with gate:
            await litellm.acompletion(model="openai/test-model", api_base=url, api_key="t",
                                      messages=[{"role": "user", "content": f"request {i}"}])
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    print(n / (time.perf_counter() - start))
asyncio.run(main())
"""


def _litellm(url: str, n: int) -> Row:
    """LiteLLM's ``acompletion`` with a semaphore, in its own virtualenv (``make servers``)."""
    label = f"LLM throughput, {CONCURRENCY} in flight, {LATENCY * 1000:.0f} ms"
    python = Path(__file__).resolve().parents[1] / ".venv-servers" / "litellm" / "bin" / "python"
    if not python.exists():
        return Row(label, "LiteLLM acompletion", "not installed", "make servers")
    done = subprocess.run(
        [str(python), "-c", LITELLM_SCRIPT, url, str(n), str(CONCURRENCY)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return Row(label, "LiteLLM acompletion", "failed", done.stderr.strip()[-120:])
    rate = float(done.stdout.split()[-1])
    share = f"{rate / THEORETICAL:.0%} of theoretical"
    return Row(label, "LiteLLM acompletion", f"{rate:,.0f} req/s", share)


CURATOR_SCRIPT = """
import sys, time
from bespokelabs import curator
url, n, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = curator.LLM(
    model_name="test-model",
    backend="openai",
    backend_params={
        "base_url": url, "api_key": "t", "max_concurrent_requests": concurrency,
        "max_requests_per_minute": 10_000_000, "max_tokens_per_minute": 10_000_000_000,
        "require_all_responses": False, "max_retries": 0,
    },
)
start = time.perf_counter()
llm([f"request {i}" for i in range(n)])
print(n / (time.perf_counter() - start))
"""


def _curator(url: str, n: int) -> Row:
    """bespokelabs-curator's online processor (``backend="openai"``) in its own virtualenv
    (``make bench`` installs it): a fresh cache folder, so every request is sent."""
    label = f"LLM throughput, {CONCURRENCY} in flight, {LATENCY * 1000:.0f} ms"
    venv = Path(__file__).resolve().parents[1] / ".venv-servers" / "curator"
    python = venv / "bin" / "python"
    if not python.exists():
        return Row(label, "curator (bespokelabs) LLM", "not installed", "make bench")
    # tiktoken fetches its encodings from the internet; litellm (a curator dependency)
    # ships cl100k_base in the cache layout tiktoken reads
    tokenizers = sorted(
        venv.glob("lib/python*/site-packages/litellm/litellm_core_utils/tokenizers")
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "CURATOR_CACHE_DIR": tmp,
            "TELEMETRY_ENABLED": "false",
            "CURATOR_DISABLE_RICH_DISPLAY": "1",
            **({"TIKTOKEN_CACHE_DIR": str(tokenizers[0])} if tokenizers else {}),
        }
        done = subprocess.run(
            [str(python), "-c", CURATOR_SCRIPT, url, str(n), str(CONCURRENCY)],
            capture_output=True, text=True, timeout=600, check=False, env=env, cwd=tmp,
        )  # fmt: skip
    if done.returncode != 0:
        return Row(label, "curator (bespokelabs) LLM", "failed", done.stderr.strip()[-120:])
    rate = float(done.stdout.split()[-1])
    share = f"{rate / THEORETICAL:.0%} of theoretical (its own timing: no process start)"
    return Row(label, "curator (bespokelabs) LLM, backend=openai", f"{rate:,.0f} req/s", share)


YAML_WORKFLOW = """name: llm-path
params:
  n: {type: integer, default: 2000}
steps:
  - name: items
    task: python
    inputs: {code: "result = list(range(args.n))"}
  - name: ask
    task: batch
    inputs:
      items: "{{ steps.items.result }}"
      chunk_size: 100
      max_concurrency: %d
      task:
        task: llm
        inputs: {model: test-model, prompt: "request {{ batch.item }}", cache: false}
"""


def _yaml_path(url: str, n: int) -> Row:
    """A workflow's ``task: llm`` batch step end to end: CLI start to exit, every item
    committed to the state file."""
    label = f"LLM throughput, {CONCURRENCY} in flight, {LATENCY * 1000:.0f} ms"
    with tempfile.TemporaryDirectory() as tmp:
        workflow = Path(tmp) / "wf.yaml"
        workflow.write_text(YAML_WORKFLOW % CONCURRENCY, encoding="utf-8")
        env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "t"}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "batchline.cli", "run", str(workflow), "--quiet",
             f"n={n}"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        return Row(label, "batchline YAML `task: llm` batch step", "failed", done.stderr[-120:])
    rate = n / elapsed
    return Row(
        label,
        f"batchline YAML `task: llm` batch step ({n:,} items, CLI start to exit)",
        f"{rate:,.0f} req/s",
        f"{rate / THEORETICAL:.0%} of theoretical; target >= 85% (includes ~0.8 s of "
        "interpreter start, imports and state setup)",
    )


def _no_rpm_under_a_limit(limit: int = 300, *, advertised: bool = False) -> Row:
    """A server enforcing ``limit`` requests per sliding minute, and a client given no rpm:
    how many requests are lost, and the rate reached once the first minute's free burst is
    spent: ``(requests - limit) / elapsed`` (ideal: ``limit`` per minute)."""
    total = int(os.environ.get("BATCHLINE_BENCH_NORPM_ITEMS", str(2 * limit)))
    flags = ["--rpm-limit", str(limit), *(["--ratelimit-headers"] if advertised else [])]
    with tempfile.TemporaryDirectory() as tmp, server(*flags) as url:
        model = ChatModel(
            "test-model",
            base_url=url,
            api_key="t",
            cache=False,
            cache_dir=tmp,
            max_concurrency=CONCURRENCY,
        )

        async def drive() -> tuple[int, float]:
            start = time.perf_counter()
            try:
                results = await asyncio.gather(
                    *(model.acomplete(f"q{i}", cache=False) for i in range(total)),
                    return_exceptions=True,
                )
            finally:
                await model.aclose()
            lost = sum(isinstance(r, BaseException) for r in results)
            return lost, time.perf_counter() - start

        lost, elapsed = asyncio.run(drive())
    per_minute = (total - limit) / elapsed * 60
    return Row(
        f"LLM under a server limit of {limit} requests/min, no rpm given",
        "batchline ChatModel() (advertised x-ratelimit-* limits)"
        if advertised
        else "batchline ChatModel() (429 headers, global cool-down)",
        f"{per_minute:,.0f} req/min ({per_minute / limit:.0%})",
        f"{total} requests, {lost} lost, {model.usage.rate_limited} 429s waited out; "
        "target 0 lost, >= 90%",
    )


def run() -> list[Row]:
    """Throughput per transport, rate under a limit, cached re-run."""
    rows = []
    n = 3000
    label = f"LLM throughput, {CONCURRENCY} in flight, {LATENCY * 1000:.0f} ms"
    with tempfile.TemporaryDirectory() as tmp, server("--latency", str(LATENCY)) as url:
        rate = asyncio.run(_plain_aiohttp(url, n))
        rows.append(
            Row(
                label,
                "plain aiohttp (the floor)",
                f"{rate:,.0f} req/s",
                f"{rate / THEORETICAL:.0%} of theoretical {THEORETICAL:,.0f}",
            )
        )
        for transport in ("aiohttp", "openai-aiohttp", "openai"):
            model = ChatModel(
                "test-model",
                base_url=url,
                api_key="t",
                transport=transport,
                max_concurrency=CONCURRENCY,
                cache=False,
                cache_dir=tmp,
            )
            rate = asyncio.run(_drive(model, n))
            note = f"{rate / THEORETICAL:.0%} of theoretical"
            if transport == "aiohttp":
                note += "; target >= 85%"
            rows.append(
                Row(
                    label, f"batchline ChatModel, transport={transport}", f"{rate:,.0f} req/s", note
                )
            )
        rows.append(_langchain(url, n))
        rate = asyncio.run(_openai_semaphore(url, n))
        rows.append(
            Row(
                label,
                "official openai AsyncOpenAI + semaphore",
                f"{rate:,.0f} req/s",
                f"{rate / THEORETICAL:.0%} of theoretical",
            )
        )
        rows.append(_litellm(url, n))
        rows.append(_curator(url, n))
        rows.append(_yaml_path(url, 2000))
        rows.append(_yaml_path(url, 20_000))  # the same with the fixed start-up cost amortised
    seconds = float(os.environ.get("BATCHLINE_BENCH_LIMIT_SECONDS", "60"))
    with tempfile.TemporaryDirectory() as tmp, server("--rpm-limit", "600") as url:
        model = ChatModel(
            "test-model",
            base_url=url,
            api_key="t",
            rpm=600,
            cache=False,
            cache_dir=tmp,
            max_concurrency=CONCURRENCY,
        )
        total = int(600 / 60 * seconds)

        async def limited() -> float:
            start = time.perf_counter()
            try:
                results = await asyncio.gather(
                    *(model.acomplete(f"q{i}", cache=False) for i in range(total))
                )
            finally:
                await model.aclose()
            assert len(results) == total
            return time.perf_counter() - start

        elapsed = asyncio.run(limited())
        per_minute = total / elapsed * 60
        rows.append(
            Row(
                "LLM under a server limit of 600 requests/min",
                "batchline ChatModel(rpm=600)",
                f"{per_minute:,.0f} req/min ({per_minute / 600:.0%})",
                f"{total} requests, 0 lost; target >= 95%",
            )
        )
    rows.append(_no_rpm_under_a_limit())
    rows.append(_no_rpm_under_a_limit(advertised=True))
    with tempfile.TemporaryDirectory() as tmp, server() as url:
        model = ChatModel(
            "test-model",
            base_url=url,
            api_key="t",
            cache_dir=Path(tmp),
            max_concurrency=CONCURRENCY,
        )

        async def fill(n: int) -> float:
            start = time.perf_counter()
            try:
                await asyncio.gather(*(model.acomplete(f"cached {i}") for i in range(n)))
            finally:
                await model.aclose()
            return time.perf_counter() - start

        asyncio.run(fill(10_000))
        again = asyncio.run(fill(10_000))
        rows.append(
            Row(
                "LLM cache: re-run of 10,000 requests",
                "batchline response cache",
                f"{again:.2f} s",
                f"{model.usage.cached_calls:,} served from cache; target < 2 s",
            )
        )
    return rows
