"""The dashboard's web server: ``aiohttp.web`` pages rendered with Jinja2, read-only.

Why these pieces: aiohttp is already batchline's HTTP library (the LLM transport and the
local test server), so the dashboard adds no server dependency; pages are rendered on
the server with Jinja2 (already the workflow template engine, here with autoescaping),
so they work without a build step; the one chart uses uPlot (MIT, 50 KB, shipped as a
static file), and live progress is a server-sent-event stream read by a small script.

Every route is a GET; the state files are opened read-only. Values shown are redacted
(secret environment values never reach the page). When bound to a loopback address the
server also refuses requests whose ``Host`` is not a loopback name, so a web page in the
user's browser cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from batchline.errors import StateError
from batchline.ui import present
from batchline.ui.hosts import is_loopback
from batchline.ui.source import ItemRow, RunRow, StateSource

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SOURCES = web.AppKey("sources", list[StateSource])
_TEMPLATES = web.AppKey("templates", jinja2.Environment)
_SECRETS = web.AppKey("secrets", frozenset[str])
_LOOPBACK = web.AppKey("loopback_only", bool)
_POLL = web.AppKey("poll_seconds", float)
_PER_PAGE = 50
_STATUSES = ("running", "completed", "failed", "stopped", "interrupted")
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def create_app(
    states: Sequence[str | Path],
    *,
    loopback_only: bool = True,
    poll_seconds: float = 1.0,
    secret_names: Sequence[str] = (),
) -> web.Application:
    """The dashboard over the given state files (opened read-only).

    Args:
        states: SQLite state files (``WORKSPACE/state.db`` for workflows).
        loopback_only: refuse requests whose ``Host`` header is not a loopback name.
        poll_seconds: how often live pages look for new commits.
        secret_names: environment variables to redact besides the default
            ``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*`` names.

    Raises:
        StateError: a file is missing or is not a batchline state file.
    """
    app = web.Application(middlewares=[_guard])
    app[_SOURCES] = [StateSource(path, index) for index, path in enumerate(states)]
    app[_TEMPLATES] = _environment()
    app[_SECRETS] = present.secret_values(names=secret_names)
    app[_LOOPBACK] = loopback_only
    app[_POLL] = poll_seconds
    static = Path(str(resources.files("batchline.ui") / "static"))
    app.router.add_get("/", _runs_page)
    app.router.add_get("/run", _run_page)
    app.router.add_get("/items", _items_page)
    app.router.add_get("/item", _item_page)
    app.router.add_get("/export", _export)
    app.router.add_get("/api/runs", _api_runs)
    app.router.add_get("/api/run", _api_run)
    app.router.add_get("/api/series", _api_series)
    app.router.add_get("/events", _events)
    app.router.add_static("/static", static, append_version=True, name="static")
    app.on_cleanup.append(_close_sources)
    return app


async def _close_sources(app: web.Application) -> None:
    for source in app[_SOURCES]:
        source.close()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("batchline.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=present.when,
        duration=present.duration,
        number=present.number,
        money=present.money,
        key_text=present.key_text,
    )
    return env


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Loopback-only Host check, security headers, and errors as pages."""
    if request.app[_LOOPBACK]:
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        if not is_loopback(host):
            raise web.HTTPForbidden(
                text=f"batchline ui answers only to loopback host names, not {request.host!r}."
            )
    try:
        response = await handler(request)
    except StateError as exc:
        response = _render(
            request, "error.html", message=_clean(request, str(exc)), http_status=404
        )
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _clean(request: web.Request, text: str) -> str:
    secrets: frozenset[str] = request.app[_SECRETS]
    return present.redact(text, secrets)


def _render(
    request: web.Request, template: str, *, http_status: int = 200, **values: Any
) -> web.Response:
    env = request.app[_TEMPLATES]
    values.setdefault("sources", request.app[_SOURCES])
    values.setdefault("poll_ms", int(request.app[_POLL] * 1000))
    static = request.app.router["static"]
    html = env.get_template(template).render(
        static=lambda name: str(static.url_for(filename=name)),
        redact=lambda text: _clean(request, str(text)),
        as_json=lambda value: _clean(request, present.pretty_json(value)),
        **values,
    )
    return web.Response(text=html, content_type="text/html", status=http_status)


def _source(request: web.Request) -> StateSource:
    sources = request.app[_SOURCES]
    try:
        index = int(request.query.get("s", "0"))
        return sources[index]
    except (ValueError, IndexError):
        raise web.HTTPNotFound(text=f"no state source {request.query.get('s')!r}") from None


def _run_id(request: web.Request) -> str:
    run_id = request.query.get("id", "")
    if not run_id:
        raise web.HTTPBadRequest(text="missing `id`: which run? (e.g. /run?s=0&id=RUN_ID)")
    return run_id


def _page_number(request: web.Request) -> int:
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        return 1


def _key(request: web.Request) -> str | int:
    raw = request.query.get("key", "")
    try:
        key = json.loads(raw)
    except ValueError:
        key = raw
    if not isinstance(key, str | int) or isinstance(key, bool):
        raise web.HTTPBadRequest(text="`key` is a JSON string or integer, e.g. key=%22acme%22")
    return key


def _all_runs(request: web.Request) -> list[RunRow]:
    runs: list[RunRow] = []
    for source in request.app[_SOURCES]:
        runs.extend(source.runs())
    runs.sort(key=lambda run: run.created_at, reverse=True)
    return runs


