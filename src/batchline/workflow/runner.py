"""Running a workflow: params, namespaces, steps in order, state, resume, exit codes."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from batchline.backends import resolve_backend
from batchline.engine import (
    RetryPolicy,
    RunSession,
    interruption_message,
    new_run_id,
    resolve_awaitable,
    retry_call,
)
from batchline.errors import ConfigurationError, RunInterrupted, StateError, StopRun
from batchline.observe.meters import cost_line, total_cost
from batchline.redact import Redactor, register
from batchline.state import RunInfo, StateStore, is_postgres_url, open_store
from batchline.workflow import batch as _batch  # noqa: F401 - registers the batch task
from batchline.workflow import compat as _compat  # noqa: F401 - registers yaml-workflow's tasks
from batchline.workflow.errors import TemplateError, WorkflowError
from batchline.workflow.flows import decide, error_info, jump_plan, plan
from batchline.workflow.params import convert_param, resolve_params
from batchline.workflow.results import to_json
from batchline.workflow.schema import StepSpec, WorkflowSpec, parse_workflow
from batchline.workflow.stepinputs import render_inputs
from batchline.workflow.tasks import TaskConfig, get_task, import_task_modules, known_tasks
from batchline.workflow.templating import Namespace, render, set_search_path
from batchline.workflow.yamlfile import Located, load_file

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_STOPPED = 3  # stopped on purpose (a budget reached), nothing failed: resumable
STATE_FILE = "state.db"


def load_workflow(path: str | Path) -> WorkflowSpec:
    """Read and validate a workflow file (``WorkflowError`` lists every problem)."""
    return parse_located(load_file(path))


def parse_located(located: Located) -> WorkflowSpec:
    """Validate a parsed workflow file, after importing its ``settings.task_modules``
    (so the custom task types they register are known)."""
    import_task_modules(located)
    return parse_workflow(located, known_tasks)


@dataclass
class StepRecord:
    """A step's outcome as kept in the state store."""

    status: str
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    duration: float = 0.0
    attempts: int = 0
    usage: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        data = {
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "error_type": self.error_type,
            "duration": round(self.duration, 4),
            "attempts": self.attempts,
        }
        if self.usage:
            data["usage"] = self.usage
        return data


@dataclass
class WorkflowResult:
    """The outcome of a run: its id, status, per-step records and exit code."""

    run_id: str
    status: str
    steps: dict[str, StepRecord] = field(default_factory=dict)
    exit_code: int = EXIT_OK
    message: str = ""

    @property
    def usage(self) -> dict[str, float]:
        """LLM usage summed over the steps (calls, tokens, cost_usd)."""
        total: dict[str, float] = {}
        for record in self.steps.values():
            for name, value in (record.usage or {}).items():
                if isinstance(value, int | float):  # `mode` is per step
                    total[name] = total.get(name, 0) + value
        return total

    def as_dict(self) -> dict[str, Any]:
        """Plain data (``--format json``)."""
        data = {
            "run_id": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "steps": {name: record.as_dict() for name, record in self.steps.items()},
        }
        if self.usage:
            data["usage"] = self.usage
        return data


