"""The providers' batch protocols: OpenAI Files + Batches, Anthropic Message Batches.

Each speaks its provider's own wire protocol over one aiohttp session (the collector's):
submit a job of ``(custom_id, chat body)`` requests, read its status, read its results
(matched by ``custom_id``), cancel it. Answers come back chat-completion shaped, errors
as the provider's message. HTTP failures are classed like online calls: 429/5xx and
connection errors are transient (retried), other 4xx are terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchline.llm.errors import LLMRequestError, LLMTransientError, RateLimitedError
from batchline.llm.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    anthropic_headers,
    from_anthropic,
    to_anthropic,
)

__all__ = [
    "AnthropicBatches",
    "BatchProvider",
    "ItemResult",
    "JobStatus",
    "OpenAIBatches",
]

Request = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class JobStatus:
    """A job as the provider reports it.

    Attributes:
        state: the provider's state (OpenAI: validating, in_progress, finalizing, completed,
            failed, expired, cancelling, cancelled; Anthropic: in_progress, canceling, ended).
        done: whether results can be read (or the job failed as a whole).
        failed: the job failed as a whole (``error`` says why); its items are retried.
        error: the provider's error for a failed job.
        counts: the provider's request counts.
    """

    state: str
    done: bool
    failed: bool = False
    error: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemResult:
    """One request's outcome: an answer, or an error (``expired``: not processed)."""

    response: dict[str, Any] | None = None
    error: str | None = None
    expired: bool = False


class BatchProvider(Protocol):
    """What the collector needs from a provider."""

    name: str
    max_requests: int
    max_bytes: int

    def size(self, custom_id: str, body: dict[str, Any]) -> int:
        """Bytes one request takes in a job."""

    async def submit(self, session: Any, requests: Sequence[Request]) -> str:
        """Create a job; its id."""

    async def status(self, session: Any, job_id: str) -> JobStatus:
        """The job's state."""

    async def results(self, session: Any, job_id: str) -> dict[str, ItemResult]:
        """Outcomes by custom id (read once the job is done)."""

    async def cancel(self, session: Any, job_id: str) -> None:
        """Ask the provider to cancel the job."""


async def _call(
    session: Any, method: str, url: str, *, headers: Mapping[str, str], **options: Any
) -> tuple[int, bytes]:
    import aiohttp  # noqa: PLC0415 - only when jobs are made

    try:
        async with session.request(method, url, headers=dict(headers), **options) as response:
            data = await response.read()
            status = response.status
            retry_after = response.headers.get("retry-after")
    except TimeoutError:
        raise LLMTransientError(f"no answer from {url}") from None
    except aiohttp.ClientError as exc:
        raise LLMTransientError(f"connection to {url} failed: {exc}") from None
    if status == 200:
        return status, data
    message = _message(data)
    wait = float(retry_after) if retry_after and retry_after.replace(".", "").isdigit() else None
    if status == 429:
        raise RateLimitedError(f"429 from {url}: {message}", retry_after=wait, status=status)
    if status >= 500 or status in (408, 409):
        raise LLMTransientError(f"{status} from {url}: {message}", retry_after=wait, status=status)
    raise LLMRequestError(f"{status} from {url}: {message} (not retried: fix the request)", status)


def _message(data: bytes) -> str:
    try:
        payload = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data[:300].decode(errors="replace")
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("message") or error)
    return str(payload)[:300]


def _json(data: bytes, url: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except json.JSONDecodeError:
        raise LLMTransientError(f"{url} answered with a body that is not JSON") from None
    if not isinstance(value, dict):
        raise LLMTransientError(f"{url} answered {type(value).__name__}, not an object")
    return value


def _lines(data: bytes) -> list[dict[str, Any]]:
    rows = []
    for line in data.decode().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


class OpenAIBatches:
    """OpenAI's Batch API: a JSONL file uploaded to ``/files`` (purpose ``batch``), a job
    made with ``/batches`` over ``/v1/chat/completions``, results in an output file and
    an error file (``/files/{id}/content``).

    Args:
        base_url: the API root, with ``/v1`` (``OPENAI_BASE_URL``).
        api_key: sent as ``Authorization: Bearer``.
        max_requests: requests per job (OpenAI: 50,000).
        max_bytes: bytes per input file (OpenAI: 200 MB).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_requests: int = 50_000,
        max_bytes: int = 200 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.max_requests = max_requests
        self.max_bytes = max_bytes

    def _line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        row = {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        }
        return (json.dumps(row, ensure_ascii=False) + "\n").encode()

    def size(self, custom_id: str, body: dict[str, Any]) -> int:
        """Bytes of the request's JSONL line."""
        return len(self._line(custom_id, body))

    async def submit(self, session: Any, requests: Sequence[Request]) -> str:
        """Upload the input file, then create the batch."""
        import aiohttp  # noqa: PLC0415

        data = b"".join(self._line(custom_id, body) for custom_id, body in requests)
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field(
            "file", data, filename="batchline-input.jsonl", content_type="application/jsonl"
        )
        url = f"{self.base_url}/files"
        _, raw = await _call(session, "POST", url, headers=self.headers, data=form)
        file_id = _json(raw, url)["id"]
        url = f"{self.base_url}/batches"
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"created_by": "batchline"},
        }
        _, raw = await _call(session, "POST", url, headers=self.headers, json=body)
        return str(_json(raw, url)["id"])

    async def status(self, session: Any, job_id: str) -> JobStatus:
        """``GET /batches/{id}``."""
        url = f"{self.base_url}/batches/{job_id}"
        _, raw = await _call(session, "GET", url, headers=self.headers)
        job = _json(raw, url)
        state = str(job.get("status"))
        error = None
        errors = job.get("errors") or {}
        if isinstance(errors, Mapping) and errors.get("data"):
            first = errors["data"][0]
            error = f"{first.get('code')}: {first.get('message')}"
        counts = {k: int(v) for k, v in (job.get("request_counts") or {}).items()}
        done = state in ("completed", "failed", "expired", "cancelled")
        return JobStatus(state, done, state == "failed", error, counts)

    async def results(self, session: Any, job_id: str) -> dict[str, ItemResult]:
        """The output file (answers) and the error file (per-request errors, expiries)."""
        url = f"{self.base_url}/batches/{job_id}"
        _, raw = await _call(session, "GET", url, headers=self.headers)
        job = _json(raw, url)
        found: dict[str, ItemResult] = {}
        for name in ("output_file_id", "error_file_id"):
            file_id = job.get(name)
            if not file_id:
                continue
            url = f"{self.base_url}/files/{file_id}/content"
            _, data = await _call(session, "GET", url, headers=self.headers)
            for row in _lines(data):
                found[str(row.get("custom_id"))] = _openai_item(row)
        return found

    async def cancel(self, session: Any, job_id: str) -> None:
        """``POST /batches/{id}/cancel``."""
        url = f"{self.base_url}/batches/{job_id}/cancel"
        await _call(session, "POST", url, headers=self.headers)


