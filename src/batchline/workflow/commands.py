"""The workflow commands of the CLI: run, resume, validate, export."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import click

from batchline.engine import child_run_id, is_child_of, split_run_id
from batchline.errors import BatchlineError, StateError
from batchline.observe.meters import format_usd
from batchline.redact import MASK, Redactor, active
from batchline.state import SQLiteStateStore
from batchline.workflow.checks import static_problems, static_warnings, unsafe_uses
from batchline.workflow.errors import WorkflowError
from batchline.workflow.params import convert_param
from batchline.workflow.registry import candidate_state_files, remember_state_file
from batchline.workflow.runner import (
    EXIT_INVALID,
    STATE_FILE,
    WorkflowResult,
    WorkflowRunner,
    find_resumable,
    load_workflow,
    param_changes,
    parse_located,
    run_info,
)
from batchline.workflow.schema import WorkflowSpec
from batchline.workflow.yamlfile import load_file


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """``name=value`` pairs (yaml-workflow's ``--name=value`` too)."""
    params: dict[str, str] = {}
    for pair in pairs:
        text = pair[2:] if pair.startswith("--") else pair
        name, sep, value = text.partition("=")
        if pair.startswith("-") and not sep:
            raise WorkflowError(
                [f"unknown option {pair!r}; see `batchline run --help` (params are name=value)"]
            )
        if not sep or not name:
            raise WorkflowError(
                [f"argument {pair!r} is not name=value; pass params as name=value, e.g. chunk=20"]
            )
        params[name.strip()] = value
    return params


def _redactor() -> Redactor:
    """Secrets of this process (registered ones and secret-looking env names)."""
    return active().merged(Redactor.from_env(os.environ))


def _split(values: tuple[str, ...]) -> list[str]:
    """``--skip-steps a,b --skip-steps c`` as ``[a, b, c]``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _fail_invalid(error: WorkflowError) -> None:
    click.echo(f"error: {_redactor().text(str(error))}", err=True)
    sys.exit(EXIT_INVALID)


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    del frame
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _report(
    result: WorkflowResult, output: str, quiet: bool, summary_out: TextIO | None = None
) -> None:
    redactor = _redactor()
    if output == "json":
        click.echo(
            json.dumps(redactor.data(result.as_dict()), indent=2, default=str), file=summary_out
        )
    elif not quiet or result.exit_code:
        stream = sys.stderr if result.exit_code else sys.stdout
        click.echo(
            redactor.text(f"run {result.run_id}: {result.status}. {result.message}"), file=stream
        )
        usage = result.usage
        if usage:
            click.echo(
                f"LLM: {int(usage.get('calls', 0))} calls ({int(usage.get('cached_calls', 0))} "
                f"from cache), {int(usage.get('prompt_tokens', 0)):,} prompt + "
                f"{int(usage.get('completion_tokens', 0)):,} completion tokens, "
                f"{format_usd(float(usage.get('cost_usd', 0)))}",
                file=stream,
            )
    sys.exit(result.exit_code)


def _show_batch_jobs(quiet: bool) -> None:
    """Provider batch jobs (``mode: batch``) report their states on stderr as they change."""
    logger = logging.getLogger("batchline.llm.batch")
    if quiet or any(getattr(h, "_batchline_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._batchline_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _cancel_jobs(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--cancel-jobs``: models in batch mode cancel their jobs on Ctrl-C."""
    del ctx, param
    if value:
        os.environ["BATCHLINE_CANCEL_JOBS"] = "1"


def _execute(runner: WorkflowRunner, output: str, quiet: bool) -> None:
    _show_batch_jobs(quiet)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    # With --format json the summary is the only thing on stdout: whatever else prints
    # (a task's print, Ray's worker-death notices, even after the run) goes to stderr.
    summary_out = sys.stdout
    if output == "json":
        sys.stdout = sys.stderr
    try:
        result = runner.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if not runner.dry_run and Path(runner.state).is_file():
            remember_state_file(runner.state)  # so `batchline resume RUN_ID` works anywhere
    _report(result, output, quiet, summary_out)


def _ray_options(given: dict[str, Any]) -> dict[str, Any]:
    """Ray settings from the ``--ray-*`` options (only those given)."""
    runtime_env: dict[str, Any] = {}
    if given.get("ray_working_dir"):
        runtime_env["working_dir"] = given["ray_working_dir"]
    if given.get("ray_py_modules"):
        runtime_env["py_modules"] = list(given["ray_py_modules"])
    if given.get("ray_pip"):
        runtime_env["pip"] = list(given["ray_pip"])
    options: dict[str, Any] = {
        "address": given.get("ray_address"),
        "num_cpus": given.get("ray_num_cpus"),
        "num_gpus": given.get("ray_num_gpus"),
        "memory": given.get("ray_memory"),
    }
    if runtime_env:
        options["runtime_env"] = runtime_env
    return {k: v for k, v in options.items() if v is not None}


def _common(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--workspace",
                type=click.Path(file_okay=False),
                default=None,
                help="Where state lives (default: the workflow's settings.workspace).",
            ),
            click.option("--quiet", "-q", is_flag=True, help="Print only errors."),
            click.option(
                "--format",
                "output",
                type=click.Choice(["text", "json"]),
                default="text",
                help="The final summary as text or JSON.",
            ),
            click.option(
                "--backend",
                type=click.Choice(["local", "ray"]),
                default=None,
                help='Where batches run (ray needs Ray: pip install -e ".[ray]" in the checkout).',
            ),
            click.option(
                "--ray-address",
                default=None,
                help="The Ray cluster: HOST:PORT, ray://HOST:10001 or auto (env RAY_ADDRESS).",
            ),
            click.option(
                "--ray-working-dir",
                default=None,
                help="Ship this folder to the Ray workers (runtime_env working_dir).",
            ),
            click.option(
                "--ray-py-module",
                "ray_py_modules",
                multiple=True,
                help="Ship this package folder or file to the workers (repeatable).",
            ),
            click.option(
                "--ray-pip",
                "ray_pip",
                multiple=True,
                help="Install this requirement on the workers (repeatable).",
            ),
            click.option("--ray-num-cpus", type=float, default=None, help="CPUs per batch task."),
            click.option("--ray-num-gpus", type=float, default=None, help="GPUs per batch task."),
            click.option(
                "--ray-memory", type=int, default=None, help="Memory per batch task, in bytes."
            ),
            click.option(
                "--state",
                "state",
                default=None,
                help="The state store: a SQLite file or postgresql://... "
                "(default: settings.state, else WORKSPACE/state.db).",
            ),
            click.option(
                "--cancel-jobs",
                is_flag=True,
                expose_value=False,
                callback=_cancel_jobs,
                help="On Ctrl-C, cancel provider batch jobs (llm mode: batch) instead of "
                "leaving them running for a resume to collect.",
            ),
            click.option(
                "--confine-paths",
                "confine_paths",
                is_flag=True,
                default=None,
                help="Keep file paths inside the base folder and workspace "
                "(settings.confine_paths).",
            ),
        ]
    ):
        func = option(func)
    return func