class WorkflowRunner:
    """Runs (or resumes) one workflow in a workspace.

    Args:
        spec: the validated workflow.
        source: the workflow file (kept with the run so ``batchline resume`` finds it).
        params: ``name=value`` params as given (strings are converted).
        base_dir: where relative paths resolve (the folder the command ran from).
        workspace: overrides ``settings.workspace``.
        run_id: resume this run; None starts a new one.
        out: where progress lines go (None: silent).
        progress: the engine's progress bar for batch steps (None: on a terminal).
        backend: where batch steps run (``local`` or ``ray``; default ``settings.backend``).
        ray_address: the Ray cluster to join (overrides ``settings.ray.address``).
        ray: Ray settings given on the command line (``address``, ``runtime_env``,
            ``num_cpus``, ``num_gpus``, ``memory``), over ``settings.ray``; kept with the
            run so ``batchline resume`` uses them again.
        state: where the state lives: a SQLite path or ``postgresql://...`` (default
            ``settings.state``, else ``WORKSPACE/state.db``).
        flow: the flow to run (``flows:``; default: the file's default flow).
        start_from: begin at this step (the earlier ones do not run).
        skip_steps: steps not to run.
        dry_run: print what would run, with the rendered inputs; run nothing, write nothing.
        lease_ttl: seconds of heartbeat silence after which another host may take the run
            over (None: the store's default). The run's session heartbeats every third of
            it, so a step running longer keeps its lease.
        confine_paths: keep file paths inside the base dir and workspace (default
            ``settings.confine_paths``).

    Raises:
        WorkflowError: bad params, or a declared secret missing from the environment.
    """

    def __init__(
        self,
        spec: WorkflowSpec,
        *,
        source: str | Path = "",
        params: Mapping[str, Any] | None = None,
        base_dir: str | Path | None = None,
        workspace: str | Path | None = None,
        run_id: str | None = None,
        out: TextIO | None = None,
        progress: bool | None = None,
        backend: str | None = None,
        ray_address: str | None = None,
        ray: Mapping[str, Any] | None = None,
        state: str | None = None,
        flow: str | None = None,
        start_from: str | None = None,
        skip_steps: list[str] | None = None,
        dry_run: bool = False,
        lease_ttl: float | None = None,
        confine_paths: bool | None = None,
    ) -> None:
        self.spec = spec
        self.source = str(Path(source).resolve()) if source else ""
        self.base_dir = Path(base_dir or Path.cwd()).resolve()
        folder = Path(workspace or spec.settings.workspace).expanduser()
        self.workspace = folder if folder.is_absolute() else self.base_dir / folder
        self.params = resolve_params(spec, params or {})
        self.run_id = run_id or new_run_id(spec.name)
        self.resuming = run_id is not None
        self.out = out
        self.progress = progress
        self.ray_given = {k: v for k, v in dict(ray or {}).items() if v not in (None, {}, [], ())}
        if ray_address:
            self.ray_given["address"] = ray_address
        # Ray options on the command line mean Ray, unless --backend says otherwise.
        self.backend_name = backend or ("ray" if self.ray_given else spec.settings.backend)
        self.ray_address = self.ray_given.get("address")
        self._backend: Any = None
        self.state = state_location(state or spec.settings.state, self.workspace, self.base_dir)
        self.store: StateStore | None = None
        self.lease_ttl = lease_ttl
        self._session: RunSession | None = None
        self._causes: dict[str, str] = {}
        self.flow = flow
        self.skip_steps = list(skip_steps or [])
        self.dry_run = dry_run
        self.plan = plan(spec, flow=flow, start_from=start_from, skip_steps=self.skip_steps)
        self.workflow_dir = str(Path(self.source).parent) if self.source else str(self.base_dir)
        self.confine_paths = (
            spec.settings.confine_paths if confine_paths is None else bool(confine_paths)
        )
        missing = [n for n in spec.secrets if not os.environ.get(n) and not spec.env.get(n)]
        if missing:
            raise WorkflowError(
                [
                    f"missing secrets (environment variables declared under `secrets`): "
                    f"{', '.join(missing)}; set them before running the workflow"
                ]
            )
        secret_params = {  # a param named like a secret (api_key=...) is one too
            name: value for name, value in self.params.items() if isinstance(value, str)
        }
        self.redactor = Redactor.from_env({**os.environ, **spec.env}, spec.secrets).merged(
            Redactor.from_env(secret_params)
        )
        register(self.redactor)

    def _say(self, text: str) -> None:
        if self.out is not None:
            print(self.redactor.text(text), file=self.out, flush=True)

    def run(self) -> WorkflowResult:
        """Run the planned steps in order; return the result (never raises for step
        failures)."""
        set_search_path(self.workflow_dir, self.base_dir)
        if self.dry_run:
            return self._dry_run()
        connect_error = self._connect_backend()
        if connect_error is not None:
            self._say(connect_error)
            return WorkflowResult(
                self.run_id, "failed", exit_code=EXIT_FAILED, message=connect_error
            )
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.state, lease_ttl=self.lease_ttl)
        run_number = self._run_number()
        meta = {
            "kind": "workflow",
            "workflow": self.spec.name,
            "file": self.source,
            "params": self.redactor.data(_jsonable(self.params)),
            "base_dir": str(self.base_dir),
            "workspace": str(self.workspace),
            "run_number": run_number,
            "flow": self.flow,
            "backend": self.backend_name,
            "ray": _jsonable(self.ray_given),
        }
        self._session = RunSession(self.store, self.run_id, meta=meta).open()
        records = self._load_records() if self.resuming else {}
        namespaces = self._namespaces(run_number)
        result = WorkflowResult(self.run_id, "running")
        try:
            namespaces["env"] = self._environment(namespaces)
            self.redactor = self.redactor.merged(
                Redactor.from_env(namespaces["env"], self.spec.secrets)
            )
            register(self.redactor)
            self._run_plan(namespaces, records, result)
        except _Stopped as stop:
            result.status = "stopped"
            result.exit_code = EXIT_STOPPED
            result.message = (
                f"{stop}. Nothing failed and the state is saved in "
                f"{self.workspace / STATE_FILE}. Resume with: "
                f"batchline resume {self.run_id} --workspace {self.workspace}"
            )
        except (KeyboardInterrupt, RunInterrupted) as exc:
            result.status = "interrupted"
            result.exit_code = EXIT_INTERRUPTED
            where = (
                f"--workspace {self.workspace}"
                if self.state == str(self.workspace / STATE_FILE)
                else f"--state {self.store.location}"
            )
            result.message = interruption_message(
                self.run_id,
                where=f"its state is saved in {self.store.location}",
                resume=f"Resume with: batchline resume {self.run_id} {where}",
                signal_number=getattr(exc, "signal_number", None),
            )
        finally:
            status = {
                "completed": "completed",
                "interrupted": "interrupted",
                "stopped": "stopped",
            }.get(result.status, "failed")
            self._session.close(status)  # type: ignore[arg-type]
            self.store.close()
        return result

    def _run_number(self) -> int:
        """1 + the runs of this workflow before this one (a resume keeps its number)."""
        assert self.store is not None
        runs = [
            info
            for info in self.store.list_runs()
            if info.meta.get("kind") == "workflow" and info.meta.get("workflow") == self.spec.name
        ]
        for info in runs:
            if info.run_id == self.run_id and info.meta.get("run_number"):
                return int(info.meta["run_number"])
        return len([info for info in runs if info.run_id != self.run_id]) + 1

    def _namespaces(self, run_number: int) -> dict[str, Any]:
        """``args``, ``env``, ``steps``, ``workflow``, and yaml-workflow's root built-ins."""
        timestamp = datetime.now().isoformat()
        return {
            "args": Namespace(self.params),
            "env": Namespace(),
            "steps": Namespace(),
            "workflow": Namespace(
                name=self.spec.name,
                run_id=self.run_id,
                workspace=str(self.workspace),
                started_at=time.time(),
                file=self.source,
                run_number=run_number,
                timestamp=timestamp,
            ),
            # yaml-workflow's top-level names; `workspace` is where relative paths resolve.
            "workflow_name": self.spec.name,
            "run_number": run_number,
            "timestamp": timestamp,
            "workspace": str(self.base_dir),
            "workflow_file": self.source,
            "error": None,
        }

    def _run_plan(
        self, namespaces: dict[str, Any], records: dict[str, StepRecord], result: WorkflowResult
    ) -> None:
        steps = list(self.plan)
        total = len(steps)
        position = 0
        jumped: str | None = None
        done: set[str] = set()
        changed: set[str] = set()  # steps a resume re-ran whose outcome differs from before
        while position < len(steps):
            step = steps[position]
            position += 1
            if step.name in done:
                continue
            done.add(step.name)
            index = self._index[step.name]
            previous = records.get(step.name)
            if previous is not None and changed and _reads_steps(step, changed):
                self._say(
                    f"[{position}/{total}] {step.name}: {previous.status} before; runs again "
                    f"(it reads {', '.join(f'`{n}`' for n in sorted(changed))}, changed since)"
                )
                previous = None
            if previous is not None and previous.status in ("completed", "skipped"):
                namespaces["steps"][step.name] = _namespace(previous)
                result.steps[step.name] = previous
                self._say(f"[{position}/{total}] {step.name}: {previous.status} before, restored")
                continue
            before = _llm_usage()
            try:
                record = self._redacted(self._run_step(f"[{position}/{total}]", step, namespaces))
            except _Stopped as stop:
                result.steps[step.name] = StepRecord(
                    "stopped", error=str(stop), error_type="StopRun"
                )
                result.steps[step.name].usage = _usage_delta(before, _llm_usage())
                raise
            record.usage = _usage_delta(before, _llm_usage())
            if step.name in records and _outcome(records[step.name]) != _outcome(record):
                changed.add(step.name)  # a resume re-ran it with another outcome
            result.steps[step.name] = record
            namespaces["steps"][step.name] = _namespace(record)
            self._commit(index, step, record)
            if record.status != "failed":
                continue
            namespaces["error"] = error_info(
                step.name,
                self._causes.get(step.name, record.error or ""),
                record.error_type or "Error",
                record.attempts,
            )
            on_error = step.on_error
            if on_error.action in ("continue", "skip"):
                continue  # as in yaml-workflow, continue wins over next
            if on_error.next:
                self._say(f"{step.name}: failed; jumping to `{on_error.next}` (on_error.next)")
                jumped = jumped or step.name
                steps = jump_plan(self.spec, on_error.next, self.skip_steps)
                total, position = len(steps), 0
                continue
            result.status = "failed"
            result.exit_code = EXIT_FAILED
            result.message = f"step `{step.name}` failed: {record.error}"
            return
        failed = [n for n, r in result.steps.items() if r.status == "failed"]
        result.status = "completed"
        if jumped:
            result.message = f"done; step `{jumped}` failed and on_error.next handled it"
        elif failed:
            result.message = f"done; steps that failed (on_error: continue): {', '.join(failed)}"
        else:
            result.message = "done"
        for name in failed:
            record = result.steps[name]
            stats = record.result.get("stats") if isinstance(record.result, dict) else None
            if isinstance(stats, dict) and stats.get("total") and not stats.get("processed"):
                result.message += (
                    f". WARNING: every item of step `{name}` failed: {record.error}. Fix the "
                    "cause, then retry them with: "
                    f"batchline resume {self.run_id} --workspace {self.workspace}"
                )
            elif record.error_type == "ItemsFailed":
                result.message += (
                    f". Step `{name}`: {record.error}; retry them with: "
                    f"batchline resume {self.run_id} --workspace {self.workspace}"
                )

    @property
    def _index(self) -> dict[str, int]:
        return {step.name: index for index, step in enumerate(self.spec.steps)}

    def _dry_run(self) -> WorkflowResult:
        """Print each planned step, whether it would run, and its rendered inputs."""
        result = WorkflowResult(self.run_id, "dry-run", message="dry run: nothing was run")
        namespaces = self._namespaces(0)
        out = self.out or sys.stdout

        def say(text: str) -> None:
            print(self.redactor.text(text), file=out, flush=True)

        namespaces["env"] = self._environment(namespaces)
        say(f"[dry-run] workflow {self.spec.name}: {len(self.plan)} steps")
        for position, step in enumerate(self.plan, 1):
            label = f"[dry-run] [{position}/{len(self.plan)}] {step.name} ({step.task})"
            try:
                decision = decide(step, namespaces, max_size=self.spec.settings.max_render_size)
            except TemplateError as exc:
                say(f"{label}: when cannot be judged before running: {exc}")
                decision = None
            if decision is not None and not decision.run:
                say(f"{label}: would skip ({decision.reason})")
                namespaces["steps"][step.name] = Namespace(
                    result=None, status="skipped", error=None
                )
                result.steps[step.name] = StepRecord("skipped")
                continue
            say(f"{label}: would run")
            raw = {
                k: v for k, v in step.inputs.items() if not (step.task == "batch" and k == "task")
            }
            for key, value in raw.items():
                try:
                    shown = repr(
                        render_inputs(
                            step.task,
                            {key: value},
                            namespaces,
                            step=step.name,
                            max_size=self.spec.settings.max_render_size,
                        )[key]
                    )
                except TemplateError:
                    shown = f"{value!r} (needs the results of earlier steps)"
                say(f"    {key}: {shown[:200]}")
            namespaces["steps"][step.name] = Namespace(result=None, status="completed", error=None)
            result.steps[step.name] = StepRecord("would run")
        return result

    # -- steps ------------------------------------------------------------------------

    def _redacted(self, record: StepRecord) -> StepRecord:
        """The record with every secret value replaced by ``***`` (what is kept and shown)."""
        if self.redactor:
            record.result = self.redactor.data(record.result)
            record.error = None if record.error is None else self.redactor.text(record.error)
        return record

    def _environment(self, namespaces: dict[str, Any]) -> Namespace:
        env = Namespace(os.environ)
        for name, value in self.spec.env.items():
            rendered = render(
                value,
                {**namespaces, "env": env},
                step="env",
                input_key=name,
                max_size=self.spec.settings.max_render_size,
            )
            env[name] = "" if rendered is None else str(rendered)
        return env

    def _run_step(self, position: str, step: StepSpec, namespaces: dict[str, Any]) -> StepRecord:
        label = f"{position} {step.name} ({step.task})"
        started = time.perf_counter()
        try:
            decision = decide(step, namespaces, max_size=self.spec.settings.max_render_size)
        except TemplateError as exc:
            self._say(f"{label}: template error: {exc}")
            return StepRecord("failed", error=str(exc), error_type="TemplateError")
        if not decision.run:
            self._say(f"{label}: skipped ({decision.reason})")
            return StepRecord("skipped")
        raw = dict(step.inputs)
        nested = raw.pop("task", None) if step.task == "batch" else None
        try:
            inputs = render_inputs(
                step.task,
                raw,
                namespaces,
                step=step.name,
                max_size=self.spec.settings.max_render_size,
            )
        except TemplateError as exc:
            self._say(f"{label}: template error: {exc}")
            return self._failed(step, namespaces, exc, "TemplateError", 0, started)
        if nested is not None:
            inputs["task"] = nested
        config = TaskConfig(
            name=step.name,
            type=step.task,
            inputs=inputs,
            workspace=self.workspace,
            base_dir=self.base_dir,
            context=namespaces,
            raw_inputs=step.inputs,
            settings={
                "max_concurrency": self.spec.settings.concurrency,
                "llm_prices": self.spec.settings.prices or None,
                "store": self.store,
                "run_id": self.run_id,
                "progress": self.progress,
                "on_progress": self._batch_progress(label) if step.task == "batch" else None,
                "backend": self._resolve_backend() if step.task == "batch" else None,
                "confine_paths": self.confine_paths,
                "max_render_size": self.spec.settings.max_render_size,
                "redactor": self.redactor,
                "workflow_dir": self.workflow_dir,
            },
        )
        self._say(f"{label} ...")

        def call() -> Any:
            value = resolve_awaitable(get_task(step.task)(config))
            return to_json(value, step.name)

        def retrying(attempt: int, error: BaseException, delay: float) -> None:
            self._say(f"{label}: attempt {attempt} failed ({error}); retrying in {delay:.1f}s")

        done = retry_call(call, _step_policy(step), on_retry=retrying)
        attempt = done.attempts
        if isinstance(done.error, StopRun):  # a budget: stop the run, resumable
            self._say(f"{label}: stopped: {done.error}")
            raise _Stopped(str(done.error)) from done.error
        if done.error is not None:  # interrupts are never caught: they end the run
            self._say(f"{label}: failed after {attempt} attempt(s): {done.error}")
            return self._failed(
                step, namespaces, done.error, type(done.error).__name__, attempt, started
            )
        value = done.value
        duration = time.perf_counter() - started
        if step.task == "batch" and value["stats"]["failed"]:
            stats = value["stats"]
            error = f"{stats['failed']} of {stats['total']} items failed"
            key, first = next(iter(value["failed"].items()))
            error += f" (first: item `{key}`: {first['error_type']}: {first['error']})"
            self._say(f"{label}: {error}")
            return StepRecord(
                "failed",
                result=value,
                error=error,
                error_type="ItemsFailed",
                duration=duration,
                attempts=attempt,
            )
        self._say(f"{label}: done in {duration:.2f}s" + _summary(value))
        return StepRecord("completed", result=value, duration=duration, attempts=attempt)

    def _failed(
        self,
        step: StepSpec,
        namespaces: dict[str, Any],
        error: BaseException,
        error_type: str,
        attempts: int,
        started: float,
    ) -> StepRecord:
        """A failed step's record; ``on_error.message`` (a template seeing ``error``)
        replaces the error text when given."""
        text = str(error)
        self._causes[step.name] = text  # `error.message` is the error, not on_error.message
        if step.on_error.message:
            context = {**namespaces, "error": error_info(step.name, error, error_type, attempts)}
            try:
                text = str(
                    render(
                        step.on_error.message, context, step=step.name, input_key="on_error.message"
                    )
                )
            except TemplateError as exc:
                text = f"{error} (on_error.message did not render: {exc})"
            self._say(f"{step.name}: {text}")
        return StepRecord(
            "failed",
            error=text,
            error_type=error_type,
            duration=time.perf_counter() - started,
            attempts=attempts,
        )

    def _resolve_backend(self) -> Any:
        if self._backend is None:
            settings = {**self.spec.settings.ray.options(), **self.ray_given}
            self._backend = resolve_backend(self.backend_name, ray=settings)
        return self._backend

    def _connect_backend(self) -> str | None:
        """Connect to Ray before any step runs (when a batch step will use it).

        Returns:
            Why it failed (naming the address), or None.
        """
        if self.backend_name == "local" or not any(s.task == "batch" for s in self.spec.steps):
            return None
        try:
            backend = self._resolve_backend()
            starter = getattr(backend, "ensure_started", None)
            if callable(starter):
                starter()
        except ConfigurationError as exc:
            return f"cannot start: {exc}"
        return None

    def _batch_progress(self, label: str) -> Callable[[dict[str, int]], None]:
        last = [0.0]
        started = time.monotonic()
        cost_before = total_cost() or 0.0

        def report(stats: dict[str, int]) -> None:
            now = time.monotonic()
            done = stats["processed"] + stats["failed"]
            if now - last[0] >= 1.0 or done == stats["total"]:
                last[0] = now
                line = f"{label}: {done}/{stats['total']} items, {stats['failed']} failed"
                cost_now = total_cost()
                if cost_now is not None and cost_now > cost_before:
                    ran = done - stats.get("resumed", 0)  # cost and time are this run's
                    line += ", " + cost_line(
                        cost_now - cost_before,
                        ran,
                        stats["total"] - stats.get("resumed", 0),
                        now - started,
                    )
                self._say(line)

        return report

    def _commit(self, index: int, step: StepSpec, record: StepRecord) -> None:
        assert self._session is not None
        self._session.record(
            f"step:{step.name}",
            record.as_dict(),
            position=index,
            attempts=record.attempts,
            duration=record.duration,
        )

    def _load_records(self) -> dict[str, StepRecord]:
        assert self._session is not None
        records: dict[str, StepRecord] = {}
        for item in self._session.items():
            if isinstance(item.key, str) and item.key.startswith("step:") and item.result:
                data = item.result
                records[item.key[5:]] = StepRecord(
                    status=data["status"],
                    result=data.get("result"),
                    error=data.get("error"),
                    error_type=data.get("error_type"),
                    duration=data.get("duration", 0.0),
                    attempts=data.get("attempts", 0),
                )
        return records