def _openai_item(row: Mapping[str, Any]) -> ItemResult:
    error = row.get("error")
    if isinstance(error, Mapping):
        code = str(error.get("code") or "")
        message = f"{code}: {error.get('message')}" if code else str(error.get("message"))
        return ItemResult(error=message, expired=code == "batch_expired")
    response = row.get("response") or {}
    status = int(response.get("status_code") or 0)
    body = response.get("body") or {}
    if status == 200 and isinstance(body, dict):
        return ItemResult(response=body)
    return ItemResult(error=f"{status}: {_message(json.dumps(body).encode())}")


class AnthropicBatches:
    """Anthropic's Message Batches API: ``POST /v1/messages/batches`` with the requests
    inline, ``GET /v1/messages/batches/{id}``, results as JSONL from ``results_url``.

    Args:
        base_url: the API root, without ``/v1`` (``ANTHROPIC_BASE_URL``).
        api_key: sent as ``x-api-key``.
        max_requests: requests per job (Anthropic: 100,000).
        max_bytes: bytes per job (Anthropic: 256 MB).
        default_max_tokens: ``max_tokens`` for requests that give none.
    """

    name = "anthropic"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_requests: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = anthropic_headers(api_key)
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.default_max_tokens = default_max_tokens

    def _row(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": to_anthropic(body, self.default_max_tokens)}

    def size(self, custom_id: str, body: dict[str, Any]) -> int:
        """Bytes of the request in the job's JSON."""
        return len(json.dumps(self._row(custom_id, body), ensure_ascii=False).encode()) + 1

    async def submit(self, session: Any, requests: Sequence[Request]) -> str:
        """Create the message batch."""
        url = f"{self.base_url}/v1/messages/batches"
        body = {"requests": [self._row(custom_id, b) for custom_id, b in requests]}
        _, raw = await _call(session, "POST", url, headers=self.headers, json=body)
        return str(_json(raw, url)["id"])

    async def _get(self, session: Any, job_id: str) -> dict[str, Any]:
        url = f"{self.base_url}/v1/messages/batches/{job_id}"
        _, raw = await _call(session, "GET", url, headers=self.headers)
        return _json(raw, url)

    async def status(self, session: Any, job_id: str) -> JobStatus:
        """The batch's ``processing_status`` (results are ready once ``ended``)."""
        job = await self._get(session, job_id)
        state = str(job.get("processing_status"))
        counts = {k: int(v) for k, v in (job.get("request_counts") or {}).items()}
        return JobStatus(state, state == "ended", False, None, counts)

    async def results(self, session: Any, job_id: str) -> dict[str, ItemResult]:
        """The results JSONL, from the batch's ``results_url``."""
        job = await self._get(session, job_id)
        url = job.get("results_url") or f"{self.base_url}/v1/messages/batches/{job_id}/results"
        _, data = await _call(session, "GET", str(url), headers=self.headers)
        return {str(row.get("custom_id")): _anthropic_item(row) for row in _lines(data)}

    async def cancel(self, session: Any, job_id: str) -> None:
        """``POST /v1/messages/batches/{id}/cancel``."""
        url = f"{self.base_url}/v1/messages/batches/{job_id}/cancel"
        await _call(session, "POST", url, headers=self.headers)


def _anthropic_item(row: Mapping[str, Any]) -> ItemResult:
    result = row.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return ItemResult(response=from_anthropic(result.get("message") or {}))
    if kind == "errored":
        error = result.get("error") or {}
        inner = error.get("error") if isinstance(error.get("error"), Mapping) else error
        inner = inner or {}
        return ItemResult(error=f"{inner.get('type')}: {inner.get('message')}")
    return ItemResult(error=f"the request was {kind} before it ran", expired=True)
