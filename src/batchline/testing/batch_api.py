"""Provider batch APIs on the local test server: OpenAI Files + Batches, Anthropic
Message Batches (and Anthropic's online Messages API, see ``anthropic_api``).

Jobs complete ``completion_time`` seconds after they are created, from the server's
clock, so a driver that is killed and restarted finds its jobs where the provider would
have them. Faults a real provider has can be injected:

- ``error_ids``: custom ids answered with a per-request error on their first submission;
- ``expire_ids``: custom ids left unprocessed (expired) on their first submission;
- ``fail_jobs``: the first N jobs fail as a whole (OpenAI ``failed``; Anthropic: every
  request errored).

The server counts what it saw (``BatchAPI.counts()``, also ``GET /_batchline/batches``):
jobs created, submissions and answers per custom id, so tests can check that no job was
submitted twice and every item was answered exactly once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batchline.testing.anthropic_api import (
    anthropic_message,
    check_anthropic_headers,
    request_problem,
)

__all__ = ["BatchAPI", "BatchJob", "chat_answer"]

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass
class BatchJob:
    """One job as the server keeps it."""

    id: str
    protocol: str  # "openai" | "anthropic"
    requests: list[dict[str, Any]]
    created_at: float
    completion_time: float
    fail: bool = False
    cancelled: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    expired: int = 0
    errored: int = 0
    succeeded: int = 0

    def done(self, now: float) -> bool:
        """Whether the job has finished processing."""
        return self.cancelled or now - self.created_at >= self.completion_time


class BatchAPI:
    """The batch endpoints of a test server (attached by ``OpenAICompatibleServer``).

    Args:
        answer: ``fn(openai_chat_body) -> (status, chat_completion_or_error)``: how one
            request is answered (the server's online answer).
        completion_time: seconds from a job's creation to its end.
        error_ids: custom ids that fail on their first submission.
        expire_ids: custom ids that expire on their first submission.
        fail_jobs: how many of the first jobs fail as a whole.
    """

    def __init__(
        self,
        answer: Answer,
        *,
        completion_time: float = 0.0,
        error_ids: Iterable[str] = (),
        expire_ids: Iterable[str] = (),
        fail_jobs: int = 0,
    ) -> None:
        self.answer = answer
        self.completion_time = completion_time
        self.error_ids = set(error_ids)
        self.expire_ids = set(expire_ids)
        self.fail_jobs = fail_jobs
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.submitted: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.errored: Counter[str] = Counter()
        self.expired: Counter[str] = Counter()
        self.failed_jobs = 0
        self._lock = threading.Lock()

    # -- counts ----------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Jobs, and submissions / answers / errors / expiries per custom id."""
        with self._lock:
            return {
                "jobs": len(self.jobs),
                "failed_jobs": self.failed_jobs,
                "submitted": dict(self.submitted),
                "answered": dict(self.answered),
                "errored": dict(self.errored),
                "expired": dict(self.expired),
            }

    # -- routes ----------------------------------------------------------------------------

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._file)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/batches", self._create_openai)
        app.router.add_get("/v1/batches", self._list_openai)
        app.router.add_get("/v1/batches/{id}", self._get_openai)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel_openai)
        app.router.add_post("/v1/messages/batches", self._create_anthropic)
        app.router.add_get("/v1/messages/batches/{id}", self._get_anthropic)
        app.router.add_get("/v1/messages/batches/{id}/results", self._results_anthropic)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self._cancel_anthropic)
        app.router.add_get("/_batchline/batches", self._counts)

    async def _counts(self, request: web.Request) -> web.Response:
        del request
        return web.json_response(self.counts())

    # -- OpenAI files ------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        purpose, data, filename = "", b"", "upload.jsonl"
        while True:
            part: Any = await reader.next()
            if part is None:
                break
            if part.name == "purpose":
                purpose = (await part.read()).decode()
            elif part.name == "file":
                filename = part.filename or filename
                data = bytes(await part.read())
        if not data or purpose != "batch":
            return _openai_error(400, "a `file` and `purpose=batch` are required")
        meta = self._new_file(data, filename, purpose)
        return web.json_response(meta)

    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self._lock:
            self.files[file_id] = (meta, data)
        return meta

    async def _file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return _openai_error(404, "no such file")
        return web.json_response(found[0])

    async def _content(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return _openai_error(404, "no such file")
        return web.Response(body=found[1], content_type="application/octet-stream")

    # -- OpenAI batches --------------------------------------------------------------------

    async def _create_openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        found = self.files.get(str(body.get("input_file_id")))
        if found is None:
            return _openai_error(400, "`input_file_id` names no uploaded file")
        if body.get("endpoint") != "/v1/chat/completions":
            return _openai_error(400, "`endpoint` must be /v1/chat/completions")
        requests = []
        for line in found[1].decode().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            requests.append({"custom_id": str(row["custom_id"]), "body": row["body"]})
        ids = [r["custom_id"] for r in requests]
        if len(set(ids)) != len(ids):
            return _openai_error(400, "duplicate custom_id in the input file")
        job = self._new_job("openai", requests, body.get("metadata") or {})
        return web.json_response(self._openai_view(job))

    async def _list_openai(self, request: web.Request) -> web.Response:
        del request
        data = [self._openai_view(job) for job in self.jobs.values() if job.protocol == "openai"]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def _get_openai(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job.protocol != "openai":
            return _openai_error(404, "no such batch")
        return web.json_response(self._openai_view(job))

    async def _cancel_openai(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job.protocol != "openai":
            return _openai_error(404, "no such batch")
        if not job.done(time.time()):
            job.cancelled = True
        return web.json_response(self._openai_view(job))

    def _openai_view(self, job: BatchJob) -> dict[str, Any]:
        now = time.time()
        status = "in_progress"
        if now - job.created_at < min(0.05, job.completion_time / 4):
            status = "validating"
        errors = None
        if job.done(now):
            self._finish(job)
            if job.fail:
                status = "failed"
                errors = {
                    "object": "list",
                    "data": [{"code": "server_error", "message": "the batch failed (injected)"}],
                }
            elif job.cancelled:
                status = "cancelled"
            elif job.expired:
                status = "expired"
            else:
                status = "completed"
        total = len(job.requests)
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": errors,
            "input_file_id": "file-input",
            "completion_window": "24h",
            "status": status,
            "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id,
            "created_at": int(job.created_at),
            "in_progress_at": int(job.created_at),
            "expires_at": int(job.created_at + 86400),
            "completed_at": int(now) if status == "completed" else None,
            "failed_at": int(now) if status == "failed" else None,
            "expired_at": int(now) if status == "expired" else None,
            "request_counts": {
                "total": total,
                "completed": job.succeeded,
                "failed": job.errored + job.expired,
            },
            "metadata": job.metadata,
        }

    # -- Anthropic batches -----------------------------------------------------------------

    async def _create_anthropic(self, request: web.Request) -> web.Response:
        problem = check_anthropic_headers(request)
        if problem is not None:
            return problem
        body = await request.json()
        rows = body.get("requests")
        if not isinstance(rows, list) or not rows:
            return _anthropic_error(400, "`requests` must be a non-empty list")
        for row in rows:
            reason = request_problem(row.get("params") if isinstance(row, dict) else None)
            if reason is not None:
                return _anthropic_error(400, f"requests[{row.get('custom_id')}]: {reason}")
        requests = [{"custom_id": str(r["custom_id"]), "body": r["params"]} for r in rows]
        ids = [r["custom_id"] for r in requests]
        if len(set(ids)) != len(ids):
            return _anthropic_error(400, "duplicate custom_id in the batch")
        job = self._new_job("anthropic", requests, {})
        return web.json_response(self._anthropic_view(job, request))

    async def _get_anthropic(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job.protocol != "anthropic":
            return _anthropic_error(404, "no such message batch")
        return web.json_response(self._anthropic_view(job, request))

    async def _cancel_anthropic(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job.protocol != "anthropic":
            return _anthropic_error(404, "no such message batch")
        if not job.done(time.time()):
            job.cancelled = True
        return web.json_response(self._anthropic_view(job, request))

    async def _results_anthropic(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job.protocol != "anthropic":
            return _anthropic_error(404, "no such message batch")
        if not job.done(time.time()):
            return _anthropic_error(400, "the batch has not ended yet")
        self._finish(job)
        text = "".join(json.dumps(row) + "\n" for row in job.results or [])
        return web.Response(text=text, content_type="application/binary")

    def _anthropic_view(self, job: BatchJob, request: web.Request) -> dict[str, Any]:
        now = time.time()
        ended = job.done(now)
        if ended:
            self._finish(job)
        total = len(job.requests)
        counts = {
            "processing": 0 if ended else total,
            "succeeded": job.succeeded,
            "errored": job.errored,
            "canceled": total - job.succeeded - job.errored - job.expired if job.cancelled else 0,
            "expired": job.expired,
        }
        root = f"{request.scheme}://{request.host}"
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "ended_at": _iso(now) if ended else None,
            "created_at": _iso(job.created_at),
            "expires_at": _iso(job.created_at + 86400),
            "archived_at": None,
            "cancel_initiated_at": _iso(now) if job.cancelled else None,
            "results_url": f"{root}/v1/messages/batches/{job.id}/results" if ended else None,
        }

    # -- jobs ------------------------------------------------------------------------------

    def _new_job(
        self, protocol: str, requests: list[dict[str, Any]], metadata: dict[str, Any]
    ) -> BatchJob:
        prefix = "batch_" if protocol == "openai" else "msgbatch_"
        with self._lock:
            fail = self.failed_jobs < self.fail_jobs
            if fail:
                self.failed_jobs += 1
            job = BatchJob(
                id=f"{prefix}{uuid.uuid4().hex[:24]}",
                protocol=protocol,
                requests=requests,
                created_at=time.time(),
                completion_time=self.completion_time,
                fail=fail,
                metadata=dict(metadata),
            )
            self.jobs[job.id] = job
            for row in requests:
                self.submitted[row["custom_id"]] += 1
        return job

    def _finish(self, job: BatchJob) -> None:
        """Answer the job's requests once (when it is first seen ended)."""
        with self._lock:
            if job.results is not None:
                return
            job.results = []
            for row in job.requests:
                job.results.append(self._one(job, row["custom_id"], row["body"]))
            if job.protocol == "openai" and not job.fail:
                outputs = [r for r in job.results if r.get("response", {}) and not r["error"]]
                outputs = [r for r in outputs if r["response"]["status_code"] == 200]
                errors = [r for r in job.results if r not in outputs]
                if outputs:
                    data = "".join(json.dumps(r) + "\n" for r in outputs).encode()
                    job.output_file_id = self._new_file_locked(data, "batch_output.jsonl")
                if errors:
                    data = "".join(json.dumps(r) + "\n" for r in errors).encode()
                    job.error_file_id = self._new_file_locked(data, "batch_errors.jsonl")

    def _new_file_locked(self, data: bytes, filename: str) -> str:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": "batch_output",
            "status": "processed",
        }
        self.files[file_id] = (meta, data)
        return file_id

    def _one(self, job: BatchJob, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        first = self.submitted[custom_id] == 1
        openai = job.protocol == "openai"
        if job.fail:
            job.errored += 1
            self.errored[custom_id] += 1
            if openai:
                return {
                    "id": f"req_{custom_id}",
                    "custom_id": custom_id,
                    "response": None,
                    "error": {"code": "server_error", "message": "the batch failed"},
                }
            return _anthropic_errored(custom_id, "api_error", "the batch failed (injected)")
        if job.cancelled or (first and custom_id in self.expire_ids):
            job.expired += 1
            self.expired[custom_id] += 1
            if openai:
                return {
                    "id": f"req_{custom_id}",
                    "custom_id": custom_id,
                    "response": None,
                    "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the "
                        "completion window expired.",
                    },
                }
            return {"custom_id": custom_id, "result": {"type": "expired"}}
        if first and custom_id in self.error_ids:
            job.errored += 1
            self.errored[custom_id] += 1
            if openai:
                return {
                    "id": f"req_{custom_id}",
                    "custom_id": custom_id,
                    "response": {
                        "status_code": 500,
                        "request_id": f"req_{custom_id}",
                        "body": {
                            "error": {"message": "injected request error", "type": "server_error"}
                        },
                    },
                    "error": None,
                }
            return _anthropic_errored(custom_id, "api_error", "injected request error")
        if openai:
            status, payload = self.answer(body)
        else:
            status, payload = 200, anthropic_message(body, self.answer)
        if status == 200:
            job.succeeded += 1
            self.answered[custom_id] += 1
        else:
            job.errored += 1
            self.errored[custom_id] += 1
        if openai:
            return {
                "id": f"req_{custom_id}",
                "custom_id": custom_id,
                "response": {
                    "status_code": status,
                    "request_id": f"req_{custom_id}",
                    "body": payload,
                },
                "error": None,
            }
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": payload}}


def _anthropic_errored(custom_id: str, kind: str, message: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "errored",
            "error": {"type": "error", "error": {"type": kind, "message": message}},
        },
    }


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _openai_error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error"}}, status=status
    )


def _anthropic_error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}},
        status=status,
    )


def chat_answer(content: Callable[[list[dict[str, Any]], dict[str, Any]], str]) -> Answer:
    """An ``Answer`` from the server's content function: a full chat completion."""

    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages: list[dict[str, Any]] = body.get("messages") or []
        if not messages or "model" not in body:
            return 400, {
                "error": {
                    "message": "`model` and `messages` are required",
                    "type": "invalid_request_error",
                }
            }
        text = content(messages, body)
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(text) // 4)
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        }

    return answer