class _Stopped(Exception):  # noqa: N818 - a signal inside the runner, like StopIteration
    """A step asked the run to stop (``StopRun``, e.g. a budget reached)."""


def _llm_usage() -> dict[str, float | int]:
    """What the ``llm`` task has used so far in this process (empty if never loaded)."""
    module = sys.modules.get("batchline.workflow.llm_task")
    if module is None:
        return {}
    snapshot: dict[str, float | int] = module.usage_snapshot()
    return snapshot


def _usage_delta(
    before: dict[str, float | int], after: dict[str, float | int]
) -> dict[str, Any] | None:
    delta: dict[str, Any] = {name: after[name] - before.get(name, 0) for name in after}
    if not delta.get("calls"):
        return None
    delta["cost_usd"] = float(f"{float(delta['cost_usd']):.6g}")  # 6 significant digits
    delta["mode"] = "batch" if delta.get("batch_calls") else "online"
    return delta


def _outcome(record: StepRecord) -> tuple[str, str]:
    """What later steps can see of a step: its status and result (as canonical JSON)."""
    return record.status, json.dumps(record.result, sort_keys=True, default=str)


def _reads_steps(step: StepSpec, changed: set[str]) -> bool:
    """Whether ``step`` may read the result of a step in ``changed``: its definition names
    one (``steps.NAME``, ``steps['NAME']``), or it reads inputs batchline cannot see into
    (a ``template_file``, a Python ``function``, ``code``), which are re-run to be safe."""
    text = json.dumps(step.model_dump(exclude_none=True, mode="json"), default=str)
    if any(re.search(rf"steps\W{{1,5}}{re.escape(name)}\b", text) for name in changed):
        return True
    opaque = ("template_file", "function", "code", "module", "script")
    return any(key in step.inputs for key in opaque) or "python" in step.task