def register(main: click.Group) -> None:
    """Add the workflow commands to the ``batchline`` group."""

    @main.command("run", context_settings={"ignore_unknown_options": True})
    @click.argument("workflow", type=click.Path(dir_okay=False))
    @click.argument("params", nargs=-1, type=click.UNPROCESSED)
    @click.option(
        "--resume",
        "resume",
        is_flag=True,
        help="Resume the latest unfinished run of this workflow.",
    )
    @click.option("--force", is_flag=True, help="Resume even if params differ.")
    @click.option(
        "--run-id",
        "new_run_id",
        default=None,
        help="Name the new run (default: NAME-YYYYMMDD-HHMMSS-xxxxxx); an id in use is refused.",
    )
    @click.option("--flow", default=None, help="Run this flow of the workflow's `flows`.")
    @click.option("--start-from", default=None, help="Begin at this step.")
    @click.option(
        "--skip-steps", multiple=True, help="Steps not to run (comma-separated, repeatable)."
    )
    @click.option(
        "--dry-run",
        "-n",
        is_flag=True,
        help="Show what would run, with rendered inputs; run nothing.",
    )
    @_common
    def run_command(
        workflow: str,
        params: tuple[str, ...],
        resume: bool,
        force: bool,
        new_run_id: str | None,
        flow: str | None,
        start_from: str | None,
        skip_steps: tuple[str, ...],
        dry_run: bool,
        workspace: str | None,
        quiet: bool,
        output: str,
        backend: str | None,
        state: str | None,
        confine_paths: bool | None,
        **ray_flags: Any,
    ) -> None:
        """Run WORKFLOW (a YAML file) with params given as name=value (or --name=value)."""
        try:
            spec = load_workflow(workflow)
            given = _parse_params(params)
            run_id = None
            folder = Path(workspace or spec.settings.workspace)
            if new_run_id is not None:
                if resume:
                    raise WorkflowError(
                        ["--run-id names a new run; to resume one: batchline resume RUN_ID"]
                    )
                _refuse_used_run_id(folder, new_run_id, state or spec.settings.state)
                run_id = new_run_id
            if resume:
                info = find_resumable(
                    folder if folder.is_absolute() else Path.cwd() / folder,
                    spec.name,
                    state or spec.settings.state,
                )
                if info is None:
                    click.echo(
                        f"no unfinished run of `{spec.name}` in {folder}; starting a new one",
                        err=True,
                    )
                else:
                    run_id = info.run_id
                    given = _merge_resume_params(spec, info.meta.get("params", {}), given, force)
                    flow = flow or info.meta.get("flow")  # a resume keeps its flow
                    backend = backend or info.meta.get("backend")
                    ray_flags = {**ray_flags, "_stored": info.meta.get("ray") or {}}
            stored_ray = ray_flags.pop("_stored", {})
            runner = WorkflowRunner(
                spec,
                source=workflow,
                params=given,
                workspace=workspace,
                run_id=run_id,
                out=None if quiet or output == "json" else sys.stderr,
                backend=backend,
                ray={**stored_ray, **_ray_options(ray_flags)},
                state=state,
                confine_paths=confine_paths or None,
                flow=flow,
                start_from=start_from,
                skip_steps=_split(skip_steps),
                dry_run=dry_run,
            )
        except WorkflowError as exc:
            _fail_invalid(exc)
            return
        if dry_run:
            runner.out = sys.stdout
        _execute(runner, output, quiet)

    @main.command("resume")
    @click.argument("run_id")
    @click.argument("params", nargs=-1)
    @click.option("--force", is_flag=True, help="Resume even if params differ.")
    @_common
    def resume_command(
        run_id: str,
        params: tuple[str, ...],
        force: bool,
        workspace: str | None,
        quiet: bool,
        output: str,
        backend: str | None,
        state: str | None,
        confine_paths: bool | None,
        **ray_flags: Any,
    ) -> None:
        """Resume RUN_ID: completed steps are restored, only missing and failed items run.

        The run's backend and Ray options are remembered; options given here override them.
        """
        if workspace:
            folder = Path(workspace)
        elif state:
            folder = Path(".batchline")
        else:
            folder, state = _workspace_of(run_id)
        try:
            info = run_info(folder, run_id, state)
        except StateError as exc:
            raise click.ClickException(str(exc)) from exc
        meta = info.meta
        if meta.get("kind") != "workflow":
            raise click.ClickException(f"run {run_id!r} is not a workflow run")
        try:
            spec = load_workflow(meta["file"])
            given = _merge_resume_params(spec, meta.get("params", {}), _parse_params(params), force)
            runner = WorkflowRunner(
                spec,
                source=meta["file"],
                params=given,
                base_dir=meta.get("base_dir"),
                workspace=meta.get("workspace", folder),
                run_id=run_id,
                out=None if quiet or output == "json" else sys.stderr,
                backend=backend or meta.get("backend"),
                ray={**(meta.get("ray") or {}), **_ray_options(ray_flags)},
                state=state,
                confine_paths=confine_paths or None,
                flow=meta.get("flow"),
            )
        except WorkflowError as exc:
            _fail_invalid(exc)
            return
        _execute(runner, output, quiet)

    @main.command("validate")
    @click.argument("workflow", type=click.Path(dir_okay=False))
    def validate_command(workflow: str) -> None:
        """Check WORKFLOW without running it: schema, task types, and references."""
        try:
            located = load_file(workflow)
            spec = parse_located(located)
        except WorkflowError as exc:
            _fail_invalid(exc)
            return
        problems = static_problems(spec, located)
        if problems:
            _fail_invalid(WorkflowError(problems, workflow))
        for warning in [*static_warnings(spec, located), *unsafe_uses(spec, located)]:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"{workflow}: ok ({len(spec.steps)} steps, {len(spec.params)} params)")

    @main.command("export")
    @click.argument("run_id")
    @click.argument("step")
    @click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
    @click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write here instead of standard output.",
    )
    @click.option("--workspace", type=click.Path(file_okay=False), default=".batchline")
    def export_command(
        run_id: str, step: str, fmt: str, output: str | None, workspace: str
    ) -> None:
        """Export the items of a batch STEP of RUN_ID (key, status, result, error)."""
        path = Path(workspace) / STATE_FILE
        if not path.exists():
            raise click.ClickException(f"no state file at {path}; pass --workspace")
        store = SQLiteStateStore(path)
        sub_run = child_run_id(run_id, step)
        try:
            store.get_run(sub_run)
        except BatchlineError as exc:
            steps = [
                str(split_run_id(r.run_id)[1])
                for r in store.list_runs()
                if is_child_of(r.run_id, run_id)
            ]
            raise click.ClickException(
                f"run {run_id!r} has no batch step {step!r} "
                f"(batch steps: {', '.join(steps) or 'none'})"
            ) from exc
        rows = []
        for record in store.iter_items(sub_run):
            value = record.result
            attempts = record.attempts
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                # The batch task keeps [result, attempts]: its item retries happen inside
                # one engine attempt, so the engine's count alone would say 1.
                value, attempts = value[0], max(attempts, value[1])
            rows.append(
                {
                    "key": record.key,
                    "position": record.position,
                    "status": record.status,
                    "result": value,
                    "error": record.message,
                    "attempts": attempts,
                }
            )
        rows = _redactor().data(rows)
        handle = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
        try:
            if fmt == "jsonl":
                for row in rows:
                    handle.write(json.dumps(row, default=str) + "\n")
            else:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["key"])
                writer.writeheader()
                for row in rows:
                    writer.writerow({**row, "result": json.dumps(row["result"], default=str)})
        finally:
            if output:
                handle.close()


