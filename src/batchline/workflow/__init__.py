"""The YAML front door: workflow files with Jinja2 namespaces, task types and a batch task."""

from batchline.workflow.batch import BatchContext, BatchState, batch_task
from batchline.workflow.errors import TaskError, TemplateError, WorkflowError
from batchline.workflow.runner import (
    StepRecord,
    WorkflowResult,
    WorkflowRunner,
    load_workflow,
    resolve_params,
)
from batchline.workflow.schema import ParamSpec, StepSpec, WorkflowSpec
from batchline.workflow.tasks import (
    TaskConfig,
    create_task_handler,
    get_task,
    known_tasks,
    register_task,
)
from batchline.workflow.templating import render, render_command

__all__ = [
    "BatchContext",
    "BatchState",
    "ParamSpec",
    "StepRecord",
    "StepSpec",
    "TaskConfig",
    "TaskError",
    "TemplateError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowRunner",
    "WorkflowSpec",
    "batch_task",
    "create_task_handler",
    "get_task",
    "known_tasks",
    "load_workflow",
    "register_task",
    "render",
    "render_command",
    "resolve_params",
]
