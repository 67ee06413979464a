"""The ``batchline`` command: run and resume workflows, inspect and export runs."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from batchline.engine import is_child_of
from batchline.errors import BatchlineError, RunActiveError, StateError
from batchline.redact import Redactor, active
from batchline.state import (
    ItemStatus,
    PostgresStateStore,
    RunInfo,
    SQLiteStateStore,
    StateStore,
    is_postgres_url,
)

DEFAULT_STATE = ".batchline/state.db"


def _state_option(func: Any) -> Any:
    func = click.option(
        "--workspace",
        "workspace",
        default=None,
        type=click.Path(file_okay=False),
        help="A workflow workspace; its state file is WORKSPACE/state.db.",
    )(func)
    return click.option(
        "--state",
        "state",
        envvar="BATCHLINE_STATE",
        default=DEFAULT_STATE,
        show_default=True,
        help="The state store: a SQLite file or postgresql://... (env BATCHLINE_STATE).",
    )(func)


def _state_path(state: str, workspace: str | None) -> str:
    return os.path.join(workspace, "state.db") if workspace else state


def _open(state: str) -> StateStore:
    if is_postgres_url(state):
        try:
            return PostgresStateStore(state)
        except BatchlineError as exc:
            raise click.ClickException(str(exc)) from exc
    if not os.path.exists(state):
        raise click.ClickException(
            f"no state file at {state}. Pass --state PATH (the file given to "
            "SQLiteStateStore), or set BATCHLINE_STATE."
        )
    # Read-only: listing and showing runs never writes, so it works on a read-only file
    # or file system, and while another process holds the write lock.
    return SQLiteStateStore(state, read_only=True)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _info_dict(info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "status": info.status,
        "created_at": _when(info.created_at),
        "updated_at": _when(info.updated_at),
        "total_items": info.total_items,
        "succeeded": info.succeeded,
        "failed": info.failed,
        "pending": info.pending,
        "active_pid": info.active_pid,
        "active_host": info.active_host,
        "meta": dict(info.meta),
    }


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


EXIT_ACTIVE = 3
"""Exit status when the run is driven by another live process (``RunActiveError``)."""
EXIT_STATE = 4
"""Exit status when the state file cannot be used (disk full, read-only, locked, damaged)."""


class _Group(click.Group):
    """The command group: state errors end the command with one line and their own status.

    Exit statuses: 0 done, 1 a step or item failed, 2 invalid workflow or arguments,
    3 the run is active in another process, 4 the state file cannot be used,
    130 interrupted (SIGINT or SIGTERM; resume it).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunActiveError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_ACTIVE)
        except StateError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_STATE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchline")
def main() -> None:
    """Run large collections of items through LLM and agent work in durable batches.

    Exit statuses: 0 done, 1 a step or item failed, 2 invalid workflow or arguments,
    3 the run is active in another process, 4 the state file cannot be used (disk full,
    read-only, locked, damaged, not a batchline file), 130 interrupted (resume it).
    """


@main.command("runs")
@_state_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs_command(state: str, workspace: str | None, as_json: bool) -> None:
    """List the runs in a state file, newest first."""
    state = _state_path(state, workspace)
    store = _open(state)
    infos = store.list_runs()
    if as_json:
        click.echo(json.dumps([_info_dict(info) for info in infos], indent=2))
        return
    if not infos:
        click.echo(f"no runs in {store.location}")
        return
    from rich.console import Console  # noqa: PLC0415 - rich only for tables
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"runs in {store.location}")
    # Run ids are what `resume` and `show` take: never cut them. Their column is as wide
    # as the longest id; the other columns fold when the terminal is narrow.
    widest = max(len(info.run_id) for info in infos)
    table.add_column("run id", no_wrap=True, min_width=widest, overflow="ignore")
    for column in ("status", "created", "succeeded", "failed", "pending"):
        table.add_column(
            column,
            justify="right" if column in {"succeeded", "failed"} else "left",
            overflow="fold",
        )
    for info in infos:
        status = info.status + (f" (pid {info.active_pid})" if info.active_pid else "")
        table.add_row(
            info.run_id,
            status,
            _when(info.created_at),
            f"{info.succeeded:,}",
            f"{info.failed:,}",
            "?" if info.pending is None else f"{info.pending:,}",
        )
    Console(soft_wrap=True).print(table)


