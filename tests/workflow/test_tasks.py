"""Task types: shell, python, file.*, template, echo, custom ones, TaskConfig."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import (
    TaskConfig,
    TaskError,
    create_task_handler,
    get_task,
    known_tasks,
    register_task,
)


def config(tmp_path: Path, task: str, **inputs: Any) -> TaskConfig:
    return TaskConfig(
        name="step",
        type=task,
        inputs=inputs,
        workspace=tmp_path,
        base_dir=tmp_path,
        context={"args": {"a": 1}, "env": {"E": "x"}, "steps": {"s": {"result": 2}}},
    )


def test_shell_runs_in_the_base_dir_and_captures_output(tmp_path: Path) -> None:
    result = get_task("shell")(config(tmp_path, "shell", command="pwd; echo $E; echo err >&2"))
    assert result["stdout"].split() == [str(tmp_path), "x"]
    assert result["stderr"].strip() == "err"
    assert result["returncode"] == 0


def test_shell_failure_names_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"exited with code 3[\s\S]*line8") as caught:
        get_task("shell")(
            config(
                tmp_path,
                "shell",
                command="for i in 1 2 3 4 5 6 7 8; do echo line$i >&2; done; exit 3",
            )
        )
    assert "\nline3" not in str(caught.value)  # only the tail


def test_shell_timeout_is_a_timeout_error(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0.2s"):
        get_task("shell")(config(tmp_path, "shell", command="sleep 5", timeout=0.2))


def test_shell_list_command_and_cwd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    result = get_task("shell")(
        config(
            tmp_path,
            "shell",
            command=[sys.executable, "-c", "import os; print(os.getcwd())"],
            cwd="sub",
        )
    )
    assert result["stdout"].strip() == str(tmp_path / "sub")


def test_python_function_and_code(tmp_path: Path) -> None:
    dumped = get_task("python")(
        config(tmp_path, "python", function="json:dumps", obj={"b": 1, "a": 2}, sort_keys=True)
    )
    assert dumped == '{"a": 2, "b": 1}'
    code = "result = inputs['n'] * args['a'] + steps['s']['result']"
    assert get_task("python")(config(tmp_path, "python", code=code, n=10)) == 12
    with pytest.raises(TaskError, match=r"package.module:func"):
        get_task("python")(config(tmp_path, "python", function="nocolon"))
    with pytest.raises(TaskError, match="cannot load"):
        get_task("python")(config(tmp_path, "python", function="math:nope"))


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("text", "hello\nworld"),
        ("lines", ["a", "b", "c"]),
        ("json", {"k": [1, 2]}),
        ("jsonl", [{"a": 1}, {"a": 2}]),
        ("yaml", {"name": "x", "list": [1, 2]}),
        ("csv", [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]),
    ],
)
def test_file_formats_round_trip(tmp_path: Path, fmt: str, content: Any) -> None:
    get_task("file.write")(
        config(tmp_path, "file.write", path=f"out/data.{fmt}", content=content, format=fmt)
    )
    read = get_task("file.read")(config(tmp_path, "file.read", path=f"out/data.{fmt}", format=fmt))
    assert read == content


def test_lines_split_like_splitlines_and_append(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("a\nb\n")
    assert get_task("file.read")(config(tmp_path, "file.read", path="l.txt", format="lines")) == [
        "a",
        "b",
    ]
    get_task("file.append")(config(tmp_path, "file.append", path="l.txt", content="c\n"))
    assert (tmp_path / "l.txt").read_text() == "a\nb\nc\n"
    with pytest.raises(TaskError, match=r"unknown format 'line'.*Did you mean `lines`"):
        get_task("file.read")(config(tmp_path, "file.read", path="l.txt", format="line"))
    with pytest.raises(TaskError, match="cannot read"):
        get_task("file.read")(config(tmp_path, "file.read", path="absent.txt"))


def test_template_task_writes_output(tmp_path: Path) -> None:
    text = get_task("template")(config(tmp_path, "template", template="hi", output="r/o.txt"))
    assert text == "hi"
    assert (tmp_path / "r" / "o.txt").read_text() == "hi"


def test_custom_tasks_and_task_config(tmp_path: Path) -> None:
    @register_task("test.double")
    def double(cfg: TaskConfig) -> int:
        return int(cfg.inputs["n"]) * 2 + cfg.get_variable("a")

    assert "test.double" in known_tasks()
    assert get_task("test.double")(config(tmp_path, "test.double", n=4)) == 9
    cfg = config(tmp_path, "x")
    assert cfg.get_variable("E", namespace="env") == "x"
    # Issue #11's contract: `root` lists only the other top-level names, and an absent
    # variable is None (yaml-workflow's TaskConfig), not a KeyError.
    assert cfg.get_available_variables() == {
        "args": ["a"],
        "env": ["E"],
        "steps": ["s"],
        "root": [],
    }
    assert cfg.get_variable("aa") is None
    handler = create_task_handler(lambda c: c.name)
    assert handler(cfg) == "step"
    with pytest.raises(TaskError, match=r"unknown task type `shel`.*Did you mean `shell`"):
        get_task("shel")