def _namespace(record: StepRecord) -> Namespace:
    return Namespace(result=record.result, status=record.status, error=record.error)


def _summary(value: Any) -> str:
    if isinstance(value, dict) and "stats" in value:
        stats = value["stats"]
        return (
            f" ({stats['processed']}/{stats['total']} items, {stats['resumed']} resumed, "
            f"{stats['retried']} retries)"
        )
    return ""


def _step_policy(step: StepSpec) -> RetryPolicy:
    retry = step.retry_spec()
    if retry is None or step.task == "batch":
        return RetryPolicy.none()  # a batch step retries per item itself
    return retry.policy()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def state_location(state: str | None, workspace: Path, base_dir: Path) -> str:
    """Where a workflow's state lives: a PostgreSQL URL, or a SQLite path made absolute."""
    if state is None:
        return str(workspace / STATE_FILE)
    if is_postgres_url(state):
        return state
    path = Path(state).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _open_existing(workspace: Path, state: str | None) -> StateStore | None:
    location = state_location(state, workspace, Path.cwd())
    if not is_postgres_url(location) and not Path(location).exists():
        return None
    return open_store(location)


def find_resumable(workspace: Path, workflow: str, state: str | None = None) -> RunInfo | None:
    """The latest unfinished run of ``workflow`` in a workspace (or the ``state`` store).

    Unfinished: not completed, or completed with a step that failed under ``on_error:
    continue`` (a batch step with failed items): resuming it retries what failed.
    """
    store = _open_existing(workspace, state)
    if store is None:
        return None
    try:
        for info in store.list_runs():
            if info.meta.get("kind") != "workflow" or info.meta.get("workflow") != workflow:
                continue
            if info.status != "completed" or _has_failed_step(store, info.run_id):
                return info
    finally:
        store.close()
    return None