def _workspace_of(run_id: str) -> tuple[Path, str | None]:
    """The workspace whose state file holds ``run_id``, and that file when it is not the
    workspace's ``state.db``: looked for near the current folder, then in the state files
    ``batchline run`` remembered (:mod:`batchline.workflow.registry`). Not found: a
    ``ClickException`` saying which ``--workspace`` to pass."""
    searched = candidate_state_files()
    for path in searched:
        try:  # read-only: looking never migrates or changes a state file
            store = SQLiteStateStore(path, read_only=True)
        except (StateError, BatchlineError):
            continue
        try:
            info = store.get_run(run_id)
        except (StateError, BatchlineError):
            continue
        finally:
            store.close()
        workspace = Path(str(info.meta.get("workspace") or path.parent))
        same = (workspace / STATE_FILE).resolve() == path
        return workspace, None if same else str(path)
    where = ", ".join(str(p) for p in searched[:5]) or "none found"
    raise click.ClickException(
        f"run `{run_id}` was not found in the state files near {Path.cwd()} or remembered by "
        f"`batchline run` (searched: {where}). Pass --workspace with the folder holding the "
        "run's state.db: the workflow's `settings.workspace` (by default `.batchline`) inside "
        f"the folder where `batchline run` ran, e.g. `batchline resume {run_id} --workspace "
        "/path/to/project/.batchline`; or --state with the state file or PostgreSQL URL."
    )