@main.command("show")
@click.argument("run_id")
@_state_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--failed", "only_failed", is_flag=True, help="List the failed items.")
@click.option("--items", "with_items", is_flag=True, help="List every item with its result.")
def show_command(
    run_id: str,
    state: str,
    workspace: str | None,
    as_json: bool,
    only_failed: bool,
    with_items: bool,
) -> None:
    """Show one run: status, counts, and (with --failed / --items) its items."""
    state = _state_path(state, workspace)
    store = _open(state)
    try:
        info = store.get_run(run_id)
    except BatchlineError as exc:
        raise click.ClickException(str(exc)) from exc
    status: ItemStatus | None = "failed" if only_failed else None
    records = list(store.iter_items(run_id, status)) if (only_failed or with_items) else []
    if only_failed and info.meta.get("kind") == "workflow":
        # A workflow's items live in one sub-run per batch step: RUN_ID/STEP.
        for sub_run in store.list_runs():
            if is_child_of(sub_run.run_id, run_id):
                records += store.iter_items(sub_run.run_id, "failed")
    redactor = Redactor.from_env(os.environ).merged(active())  # secrets are never printed
    hide = redactor.text
    if as_json:
        data = _info_dict(info)
        if only_failed or with_items:
            data["items"] = [record._asdict() for record in records]
        click.echo(json.dumps(redactor.data(_plain(data)), indent=2, default=str))
        return
    shown = _info_dict(info)
    sessions = shown["meta"].pop("sessions", [])
    for name, value in shown.items():
        if value not in (None, {}):
            click.echo(hide(f"{name:>12}: {value}"))
    for number, session in enumerate(sessions if isinstance(sessions, list) else [], 1):
        ended = session.get("ended")
        if ended:
            how = f"ended {_when(ended)}: {session.get('status')}"
        else:
            how = "lost (its process died)" if session.get("status") == "lost" else "running"
        click.echo(
            f"{'history' if number == 1 else '':>12}: session {number} started "
            f"{_when(session.get('started') or 0)} with {session.get('committed', 0):,} items "
            f"on record, {how}"
        )
    if info.meta.get("kind") == "workflow":
        for line in _llm_usage_lines(store.iter_items(run_id)):
            click.echo(line)
    for record in records:
        if record.status == "failed":
            click.echo(
                hide(
                    f"  {record.key!r:>20}  batch {record.batch_number}  failed after "
                    f"{record.attempts} attempt(s): {record.error_type}: {record.message}"
                )
            )
        else:
            click.echo(hide(f"  {record.key!r:>20}  {json.dumps(record.result)[:100]}"))
    if info.failed and not only_failed:
        click.echo(
            f"\n{info.failed} item(s) failed: `batchline show {run_id} --failed` lists them; "
            "resume the run with the same run_id to retry them."
        )


def _llm_usage_lines(records: Any) -> list[str]:
    """One line per workflow step that called an LLM: calls, cached, tokens, cost, mode."""
    lines = []
    for record in records:
        usage = record.result.get("usage") if isinstance(record.result, dict) else None
        if not (isinstance(record.key, str) and record.key.startswith("step:") and usage):
            continue
        calls, cached = int(usage.get("calls", 0)), int(usage.get("cached_calls", 0))
        lines.append(
            f"{'llm':>12}: step `{record.key[5:]}`: {calls:,} calls ({cached:,} from cache, "
            f"{usage.get('mode', 'online')} mode), {int(usage.get('prompt_tokens', 0)):,} "
            f"prompt + {int(usage.get('completion_tokens', 0)):,} completion tokens, "
            f"${float(usage.get('cost_usd', 0)):.4f}"
        )
    return lines


from batchline.workflow.commands import register as _register_workflow_commands  # noqa: E402

_register_workflow_commands(main)

from batchline.ui.command import ui_command  # noqa: E402

main.add_command(ui_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