async def _runs_page(request: web.Request) -> web.Response:
    status = request.query.get("status", "")
    search = request.query.get("q", "").strip()
    runs = await asyncio.to_thread(_all_runs, request)
    counts = {name: sum(1 for run in runs if run.status == name) for name in _STATUSES}
    shown = [
        run
        for run in runs
        if (not status or run.status == status)
        and (not search or search.lower() in run.run_id.lower())
    ]
    return _render(
        request,
        "runs.html",
        runs=shown,
        total=len(runs),
        counts=counts,
        statuses=_STATUSES,
        status=status,
        q=search,
        usage_of=present.usage_of,
    )


async def _run_page(request: web.Request) -> web.Response:
    source, run_id = _source(request), _run_id(request)
    error_type = request.query.get("error_type") or None
    page = _page_number(request)

    def load() -> tuple[RunRow, list[tuple[str, int]], Any, dict[str, Any]]:
        run = source.run(run_id)
        ids = [run.run_id, *(child.run_id for child in run.children)]
        usage = present.usage_of(run) or source.llm_usage(run_id)
        return (
            run,
            source.error_types(ids),
            source.failures(ids, error_type=error_type, page=page, per_page=_PER_PAGE),
            usage,
        )

    run, error_types, failures, usage = await asyncio.to_thread(load)
    return _render(
        request,
        "run.html",
        run=run,
        source=source,
        error_types=error_types,
        error_type=error_type or "",
        failures=failures,
        usage=usage,
        resume=_clean(request, present.resume_command(run, str(source.path))),
    )


async def _items_page(request: web.Request) -> web.Response:
    source, run_id = _source(request), _run_id(request)
    search = request.query.get("q", "").strip()
    status = request.query.get("status") or None
    page = _page_number(request)

    def load() -> tuple[RunRow, Any, list[Any]]:
        run = source.run(run_id)
        if search:
            found = [source.item(run_id, key) for key in source.find_keys(run_id, search)]
            return run, None, [row for row in found if row is not None]
        return run, source.items(run_id, page=page, per_page=_PER_PAGE, status=status), []

    run, listing, found = await asyncio.to_thread(load)
    return _render(
        request,
        "items.html",
        run=run,
        source=source,
        listing=listing,
        found=found,
        q=search,
        status=status or "",
    )


async def _item_page(request: web.Request) -> web.Response:
    source, run_id, key = _source(request), _run_id(request), _key(request)
    run, item = await asyncio.to_thread(lambda: (source.run(run_id), source.item(run_id, key)))
    if item is None:
        raise StateError(f"run `{run_id}` has no committed item with key {key!r} (yet).")
    recorded = item.result.get("llm") if isinstance(item.result, dict) else None
    llm = recorded if isinstance(recorded, dict) else None
    return _render(request, "item.html", run=run, source=source, item=item, llm=llm)


async def _export(request: web.Request) -> web.StreamResponse:
    source, run_id = _source(request), _run_id(request)
    kind = request.query.get("format", "jsonl")
    if kind not in {"jsonl", "csv"}:
        raise web.HTTPBadRequest(text=f"`format` is jsonl or csv, not {kind!r}")
    await asyncio.to_thread(source.run, run_id)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson" if kind == "jsonl" else "text/csv",
            "Content-Disposition": f'attachment; filename="{safe}.{kind}"',
        }
    )
    await response.prepare(request)
    rows = source.iter_export(run_id)
    try:
        while True:
            chunk = await asyncio.to_thread(_take, rows, 500)
            if not chunk:
                break
            await response.write(_clean(request, _export_text(chunk, kind)).encode())
        await response.write_eof()
    except ConnectionResetError:  # the browser stopped reading: nothing to clean up
        pass
    return response


def _take(rows: Iterator[ItemRow], count: int) -> list[ItemRow]:
    return [row for _, row in zip(range(count), rows, strict=False)]


def _export_text(rows: Sequence[Any], kind: str) -> str:
    records = [
        {
            "key": row.key,
            "status": row.status,
            "attempts": row.attempts,
            "result": row.result,
            "error_type": row.error_type,
            "message": row.message,
        }
        for row in rows
    ]
    if kind == "jsonl":
        return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    out = io.StringIO()
    writer = csv.writer(out)
    for record in records:
        writer.writerow(
            [
                present.key_text(record["key"]),
                record["status"],
                record["attempts"],
                json.dumps(record["result"], ensure_ascii=False),
                record["error_type"] or "",
                record["message"] or "",
            ]
        )
    return out.getvalue()


def _json(request: web.Request, data: Any) -> web.Response:
    return web.Response(text=_clean(request, json.dumps(data)), content_type="application/json")


async def _api_runs(request: web.Request) -> web.Response:
    runs = await asyncio.to_thread(_all_runs, request)
    return _json(request, [{"source": run.source, **run.summary()} for run in runs])


async def _api_run(request: web.Request) -> web.Response:
    source, run_id = _source(request), _run_id(request)
    run = await asyncio.to_thread(source.run, run_id)
    return _json(request, run.summary())


async def _api_series(request: web.Request) -> web.Response:
    source, run_id = _source(request), _run_id(request)
    return _json(request, await asyncio.to_thread(source.series, run_id))


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the run's summary each time it changes, until it is idle."""
    source, run_id = _source(request), _run_id(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    last = ""
    idle_polls = 0
    while idle_polls < 3:
        run = await asyncio.to_thread(source.run, run_id)
        text = _clean(request, json.dumps(run.summary()))
        if text != last:
            await response.write(f"data: {text}\n\n".encode())
            last = text
        idle_polls = 0 if run.active else idle_polls + 1
        await asyncio.sleep(request.app[_POLL])
    await response.write(b"event: idle\ndata: {}\n\n")
    return response


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 8765) -> web.AppRunner:
    """Start ``app`` on ``host:port``; the caller keeps the runner and cleans it up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