def _refuse_used_run_id(folder: Path, run_id: str, state: str | None) -> None:
    if not run_id.strip() or "/" in run_id:
        raise WorkflowError([f"--run-id {run_id!r}: expected a non-empty id without `/`"])
    try:
        run_info(folder, run_id, state)
    except (StateError, BatchlineError):
        return
    raise WorkflowError(
        [
            f"run `{run_id}` already exists in {folder}; resume it with: batchline resume "
            f"{run_id} --workspace {folder}, or pick another --run-id"
        ]
    )


def _merge_resume_params(
    spec: WorkflowSpec, stored: dict[str, Any], given: dict[str, Any], force: bool
) -> dict[str, Any]:
    given = {
        name: convert_param(name, spec.params[name], value) if name in spec.params else value
        for name, value in given.items()
    }
    # a param holding a secret was stored as `***`: it must be given again, and is no change
    hidden = sorted(n for n, v in stored.items() if isinstance(v, str) and MASK in v)
    missing = [name for name in hidden if name not in given]
    if missing:
        raise WorkflowError(
            [
                f"the param(s) {', '.join(f'`{n}`' for n in missing)} held a secret, which is "
                "never stored; pass them again to resume: "
                + " ".join(f"{n}=VALUE" for n in missing)
            ]
        )
    stored = {name: value for name, value in stored.items() if name not in hidden}
    changes = param_changes(stored, given)
    if changes and not force:
        raise WorkflowError(
            [
                f"the params differ from the original run ({'; '.join(changes)}); resume with the "
                "same params, or pass --force to resume with the new ones"
            ]
        )
    return {**stored, **given}