def _has_failed_step(store: StateStore, run_id: str) -> bool:
    """Whether a workflow run recorded a failed step (its step records are its items)."""
    return any(
        isinstance(item.key, str)
        and item.key.startswith("step:")
        and isinstance(item.result, dict)
        and item.result.get("status") == "failed"
        for item in store.iter_items(run_id)
    )


def run_info(workspace: Path, run_id: str, state: str | None = None) -> RunInfo:
    """A run's info from a workspace (or the ``state`` store), or ``StateError``."""
    store = _open_existing(workspace, state)
    if store is None:
        raise StateError(
            f"no state file at {state_location(state, workspace, Path.cwd())}; pass --workspace "
            "with the folder the run used, or --state with its state file or PostgreSQL URL"
        )
    try:
        return store.get_run(run_id)
    finally:
        store.close()


def param_changes(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between a run's params and new ones."""
    changes = []
    for name in sorted(set(stored) | set(given)):
        if name in given and stored.get(name) != given[name]:
            changes.append(f"{name}: {stored.get(name)!r} -> {given[name]!r}")
    return changes


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_STOPPED",
    "StepRecord",
    "WorkflowResult",
    "WorkflowRunner",
    "convert_param",
    "find_resumable",
    "load_workflow",
    "param_changes",
    "resolve_params",
    "run_info",
    "state_location",
]
