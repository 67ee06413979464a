"""Custom tasks in yaml-workflow's style: plain functions, inputs as keyword arguments."""

from batchline.workflow import TaskConfig, register_task


@register_task()
def multiply_by(value: int, multiplier: int = 2) -> int:
    """The task's name is the function's."""
    return value * multiplier


@register_task("custom_greeting")
def create_special_greeting(name: str) -> str:
    """The task's name is given."""
    return f"Special greeting for {name}!"


@register_task()
def describe_run(label: str, config: TaskConfig) -> str:
    """A parameter annotated TaskConfig receives the config."""
    return f"{label}: step {config.name} of {config.get_variable('workflow_name')}"
